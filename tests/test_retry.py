"""The shared task helpers (``Backoff``, ``cancel_and_wait``) and the state background tasks show in repr."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from brainlessdb.retry import Backoff, cancel_and_wait
from brainlessdb.shell.flusher import Flusher
from brainlessdb.shell.follower import BucketFollower
from brainlessdb.storage.base import Write
from brainlessdb.storage.memory import MemoryStorage


def test_backoff_doubles_up_to_its_max_and_starts_again_after_a_reset() -> None:
    backoff = Backoff(0.1, 0.5, jitter=0.0)
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert backoff.failures == 5
    assert repr(backoff) == "<Backoff 0.5s next, 5 failures, 0.1s..0.5s>"
    backoff.reset()
    assert (backoff.delay, backoff.failures) == (0.1, 0)
    assert backoff.next() == 0.1


def test_backoff_jitter_shortens_each_wait_by_at_most_its_share() -> None:
    backoff = Backoff(1.0, 1.0)  # jitter 0.5 by default: each wait between half and all of the delay
    waits = [backoff.next() for _ in range(200)]
    assert all(0.5 <= wait <= 1.0 for wait in waits)
    assert len(set(waits)) > 1


@pytest.mark.parametrize(("start", "maximum", "jitter"), [(0, 1, 0.5), (2, 1, 0.5), (0.1, 1, 1.5)])
def test_backoff_refuses_impossible_settings(start: float, maximum: float, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"start|jitter"):
        Backoff(start, maximum, jitter=jitter)


async def test_cancel_and_wait_ends_the_task_and_swallows_only_its_cancellation() -> None:
    await cancel_and_wait(None)
    sleeper = asyncio.create_task(asyncio.sleep(60))
    await cancel_and_wait(sleeper)
    assert sleeper.cancelled()

    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise LookupError("cleanup failed") from None

    failing = asyncio.create_task(fails_when_cancelled())
    await asyncio.sleep(0)
    with pytest.raises(LookupError, match="cleanup failed"):
        await cancel_and_wait(failing)


async def test_a_flusher_shows_whether_it_runs_its_backoff_and_counters_in_repr() -> None:
    async def no_bucket(*_: Any) -> str:
        raise AssertionError("nothing to flush")

    flusher = Flusher(MemoryStorage(), list, no_bucket, 0.25)
    counters = "rounds=0, writes=0, conflicts=0, errors=0, seconds=0"
    assert repr(flusher) == (
        f"<Flusher stopped every 0.25s, 0 failed rounds in a row (next retry in 0.1s), {counters}>"
    )
    flusher.start()
    try:
        assert repr(flusher).startswith("<Flusher running every 0.25s")
    finally:
        await flusher.stop()
    assert repr(flusher).startswith("<Flusher stopped")


async def test_a_follower_shows_its_bucket_revision_and_restarts_in_repr() -> None:
    storage = MemoryStorage()
    await storage.open_bucket("b")
    await storage.write("b", [Write("k", b"v", 0)])
    follower = BucketFollower(storage, "b", lambda entry: None)
    assert repr(follower).startswith("<BucketFollower b stopped, applied revision 0, 0 restarts")
    follower.start()
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 5)
        assert repr(follower) == (
            "<BucketFollower b caught up, applied revision 1, 0 restarts, 0 resyncs, 0 failures in a row "
            "(next restart in 0.1s)>"
        )
    finally:
        await follower.stop()
        await storage.close()
