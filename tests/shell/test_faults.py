"""Nothing lost, whatever fails: outages, failovers, bad data in NATS and shutdown, on real nats-servers.

Every test runs its nodes against nats-server processes of its own (killed with SIGKILL, frozen with
SIGSTOP, restarted on the same port and store directory) and checks, at the end, that every node's memory,
a fresh node's load and a raw nats-py read of the bucket agree, and that what was acknowledged is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest

from brainlessdb import Brainless, FlushError, StorageError, UnavailableError
from brainlessdb.embedded import EmbeddedServer

from .conftest import eventually

pytestmark = pytest.mark.nats


# -- helpers -------------------------------------------------------------------------------------


def memory_of(db: Brainless, collection: str = "call") -> dict[str, dict[str, Any]]:
    """A node's ``{uuid: data}`` of one collection."""
    return {entity.uuid: entity.data for entity in db.collection(collection).entities.values()}


async def raw_bucket(url: str | list[str], bucket: str) -> tuple[dict[str, Any], set[str]]:
    """What a plain nats-py client reads in a bucket: ``{key: data}`` of live keys, and the deleted keys.

    Reads the last message of every subject of the bucket's stream and decodes the JSON itself.
    """
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        stream = f"KV_{bucket}"
        info = await js.stream_info(stream, subjects_filter=">")
        subjects = sorted((info.state.subjects or {}).keys())
        live: dict[str, Any] = {}
        deleted: set[str] = set()
        for chunk in range(0, len(subjects), 500):
            part = subjects[chunk : chunk + 500]
            messages = await asyncio.gather(*(js.get_last_msg(stream, subject) for subject in part))
            for subject, msg in zip(part, messages, strict=True):
                key = subject[len(f"$KV.{bucket}.") :]
                operation = (msg.headers or {}).get("KV-Operation")
                if operation in ("DEL", "PURGE"):
                    deleted.add(key)
                else:
                    live[key] = json.loads(msg.data)["d"]
        return live, deleted
    finally:
        await client.close()


async def history_of(url: str, bucket: str) -> dict[str, list[dict[str, Any]]]:
    """Every message the bucket's stream retains, by key, oldest first (needs ``history`` > 1)."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        stream = f"KV_{bucket}"
        state = (await js.stream_info(stream)).state
        found: dict[str, list[dict[str, Any]]] = {}
        for seq in range(state.first_seq, state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                continue
            key = (msg.subject or "").split(".", 2)[2]
            body = json.loads(msg.data) if msg.data else {}
            body["seq"] = seq
            found.setdefault(key, []).append(body)
        return found
    finally:
        await client.close()


async def fresh_load(url: str | list[str], namespace: str, collection: str = "call") -> dict[str, Any]:
    """What a node that has just started loads."""
    db = Brainless(url, namespace=namespace, location="fresh-1", flush_interval=3600)
    await db.start()
    try:
        await db.collection(collection).load()
        return memory_of(db, collection)
    finally:
        await db.stop()


async def settle(nodes: list[Brainless], timeout: float = 30.0) -> None:
    """Wait until no node has anything pending and every node holds the same (they converged)."""

    def converged() -> bool:
        if any(c.replica.has_pending() for node in nodes for c in node.collections.values()):
            return False
        first = memory_of(nodes[0])
        return all(memory_of(node) == first for node in nodes[1:])

    await eventually(converged, timeout=timeout, interval=0.05)
    for node in nodes:
        await node.call.load()
    assert all(memory_of(node) == memory_of(nodes[0]) for node in nodes)


@contextlib.contextmanager
def frozen(server: EmbeddedServer) -> Iterator[None]:
    """A server that stops answering (SIGSTOP) without closing its connections, then thaws."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@pytest.fixture
async def nodes(own_server: EmbeddedServer, namespace: str) -> AsyncIterator[list[Brainless]]:
    """Three nodes on the test's own server, flushing every 20 ms, keeping 64 revisions per key."""
    started = [
        Brainless(
            own_server.url, namespace=namespace, location=f"node-{i}", flush_interval=0.02, history=64
        )
        for i in range(3)
    ]
    for node in started:
        await node.start()
    yield started
    for node in started:
        with contextlib.suppress(FlushError):
            await node.stop(timeout=5)


# -- graceful shutdown ---------------------------------------------------------------------------


async def test_stop_writes_everything_pending_within_the_timeout(
    own_server: EmbeddedServer, namespace: str
) -> None:
    db = Brainless(own_server.url, namespace=namespace, location="prague-1", flush_interval=3600)
    await db.start()
    stored = [db.call.add(n=i, state="new") for i in range(200)]
    await db.flush()
    added = [db.call.add(n=1000 + i, state="new") for i in range(3000)]
    for call in stored[:100]:
        call.state = "changed"
    for call in stored[100:150]:
        db.call.delete(call)
    expected = memory_of(db)
    started = time.monotonic()
    await db.stop(timeout=10)
    assert time.monotonic() - started < 10
    assert not any(call.dirty for call in added)
    assert await fresh_load(own_server.url, namespace) == expected
    live, deleted = await raw_bucket(own_server.url, db.bucket_name("call"))
    assert live == expected
    assert deleted == {call.uuid for call in stored[100:150]}


async def test_stop_with_nats_dead_returns_at_once_listing_what_it_could_not_write(
    own_server: EmbeddedServer, namespace: str
) -> None:
    db = Brainless(own_server.url, namespace=namespace, location="prague-1", flush_interval=0.02)
    await db.start()
    kept, gone = db.call.add(n=1), db.call.add(n=2)
    await db.flush()
    own_server.kill()
    kept.n = 10
    added = db.call.add(n=3)
    del db.call[gone]
    other = db.other.add(name="a collection made during the outage")
    await asyncio.sleep(0.2)  # the background flusher tries meanwhile
    started = time.monotonic()
    with pytest.raises(FlushError) as raised:
        await db.stop(timeout=3)
    assert time.monotonic() - started < 3
    unwritten = {f"call/{kept.uuid}", f"call/{added.uuid}", f"call/{gone.uuid}", f"other/{other.uuid}"}
    assert unwritten <= set(raised.value.errors)
    assert set(raised.value.errors) <= unwritten | {"other/(schema)"}
    assert all(isinstance(error, UnavailableError) for error in raised.value.errors.values())


async def test_stop_with_nats_frozen_returns_within_the_timeout_listing_what_it_could_not_write(
    own_server: EmbeddedServer, namespace: str
) -> None:
    db = Brainless(own_server.url, namespace=namespace, location="prague-1", flush_interval=0.02)
    await db.start()
    kept = db.call.add(n=1)
    await db.flush()
    with frozen(own_server):
        kept.n = 10
        added = [db.call.add(n=i) for i in range(100)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(FlushError) as raised:
            await db.stop(timeout=1.5)
        elapsed = time.monotonic() - started
    # The flush gets the timeout; releasing the connection of a server that does not answer adds a
    # bounded moment (a consumer deletion and a ping, one second each at most), never the 10-30 s of
    # nats-py's own flush and drain timeouts.
    assert elapsed < 1.5 + 2.5, elapsed
    assert set(raised.value.errors) == {f"call/{c.uuid}" for c in [kept, *added]}
    assert all(isinstance(error, StorageError) for error in raised.value.errors.values())
