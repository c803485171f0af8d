"""The shared task helpers (``Backoff``, ``cancel_and_wait``) and the state background tasks show in repr."""

from __future__ import annotations

import asyncio

import pytest

from brainlessdb import Brainless
from brainlessdb.retry import Backoff, cancel_and_wait


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


async def test_flusher_and_followers_show_their_state_in_repr() -> None:
    db = Brainless(None, namespace="reprs", location="a", flush_interval=0.25)
    await db.start()
    try:
        db.call.add(state="waiting")
        await db.flush()
        await db.call.load()
        flusher = repr(db._flusher)
        assert flusher.startswith("<Flusher running every 0.25s, 0 failed rounds in a row")
        assert "writes=1" in flusher
        follower = repr(db._followers["call"])
        assert follower.startswith("<BucketFollower reprs-call caught up, applied revision 1, 0 restarts")
    finally:
        await db.stop()
    assert repr(db._flusher).startswith("<Flusher stopped")
    assert " stopped," in repr(db._followers["call"])
