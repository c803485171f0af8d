"""Expiring entities between nodes: gone everywhere at the deadline, with and without the server's TTL.

Two nodes and a fresh one on a real nats-server; the server removes expired entities itself where the
bucket takes per-message TTL (the default here), and the nodes write the delete where it does not (a bucket
keeping history, ``history=2``, never takes one). Deadlines are short (1-2 s) and the tests wait for the
delete events, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from brainlessdb import Brainless, Delete, ExpiryError, NotFoundError, SchemaError, meta
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.shell.expiry import POLL, ExpiryTimer
from brainlessdb.storage.base import Entry, Op, WatchBatch
from brainlessdb.storage.nats.kv import NatsKVStorage
from tests.helpers import MakeDb, eventually, kv_storage, nats_connection

WAIT = 15.0  # seconds any awaited event may take at most (a slow machine), never how long it should take

server_ttl = pytest.mark.parametrize("history", [1, 2], ids=["server-ttl", "nodes-delete"])


class Deletes:
    """The ``Delete`` events of one node's collection, each with the wall time it arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[Delete, float]] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: Delete) -> None:
        self.events.append((event, time.time()))
        self._arrived.set()

    async def of(self, uuid: str) -> tuple[Delete, float]:
        """The delete of ``uuid``, waited for."""
        return await asyncio.wait_for(self._of(uuid), WAIT)

    async def _of(self, uuid: str) -> tuple[Delete, float]:
        while True:
            for event, when in self.events:
                if event.uuid == uuid:
                    return event, when
            self._arrived.clear()
            await self._arrived.wait()


@contextlib.asynccontextmanager
async def node(url: str, namespace: str, location: str, **options: Any) -> AsyncIterator[Brainless]:
    options.setdefault("flush_interval", 0.02)
    db = Brainless(url, namespace=namespace, location=location, **options)
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


async def stream_config(url: str, bucket: str) -> Any:
    async with nats_connection(url) as client:
        return (await client.jetstream().stream_info(f"KV_{bucket}")).config


@pytest.mark.nats
@server_ttl
async def test_an_expired_entity_is_gone_on_every_node_and_on_a_fresh_one(
    nats_server: EmbeddedServer, namespace: str, history: int
) -> None:
    url = nats_server.url
    async with (
        node(url, namespace, "a", history=history) as a,
        node(url, namespace, "b", history=history) as b,
    ):
        on_a, on_b = Deletes(), Deletes()
        a.collection("session").on_delete(on_a)
        b.collection("session").on_delete(on_b)
        session = a.collection("session").add(user="ann")
        a.collection("session").expire(session, 1.5)
        deadline = meta(session).expires_at
        assert deadline is not None
        await a.flush()
        await eventually(lambda: session.uuid in b.collection("session"), WAIT)
        assert meta(b.collection("session")[session.uuid]).expires_at == deadline

        for deletes in (on_a, on_b):
            event, when = await deletes.of(session.uuid)
            assert (event.reason, event.origin) == ("expired", "remote")
            assert when >= deadline - 0.05  # not before its deadline (the clocks are one here)
        with pytest.raises(NotFoundError):
            b.collection("session")[session.uuid]
        assert await a.collection("session").get(session.uuid) is None

        config = await stream_config(url, a.bucket_name("session"))
        assert bool(config.allow_msg_ttl) is (history == 1)
        # With the server's TTL the server removes it (and leaves a marker); without it the nodes wrote a
        # delete marker. Either way no live value is left.
        await removed(url, a.bucket_name("session"), session.uuid)
        async with node(url, namespace, "fresh", history=history) as fresh:
            assert await fresh.collection("session").get(session.uuid) is None
            assert len(fresh.collection("session")) == 0


async def _holds_no_value(storage: NatsKVStorage, bucket: str, key: str) -> bool:
    entry = await storage.get(bucket, key)
    return entry is None or entry.op is not Op.PUT


async def removed(url: str, bucket: str, key: str) -> None:
    """Wait until the bucket removes ``key``: its last entry is a marker (the server's or a node's)."""
    async with kv_storage(url) as storage:
        await asyncio.wait_for(_marker_of(storage, bucket, key), WAIT)


async def _marker_of(storage: NatsKVStorage, bucket: str, key: str) -> None:
    async with contextlib.aclosing(storage.watch(bucket)) as events:
        async for event in events:
            if isinstance(event, Entry) and event.key == key and event.op is not Op.PUT:
                return


@pytest.mark.nats
async def test_with_the_server_ttl_an_entity_expires_even_when_no_node_runs_after_a_claim(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    url = nats_server.url
    async with node(url, namespace, "a") as a:
        session = a.collection("session").add(user="ann")
        a.collection("session").expire(session, 2)
        bucket = a.bucket_name("session")
        await a.flush()
        # The last write is a claim's: it carries the TTL too.
        assert await a.collection("session").update_if(session, {"user": "ann"}, user="bob")
    async with kv_storage(url) as storage:
        assert not await _holds_no_value(storage, bucket, session.uuid)  # stored, and no node is left
    await removed(url, bucket, session.uuid)


@pytest.mark.nats
async def test_with_the_server_ttl_a_delete_marker_goes_even_when_no_node_runs(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    url = nats_server.url
    async with node(url, namespace, "a", delete_retention=1.0) as a:
        sessions = a.collection("session")
        sessions.expire(sessions.add(user="ann"), 60)  # the collection uses expiry: its bucket takes TTL
        gone = sessions.add(user="bob")
        await a.flush()
        sessions.delete(gone)
        bucket = a.bucket_name("session")
    # The marker's retention passes with no node running: only the server can remove it.
    async with kv_storage(url) as storage:
        for _ in range(int(WAIT / 0.1)):
            if await storage.get(bucket, gone.uuid) is None:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the delete marker was still there after {WAIT}s")


@pytest.mark.nats
@server_ttl
async def test_a_stale_write_from_a_node_that_missed_the_expiry_does_not_bring_it_back(
    nats_server: EmbeddedServer, namespace: str, history: int
) -> None:
    url = nats_server.url
    async with _deaf_storage(url, history) as deaf:
        cut = Brainless(deaf, namespace=namespace, location="cut", flush_interval=60, history=history)
        await cut.start()
        try:
            async with node(url, namespace, "a", history=history) as a:
                on_a = Deletes()
                a.collection("session").on_delete(on_a)
                session = a.collection("session").add(user="ann")
                await a.flush()
                await eventually(lambda: session.uuid in cut.collection("session"), WAIT)
                deaf.hearing.clear()  # from now on the node hears nothing: not the expiry, not the delete
                a.collection("session").expire(session, 1)
                await a.flush()
                await on_a.of(session.uuid)
                stale = cut.collection("session").entities[session.uuid]
                stale.user = "bob"  # a change newer than everything, of a version without the expiry
                await cut.flush()  # the write meets what NATS holds now: the entity is gone
                assert session.uuid not in cut.collection("session")
                deaf.hearing.set()
                await a.collection("session").load()
                assert session.uuid not in a.collection("session")
                async with kv_storage(url) as storage:
                    assert await _holds_no_value(storage, a.bucket_name("session"), session.uuid)
        finally:
            deaf.hearing.set()
            await cut.stop()


class DeafStorage:
    """A NATS storage whose watches can be held back (``hearing`` cleared): the node then hears nothing of
    what others write, while its own writes and reads still go through."""

    def __init__(self, inner: NatsKVStorage) -> None:
        self.inner = inner
        self.hearing = asyncio.Event()
        self.hearing.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def watch_batches(
        self, bucket: str, *, after: int | None = None
    ) -> AsyncGenerator[WatchBatch, None]:
        batches = self.inner.watch_batches(bucket, after=after)
        try:
            async for batch in batches:
                await self.hearing.wait()
                yield batch
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.inner.close()


@contextlib.asynccontextmanager
async def _deaf_storage(url: str, history: int) -> AsyncIterator[DeafStorage]:
    inner = await NatsKVStorage.connect(url, history=history)
    try:
        yield DeafStorage(inner)
    finally:
        await inner.close()


async def test_extending_before_the_deadline_keeps_the_entity_until_the_new_one(make_db: MakeDb) -> None:
    a, b = await make_db("a"), await make_db("b")
    on_b = Deletes()
    b.collection("session").on_delete(on_b)
    session = a.collection("session").add(user="ann")
    a.collection("session").expire(session, 1)
    first = meta(session).expires_at
    await a.flush()
    await eventually(lambda: session.uuid in b.collection("session"), WAIT)
    a.collection("session").expire(session, 2)  # well before the first deadline
    later = meta(session).expires_at
    assert first is not None and later is not None and later > first
    await a.flush()
    await eventually(lambda: meta(b.collection("session")[session.uuid]).expires_at == later, WAIT)
    event, when = await on_b.of(session.uuid)
    assert event.reason == "expired"
    assert when >= later - 0.05


async def test_a_collection_default_ttl_is_shared_through_the_stored_schema(make_db: MakeDb) -> None:
    a = await make_db("a")
    sessions = a.collection("session", ttl=1)
    on_a = Deletes()
    sessions.on_delete(on_a)
    session = sessions.add(user="ann")
    assert meta(session).expires_at is not None
    await a.flush()
    b = await make_db("b")
    assert b.collection("session").ttl == 1  # read from the stored schema, not declared on b
    added_on_b = b.collection("session").add(user="bob")
    assert meta(added_on_b).expires_at is not None
    with pytest.raises(SchemaError, match="set_ttl"):
        b.collection("session", ttl=30)
    b.collection("session").set_ttl(30)
    await b.flush()
    await eventually(lambda: a.collection("session").ttl == 30, WAIT)
    event, _ = await on_a.of(session.uuid)
    assert event.reason == "expired"


async def test_bad_expiries_are_refused(make_db: MakeDb) -> None:
    db = await make_db("a")
    session = db.collection("session").add(user="ann")
    for bad in (0, -1, float("nan"), "10"):
        with pytest.raises(ExpiryError):
            db.collection("session").expire(session, bad)
        with pytest.raises(ExpiryError):
            db.collection("other", ttl=bad)
    assert "other" not in db.collections


async def test_the_timer_removes_what_is_due_and_sleeps_until_the_next_deadline() -> None:
    db = Brainless(None, namespace="timer", location="a")
    now = [1_800_000_000_000]
    db.clock = HybridLogicalClock("a", now_ms=lambda: now[0])  # a clock the test sets, for what follows
    sessions = db.collection("session")
    on_delete = Deletes()
    sessions.on_delete(on_delete)
    timer = ExpiryTimer(lambda: db.collections.values(), lambda: now[0])
    assert timer.expire_due() == POLL  # nothing expires: it only looks again later
    soon, later = sessions.add(user="ann"), sessions.add(user="bob")
    sessions.expire(soon, 0.1)
    sessions.expire(later, 10)
    assert timer.expire_due() == pytest.approx(0.1)  # wakes at the earliest deadline
    now[0] += 100
    assert timer.expire_due() == POLL  # the next deadline is further than a look away
    assert [event.uuid for event, _ in on_delete.events] == [soon.uuid]
    assert timer.expired == 1
    assert later.uuid in sessions.entities
