"""Many nodes, one truth: watching other nodes, conflict-free merge, deletes that win, schemas in NATS.

Every test runs two or three ``Brainless`` nodes on separate connections (or separate handles of one
in-memory store), makes them write concurrently, and checks that they converge — in memory on every node
and in what the bucket stores.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import nats
import pytest

from brainlessdb import Brainless, Change, Delete, Entity, FlushError, SchemaError, meta
from brainlessdb.core.codec import decode_value
from tests.helpers import MakeDb, eventually


async def stored_record(db: Brainless, collection: str, uuid: str) -> Any:
    """The entity version the bucket holds (decoded), read through the node's own storage."""
    return await db._storage.get(db.bucket_name(collection), uuid)  # type: ignore[union-attr]


async def test_changes_of_one_node_appear_on_the_other(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    call = a.call.add(channel_id="1", state="new")
    await eventually(lambda: call.uuid in b.call)
    assert b.call[call.uuid].state == "new"

    call.state = "ringing"
    await eventually(lambda: b.call[call.uuid].state == "ringing")
    assert await b.call.find(state="ringing") is not None
    assert await b.call.find(state="new") is None

    del a.call[call]
    await eventually(lambda: call.uuid not in b.call)
    assert await b.call.filter(state="ringing") == []


async def test_concurrent_edits_of_different_fields_both_survive(make_db: MakeDb) -> None:
    a = await make_db("prague-1", flush_interval=60)
    b = await make_db("brno-1", flush_interval=60)
    call = a.call.add(channel_id="1", state="new", agent_id=0)
    await a.flush()
    await b.call.load()
    copy = b.call[call.uuid]

    call.state = "answered"
    copy.agent_id = 7
    await asyncio.gather(a.flush(), b.flush())
    await a.flush()
    await b.flush()
    for node in (a, b):
        await node.call.load()
        assert (node.call[call.uuid].state, node.call[call.uuid].agent_id) == ("answered", 7)
    entry = await stored_record(a, "call", call.uuid)
    record = decode_value(entry.value, time_ns=entry.time_ns)
    assert record.data == {"channel_id": "1", "state": "answered", "agent_id": 7}


async def test_concurrent_edits_of_one_field_converge(make_db: MakeDb) -> None:
    a = await make_db("prague-1", flush_interval=60)
    b = await make_db("brno-1", flush_interval=60)
    c = await make_db("ostrava-1", flush_interval=60)
    call = a.call.add(channel_id="1", state="new")
    await a.flush()
    for node in (b, c):
        await node.call.load()

    call.state = "from-a"
    b.call[call.uuid].state = "from-b"
    c.call[call.uuid].state = "from-c"
    await asyncio.gather(a.flush(), b.flush(), c.flush())
    for node in (a, b, c):
        await node.flush()
    for node in (a, b, c):
        await node.call.load()
    states = {node.call[call.uuid].state for node in (a, b, c)}
    assert len(states) == 1
    assert states <= {"from-a", "from-b", "from-c"}
    assert not any(meta(node.call[call.uuid]).dirty for node in (a, b, c))


async def one_call_on_two_nodes(make_db: MakeDb) -> tuple[Brainless, Brainless, Entity, Entity]:
    """Nodes a and b (flushing only when told to), and a call a wrote and b loaded: a's entity, b's copy."""
    a = await make_db("prague-1", flush_interval=60)
    b = await make_db("brno-1", flush_interval=60)
    call = a.call.add(channel_id="1", state="new")
    await a.flush()
    await b.call.load()
    return a, b, call, b.call[call.uuid]


async def test_a_delete_wins_over_a_concurrent_update(make_db: MakeDb) -> None:
    a, b, call, copy = await one_call_on_two_nodes(make_db)

    a.call.delete(call)
    copy.state = "updated after the delete"
    await asyncio.gather(a.flush(), b.flush())
    await b.flush()
    await a.flush()
    for node in (a, b):
        await node.call.load()
        assert call.uuid not in node.call
    entry = await stored_record(a, "call", call.uuid)
    assert entry is not None and entry.op.name == "DELETE"

    late = await make_db("late-1")
    assert call.uuid not in late.call


async def test_an_update_after_the_delete_arrived_cannot_resurrect(make_db: MakeDb) -> None:
    a, b, call, copy = await one_call_on_two_nodes(make_db)
    del a.call[call]
    await a.flush()
    await b.call.load()
    assert call.uuid not in b.call
    with pytest.raises(KeyError):
        copy.state = "too late"


async def test_a_late_joiner_catches_up(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    kept = [a.call.add(n=i) for i in range(50)] + [b.call.add(n=100 + i) for i in range(50)]
    for call in kept[:10]:
        a.call.delete(call)
    await asyncio.gather(a.flush(), b.flush())

    late = await make_db("late-1")
    assert len(late.call) == 90
    assert sorted(c.n for c in late.call) == sorted(c.n for c in kept[10:])
    assert late.call.schema == a.call.schema


async def test_a_fresh_node_knows_the_schema_right_after_start(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    a.call.add(channel_id="1", queue_id=5)
    a.empty.add(name="x")
    a.empty.delete((await a.empty.all())[0])
    await a.flush()

    b = await make_db("brno-1")
    with pytest.raises(SchemaError):
        b.call.add(channel_id=1, queue_id=5)
    with pytest.raises(SchemaError):
        b.call.add(channel_id="2")
    assert len(b.empty) == 0
    with pytest.raises(SchemaError):
        b.empty.add(name="y", extra=True)
    b.empty.add(name="y")


async def test_schema_evolution_by_a_typed_class_with_defaults(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    a.agent.add(name="Eva")
    await a.flush()

    @dataclass
    class Agent:
        name: str
        level: int = 1
        uuid: str | None = None

    b = await make_db("brno-1")
    agents = b.agent.typed(Agent)
    added = agents.add(name="Adam", level=3)
    existing = await agents.find(name="Eva")
    assert existing is not None and existing.level == 1
    await b.flush()
    await eventually(lambda: a.agent.schema is not None and "level" in a.agent.schema.fields)
    await eventually(lambda: added.uuid in a.agent)
    assert a.agent[added.uuid].level == 3

    @dataclass
    class Incompatible:
        name: int

    with pytest.raises(SchemaError):
        b.agent.typed(Incompatible)


async def test_concurrent_first_schemas_end_with_one_and_an_error_on_the_loser(make_db: MakeDb) -> None:
    a = await make_db("prague-1", flush_interval=60)
    b = await make_db("brno-1", flush_interval=60)
    a.call.add(channel_id="1")
    b.call.add(channel_id=1)
    results = await asyncio.gather(a.flush(), b.flush(), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], FlushError)
    assert any(isinstance(e, SchemaError) for e in failures[0].errors.values())
    winner, loser = (a, b) if results[0] is None else (b, a)
    late = await make_db("late-1")
    assert late.call.schema == winner.call.schema
    await late.call.load()
    assert len(late.call) == 1
    expected_type = str if winner is a else int
    assert [type(c.channel_id) for c in late.call] == [expected_type]
    # The loser keeps its entity (never written, reported by every flush) and adopts the stored schema;
    # the winner's entity reaches it through its watch.
    await eventually(lambda: len(loser.call) == 2)
    assert loser.call.schema == winner.call.schema
    with pytest.raises(FlushError):
        await loser.flush()
    with pytest.raises(SchemaError):
        loser.call.add(channel_id=2 if winner is a else "2")


async def test_change_events_report_remote_changes(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    seen: list[Any] = []
    local: list[Any] = []
    received = asyncio.Event()

    async def on_async_change(event: Change) -> None:
        received.set()

    def broken(event: Any) -> None:
        raise RuntimeError("a bug in a callback")

    b.call.on_change(seen.append)
    b.call.on_change(broken)
    b.call.on_change(on_async_change)
    b.call.on_delete(seen.append)
    b.call.on_change(local.append, local=True, remote=False)

    call = a.call.add(state="new")
    await eventually(lambda: len(seen) == 1)
    assert isinstance(seen[0], Change) and seen[0].created and seen[0].origin == "remote"
    call.state = "ringing"
    await eventually(lambda: len(seen) == 2)
    assert seen[1].changes == {"state": ("new", "ringing")}
    await asyncio.wait_for(received.wait(), 5)

    b.call[call.uuid].state = "local change"
    assert [e.changes for e in local] == [{"state": ("ringing", "local change")}]
    await b.flush()
    del a.call[call]
    await eventually(lambda: any(isinstance(e, Delete) for e in seen))
    assert b.callback_errors >= 2
    assert call.uuid not in b.call


async def test_a_foreign_json_object_is_accepted_as_data(nats_server: Any, namespace: str) -> None:
    a = Brainless(nats_server.url, namespace=namespace, location="prague-1", flush_interval=0.02)
    await a.start()
    a.call.add(channel_id="1", state="new")
    await a.flush()
    client = await nats.connect(nats_server.url)
    try:
        kv = await client.jetstream().key_value(a.bucket_name("call"))
        await kv.put(
            "8a6b1f5e-0000-1000-8000-000000000001", json.dumps({"channel_id": "9", "state": "x"}).encode()
        )
        await kv.put("8a6b1f5e-0000-1000-8000-000000000002", json.dumps({"channel_id": 9}).encode())
        await kv.put("8a6b1f5e-0000-1000-8000-000000000003", b"not json")
    finally:
        await client.close()
    await eventually(lambda: "8a6b1f5e-0000-1000-8000-000000000001" in a.call)
    assert a.call["8a6b1f5e-0000-1000-8000-000000000001"].state == "x"
    await eventually(lambda: a.call.sync.dead_letter_count == 2)
    assert len(a.call) == 2
    await a.stop()


async def test_a_watch_survives_a_server_restart(own_server: Any, namespace: str) -> None:
    a = Brainless(own_server.url, namespace=namespace, location="prague-1", flush_interval=0.02)
    b = Brainless(own_server.url, namespace=namespace, location="brno-1", flush_interval=0.02)
    await a.start()
    await b.start()
    try:
        first = a.call.add(n=1)
        await eventually(lambda: first.uuid in b.call)

        own_server.kill()
        during = a.call.add(n=2)
        first.n = 10
        assert len(a.call) == 2
        await asyncio.sleep(0.3)
        own_server.start()

        await eventually(lambda: during.uuid in b.call, timeout=20)
        await eventually(lambda: b.call[first.uuid].n == 10, timeout=20)
        after = a.call.add(n=3)
        await eventually(lambda: after.uuid in b.call, timeout=20)
        await eventually(lambda: not a.call.sync.has_pending(), timeout=20)
    finally:
        await a.stop()
        await b.stop()


async def test_nodes_keep_syncing_when_a_cluster_server_dies(nats_cluster: Any, namespace: str) -> None:
    urls = nats_cluster.urls
    a = Brainless(urls, namespace=namespace, location="prague-1", flush_interval=0.02, replicas=3)
    b = Brainless(
        list(reversed(urls)), namespace=namespace, location="brno-1", flush_interval=0.02, replicas=3
    )
    await a.start()
    await b.start()
    try:
        first = a.call.add(n=1)
        await eventually(lambda: first.uuid in b.call, timeout=10)

        nats_cluster.servers[0].kill()
        second = a.call.add(n=2)
        third = b.call.add(n=3)
        first.n = 11
        await eventually(lambda: second.uuid in b.call and third.uuid in a.call, timeout=30)
        await eventually(lambda: b.call[first.uuid].n == 11, timeout=30)
        await a.flush()
        await b.flush()
    finally:
        await a.stop()
        await b.stop()


async def test_delete_markers_past_their_retention_are_removed(make_db: MakeDb) -> None:
    a = await make_db("prague-1", delete_retention=0.2)
    call = a.call.add(n=1)
    await a.flush()
    del a.call[call]
    await a.flush()
    bucket = a.bucket_name("call")
    marker = await a._storage.get(bucket, call.uuid)  # type: ignore[union-attr]
    assert marker is not None and marker.op.name == "DELETE"

    async def gone() -> bool:
        return await a._storage.get(bucket, call.uuid) is None  # type: ignore[union-attr]

    for _ in range(100):
        if await gone():
            break
        await asyncio.sleep(0.05)
    assert await gone()
    assert not a.call.sync.is_deleted(call.uuid)
    late = await make_db("late-1")
    assert call.uuid not in late.call


async def test_a_resync_drops_what_was_deleted_and_forgotten_while_away(make_db: MakeDb) -> None:
    a = await make_db("prague-1", flush_interval=60, delete_retention=3600)
    b = await make_db("brno-1", flush_interval=60, delete_retention=3600)
    gone = a.call.add(n=1)
    kept = a.call.add(n=2)
    await a.flush()
    await b.call.load()
    assert gone.uuid in b.call

    follower = b._watches.follower("call") if b._watches else None
    assert follower is not None
    await follower.stop()  # b is away
    del a.call[gone]
    await a.flush()
    a.delete_retention = 0.001
    await asyncio.sleep(0.01)
    assert await a.expire_deletes() == 1
    unflushed = b.call.add(n=3)

    await b.resync()
    await b.call.load()
    assert gone.uuid not in b.call
    assert kept.uuid in b.call
    assert unflushed.uuid in b.call
    await b.flush()
    await a.call.load()
    assert unflushed.uuid in a.call


async def test_an_outage_longer_than_the_retention_resyncs_and_keeps_what_is_live(
    own_server: Any, namespace: str
) -> None:
    options: dict[str, Any] = {"namespace": namespace, "flush_interval": 0.02, "delete_retention": 0.5}
    a = Brainless(own_server.url, location="prague-1", **options)
    b = Brainless(own_server.url, location="brno-1", **options)
    await a.start()
    await b.start()
    try:
        stored = [a.call.add(n=i) for i in range(5)]
        await eventually(lambda: all(c.uuid in b.call for c in stored), timeout=10)
        own_server.kill()
        offline = b.call.add(n=99)
        await asyncio.sleep(1.5)
        own_server.start()
        await eventually(lambda: b.resyncs >= 1, timeout=20)
        after = a.call.add(n=100)
        await eventually(lambda: after.uuid in b.call and offline.uuid in a.call, timeout=20)
        assert all(c.uuid in b.call for c in stored)
    finally:
        await a.stop()
        await b.stop()
