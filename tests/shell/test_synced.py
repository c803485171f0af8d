"""``await db.synced()``, the lag figures of ``stats()``, and the warning of a database never stopped.

``synced()`` is about this node: its pending changes acknowledged, and its memory holding what the
buckets held then. So two nodes hold the same once each has called it after the other's writes were in.
The outage tests run a node through a proxy that is cut, beside a node connected directly.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

import brainlessdb
from brainlessdb import Brainless, FlushError, NotStartedError, SchemaError, UnavailableError
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.embedded_locations import Link
from brainlessdb.shell.lag import WatchLag
from brainlessdb.shell.synced import Syncing
from tests.helpers import eventually, memory_of, raw_bucket


@pytest.fixture
async def link(own_server: EmbeddedServer) -> AsyncIterator[Link]:
    """A proxy to the test's own server, which the test may cut and heal."""
    proxy = await Link(own_server.port).start()
    try:
        yield proxy
    finally:
        await proxy.close()


def figures(db: Brainless, collection: str = "call") -> dict[str, Any]:
    return dict(db.stats()["collections"][collection])


async def test_in_memory_synced_returns_with_nothing_pending(namespace: str) -> None:
    async with Brainless(None, namespace=namespace, location="here", flush_interval=60) as db:
        db.call.add(n=1)
        await db.synced(timeout=5)
        lag = figures(db)
        assert lag["pending"] == 0
        assert (lag["watch_behind"], lag["watch_behind_seconds"]) == (0, 0.0)
        assert lag["watch_revision"] >= 1
        assert db.call.lag == (0, 0.0, lag["watch_revision"], 0, 0.0)


async def test_synced_needs_a_started_database_and_a_sane_timeout(namespace: str) -> None:
    db = Brainless(None, namespace=namespace, location="here")
    with pytest.raises(NotStartedError):
        await db.synced()
    async with db:
        with pytest.raises(ValueError, match="timeout"):
            await db.synced(timeout=-1)
    with pytest.raises(NotStartedError):
        await db.synced()


@pytest.mark.nats
async def test_after_synced_on_each_node_both_hold_what_nats_holds(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    # No background flush within the test: what is written, synced() wrote.
    options: dict[str, Any] = {"namespace": namespace, "flush_interval": 600}
    async with (
        Brainless(nats_server.url, location="prague-1", **options) as a,
        Brainless(nats_server.url, location="brno-1", **options) as b,
    ):
        assert len(b.call) == 0  # b uses the collection (synced() covers those a node uses)
        burst = [a.call.add(n=n, by="a") for n in range(2000)]
        await a.synced()
        await b.synced()  # nothing of its own to write: the watch is what it waits for
        assert memory_of(b) == memory_of(a)
        for entity in burst[50:]:
            a.call.delete(entity)
        first = burst[0]
        for n in range(50, 80):
            b.call.add(n=n, by="b")
        first.n = -1
        await a.synced()
        assert figures(a)["pending"] == 0
        await b.synced()
        held_by_b = memory_of(b)  # at once: synced() waited for the watch, not the reads below
        # b came last: it holds a's writes and its own.
        stored, _ = await raw_bucket(nats_server.url, b.bucket_name("call"))
        assert held_by_b == stored
        assert len(stored) == 80
        assert stored[first.uuid]["n"] == -1
        await a.synced()  # after b's writes: a holds them too
        assert memory_of(a) == stored
        for db in (a, b):
            lag = figures(db)
            assert (lag["pending"], lag["watch_behind"], lag["watch_behind_seconds"]) == (0, 0, 0.0)
            assert lag["watch_revision"] >= 80


@pytest.mark.nats
async def test_through_an_outage_synced_times_out_and_the_lag_grows_then_all_catch_up(
    own_server: EmbeddedServer, link: Link, namespace: str
) -> None:
    proxied = f"nats://127.0.0.1:{link.port}"
    async with (
        Brainless(proxied, namespace=namespace, location="prague-1", flush_interval=0.02) as a,
        Brainless(own_server.url, namespace=namespace, location="brno-1", flush_interval=0.02) as b,
    ):
        a.call.add(n=0)
        await a.synced()
        link.cut("blackhole")
        written_here = a.call.add(n=1)
        written_there = b.call.add(n=2)
        await b.synced()
        with pytest.raises(UnavailableError, match="1 change"):
            await a.synced(timeout=0.5)
        await eventually(lambda: figures(a)["pending_seconds"] >= 0.5, timeout=30)
        assert figures(a)["pending"] == 1
        lag = a.call.lag  # the same figures, per collection
        assert lag.pending == 1 and lag.pending_seconds >= 0.5 and lag.behind == 0
        assert written_there.uuid not in a.call  # a cannot know of b's write, nor count it as lag
        link.heal()
        await a.synced(timeout=60)
        assert figures(a)["pending"] == 0
        assert written_there.uuid in a.call
        await b.synced()
        assert written_here.uuid in b.call
        assert memory_of(a) == memory_of(b)


def test_the_lag_counts_revisions_known_past_the_applied_one_and_since_when() -> None:
    now = [100.0]
    lag = WatchLag(lambda: now[0])
    assert lag.of("call", 0) == (0, 0, 0.0)
    lag.learnt("call", 10, applied=7)  # a write acknowledged at revision 10, the watch at 7
    now[0] = 101.5
    assert lag.of("call", 7) == (7, 3, 1.5)
    lag.learnt("call", 8, applied=9)  # an older revision learnt late changes nothing
    assert lag.of("call", 9) == (9, 1, 1.5)
    assert lag.of("call", 10) == (10, 0, 0.0)  # caught up
    now[0] = 200.0
    lag.learnt("call", 12, applied=10)
    now[0] = 201.0
    assert lag.of("call", 11) == (11, 1, 1.0)  # a new gap: counted from when it was learnt
    # Caught up between two learnt revisions, with nobody reading the figures: the gap starts anew.
    lag.learnt("call", 20, applied=12)
    now[0] = 230.0
    assert lag.of("call", 12) == (12, 8, 29.0)
    assert lag.of("other", 5) == (5, 0, 0.0)


# -- a database dropped without stop() -----------------------------------------------------------------


def test_a_started_database_dropped_without_stop_warns(namespace: str) -> None:
    async def started() -> Brainless:
        db = Brainless(None, namespace=namespace, location="here")
        db.call.add(n=1)
        return await db.start()

    db = asyncio.run(started())  # the loop ends with the database still started
    del db  # held in reference cycles (its parts call it back): the collector finds it
    with pytest.warns(ResourceWarning, match="not stopped"):
        gc.collect()


def test_a_stopped_or_never_started_database_drops_silently(namespace: str) -> None:
    async def stopped() -> Brainless:
        async with Brainless(None, namespace=namespace, location="here") as db:
            db.call.add(n=1)
        return db

    db = asyncio.run(stopped())
    never = Brainless(None, namespace=namespace, location="here")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del db, never
        gc.collect()


# -- what synced() waits for, step by step (no server: each part played by the test) -------------------


class Parts:
    """A flusher, a storage and a watch whose answers the test gives, for ``Syncing``."""

    def __init__(self) -> None:
        self.flushes: list[BaseException | None] = []  # each flush's outcome, in turn (then: success)
        self.revisions: list[BaseException | int] = []  # each last_revision answer, in turn
        self.applied = 0
        self.moved = asyncio.Event()
        self.waited_for: list[int] = []
        self.asked = asyncio.Event()

    async def flush(self) -> None:
        if self.flushes:
            outcome = self.flushes.pop(0)
            if outcome is not None:
                raise outcome

    async def last_revision(self, bucket: str) -> int:
        answer = self.revisions.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def follower(self, name: str) -> Parts:
        return self

    async def wait_for(self, revision: int) -> None:
        self.waited_for.append(revision)
        self.asked.set()
        while self.applied < revision:
            self.moved.clear()
            await self.moved.wait()

    def apply(self, revision: int) -> None:
        self.applied = revision
        self.moved.set()

    def syncing(self) -> Syncing:
        async def ready(collection: Any) -> None:
            pass

        parts: Any = self
        return Syncing(parts, parts, parts, lambda name: f"ns-{name}", ready, WatchLag())


class Named:
    name = "call"


async def test_synced_waits_for_the_watch_to_apply_the_buckets_last_revision() -> None:
    parts = Parts()
    parts.revisions = [UnavailableError("election"), UnavailableError("still"), 7]
    collections: Any = [Named()]
    waiting = asyncio.ensure_future(parts.syncing().synced(collections))
    await parts.asked.wait()  # through two unanswered asks of the bucket's last revision
    assert parts.waited_for == [7]
    parts.apply(6)
    await asyncio.sleep(0)
    assert not waiting.done()
    parts.apply(7)
    await waiting


async def test_synced_retries_a_flush_that_may_pass_and_raises_one_that_cannot() -> None:
    parts = Parts()
    parts.revisions = [0]
    outage = FlushError("1 change", {"call/x": UnavailableError("outage")})
    parts.flushes = [outage, outage, None]
    collections: Any = [Named()]
    await parts.syncing().synced(collections)
    assert parts.flushes == []
    never = FlushError("1 change", {"call/x": SchemaError("refused by the stored schema")})
    parts.flushes = [never]
    with pytest.raises(FlushError) as raised:
        await parts.syncing().synced(collections)
    assert raised.value is never


async def test_the_module_level_database_has_synced_too(namespace: str) -> None:
    await brainlessdb.setup(None, namespace=namespace, location="here", flush_interval=60)
    try:
        brainlessdb.call.add(n=1)
        await brainlessdb.synced(timeout=5)
        assert brainlessdb.get_db().stats()["collections"]["call"]["pending"] == 0
    finally:
        await brainlessdb.stop()
    with pytest.raises(NotStartedError):
        await brainlessdb.synced()
