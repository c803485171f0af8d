"""Contract tests of the storage seam: each runs on ``MemoryStorage`` and on ``NatsKVStorage``.

The NATS-only tests at the end break servers on purpose (restart, outage, cluster member loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.aio.client
import nats.js
import pytest

from brainlessdb.embedded import EmbeddedCluster, EmbeddedServer
from brainlessdb.errors import ConflictError, InvalidNameError, StorageError, UnavailableError
from brainlessdb.storage import base
from brainlessdb.storage.base import CaughtUp, Entry, Op, WatchEvent, Write
from brainlessdb.storage.memory import MemoryStorage
from brainlessdb.storage.nats.kv import NatsKVStorage
from brainlessdb.storage.nats.protocol import parse_ack_reply
from tests.helpers import kv_storage, nats_connection

# Both backends return async generators from watch(), so tests can close them with aclosing().
Storage = MemoryStorage | NatsKVStorage

STEP = 10.0  # seconds any single awaited event may take before the test fails instead of hanging


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    backend: Storage
    if request.param == "memory":
        backend = MemoryStorage()
    else:
        server: EmbeddedServer = request.getfixturevalue("nats_server")
        backend = await NatsKVStorage.connect(server.url, history=3)
    yield backend
    await backend.close()


@pytest.fixture
async def bucket(storage: Storage, namespace: str) -> str:
    name = f"{namespace}-call"
    assert await storage.open_bucket(name)
    return name


async def next_event(events: AsyncIterator[WatchEvent]) -> WatchEvent:
    return await asyncio.wait_for(anext(events), STEP)


async def read_one(events: AsyncIterator[WatchEvent]) -> WatchEvent:
    return await anext(events)


async def take(events: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    return [await next_event(events) for _ in range(count)]


async def write_one(storage: Storage, bucket: str, write: Write) -> int | Exception:
    [result] = await storage.write(bucket, [write])
    return result


async def put(storage: Storage, bucket: str, key: str, value: bytes, expected: int | None = None) -> int:
    result = await write_one(storage, bucket, Write(key, value, expected))
    assert isinstance(result, int), result
    return result


def summary(events: list[WatchEvent]) -> list[tuple[Any, ...]]:
    return [
        (event.key, event.revision, event.value, event.op)
        if isinstance(event, Entry)
        else ("caught-up", event.revision)
        for event in events
    ]


def test_both_backends_satisfy_the_storage_protocol() -> None:
    """mypy checks this assignment: a drift between a backend and the protocol fails type checking."""
    backends: list[type[base.Storage]] = [MemoryStorage, NatsKVStorage]
    assert [backend.__name__ for backend in backends] == ["MemoryStorage", "NatsKVStorage"]


# -- buckets -------------------------------------------------------------------------------------------


async def test_open_bucket_creates_it_once_and_lists_it(storage: Storage, namespace: str) -> None:
    assert not await storage.open_bucket(f"{namespace}-a", create=False)
    assert await storage.open_bucket(f"{namespace}-a")
    assert await storage.open_bucket(f"{namespace}-a")
    assert await storage.open_bucket(f"{namespace}-b")
    assert await storage.open_bucket(f"{namespace}-a", create=False)

    assert await storage.list_buckets(namespace) == [f"{namespace}-a", f"{namespace}-b"]
    assert await storage.list_buckets(f"{namespace}-b") == [f"{namespace}-b"]
    assert await storage.list_buckets(f"{namespace}-nothing") == []


@pytest.mark.parametrize("name", ["bad.name", "has space", "", "star*", "a>b"])
async def test_invalid_bucket_name_raises_invalid_name_error(storage: Storage, name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        await storage.open_bucket(name)
    assert info.value.name == name


async def test_bucket_that_was_never_opened_is_a_storage_error(storage: Storage, namespace: str) -> None:
    with pytest.raises(StorageError):
        await storage.write(f"{namespace}-missing", [Write("k", b"v", None)])


# -- writes and reads ----------------------------------------------------------------------------------


async def test_write_with_expected_zero_creates_the_key(storage: Storage, bucket: str) -> None:
    revision = await put(storage, bucket, "k1", b"one", expected=0)

    entry = await storage.get(bucket, "k1")

    assert entry is not None
    assert (entry.key, entry.revision, entry.value, entry.op) == ("k1", revision, b"one", Op.PUT)
    assert entry.time_ns > 0
    assert abs(entry.time_ns - time.time_ns()) < 60 * 10**9


async def test_update_with_the_right_revision_succeeds(storage: Storage, bucket: str) -> None:
    first = await put(storage, bucket, "k1", b"one", expected=0)

    second = await put(storage, bucket, "k1", b"two", expected=first)

    assert second > first
    entry = await storage.get(bucket, "k1")
    assert entry is not None
    assert (entry.revision, entry.value) == (second, b"two")


async def test_update_with_a_wrong_revision_is_a_conflict(storage: Storage, bucket: str) -> None:
    first = await put(storage, bucket, "k1", b"one", expected=0)
    await put(storage, bucket, "k1", b"two", expected=first)

    result = await write_one(storage, bucket, Write("k1", b"stale", first))

    assert isinstance(result, ConflictError)
    assert (result.key, result.expected) == ("k1", first)
    entry = await storage.get(bucket, "k1")
    assert entry is not None
    assert entry.value == b"two"


async def test_create_of_an_existing_key_is_a_conflict(storage: Storage, bucket: str) -> None:
    await put(storage, bucket, "k1", b"one", expected=0)

    result = await write_one(storage, bucket, Write("k1", b"again", 0))

    assert isinstance(result, ConflictError)
    assert (result.key, result.expected) == ("k1", 0)


async def test_update_of_a_missing_key_is_a_conflict(storage: Storage, bucket: str) -> None:
    result = await write_one(storage, bucket, Write("ghost", b"v", 7))

    assert isinstance(result, ConflictError)
    assert await storage.get(bucket, "ghost") is None


async def test_unconditional_write_creates_and_overwrites(storage: Storage, bucket: str) -> None:
    first = await put(storage, bucket, "k1", b"one")
    second = await put(storage, bucket, "k1", b"two")

    assert second > first
    entry = await storage.get(bucket, "k1")
    assert entry is not None
    assert entry.value == b"two"


async def test_delete_marker_keeps_its_body_and_op(storage: Storage, bucket: str) -> None:
    created = await put(storage, bucket, "k1", b"one", expected=0)

    deleted = await write_one(storage, bucket, Write("k1", b"tombstone", created, delete=True))

    assert isinstance(deleted, int)
    entry = await storage.get(bucket, "k1")
    assert entry is not None
    assert (entry.revision, entry.value, entry.op) == (deleted, b"tombstone", Op.DELETE)
    # The marker is an entry of the key: a create expecting "no entry" must fail on it.
    assert isinstance(await write_one(storage, bucket, Write("k1", b"again", 0)), ConflictError)
    assert isinstance(await write_one(storage, bucket, Write("k1", b"again", deleted)), int)


async def test_many_writes_with_one_conflict_apply_all_the_others(storage: Storage, bucket: str) -> None:
    taken = await put(storage, bucket, "taken", b"x", expected=0)
    writes = [Write(f"k{i}", f"v{i}".encode(), 0) for i in range(50)]
    writes.insert(20, Write("taken", b"y", 0))
    writes.append(Write("taken", b"z", taken + 1000))

    results = await storage.write(bucket, writes)

    assert len(results) == len(writes)
    assert isinstance(results[20], ConflictError)
    assert results[20].expected == 0
    assert isinstance(results[-1], ConflictError)
    others = [result for i, result in enumerate(results) if i not in (20, len(writes) - 1)]
    revisions = [result for result in others if isinstance(result, int)]
    assert len(revisions) == len(others) == 50
    # Writes of one call are applied in their order.
    assert revisions == sorted(set(revisions))
    for i in range(50):
        entry = await storage.get(bucket, f"k{i}")
        assert entry is not None
        assert entry.value == f"v{i}".encode()


async def test_invalid_key_fails_only_its_own_write(storage: Storage, bucket: str) -> None:
    results = await storage.write(
        bucket, [Write("ok", b"1", 0), Write("no good", b"2", 0), Write(".x", b"", 0)]
    )

    assert isinstance(results[0], int)
    assert isinstance(results[1], StorageError)
    assert isinstance(results[2], StorageError)


async def test_get_of_a_missing_key_is_none(storage: Storage, bucket: str) -> None:
    assert await storage.get(bucket, "nothing-here") is None


async def test_last_revision_follows_the_writes(storage: Storage, bucket: str) -> None:
    assert await storage.last_revision(bucket) == 0

    await put(storage, bucket, "a", b"1")
    last = await put(storage, bucket, "b", b"2")

    assert await storage.last_revision(bucket) == last


async def test_purge_leaves_only_a_purge_marker(storage: Storage, bucket: str) -> None:
    first = await put(storage, bucket, "k1", b"one", expected=0)
    deleted = await write_one(storage, bucket, Write("k1", b"", first, delete=True))
    assert isinstance(deleted, int)

    await storage.purge(bucket, "k1")

    entry = await storage.get(bucket, "k1")
    assert entry is not None
    assert (entry.op, entry.value) == (Op.PURGE, b"")
    assert entry.revision == await storage.last_revision(bucket) > deleted
    async with contextlib.aclosing(storage.watch(bucket)) as events:
        assert summary(await take(events, 2)) == [
            ("k1", entry.revision, b"", Op.PURGE),
            ("caught-up", entry.revision),
        ]


# -- watch ---------------------------------------------------------------------------------------------


async def test_watch_of_an_empty_bucket_is_caught_up_at_once(storage: Storage, bucket: str) -> None:
    async with contextlib.aclosing(storage.watch(bucket)) as events:
        assert await next_event(events) == CaughtUp(0)


async def test_watch_replays_the_last_entry_per_key_then_catches_up_then_goes_live(
    storage: Storage, bucket: str
) -> None:
    a1 = await put(storage, bucket, "a", b"a1")
    b1 = await put(storage, bucket, "b", b"b1")
    a2 = await put(storage, bucket, "a", b"a2")
    a3 = await put(storage, bucket, "a", b"a3")
    c1 = await write_one(storage, bucket, Write("c", b"gone", None, delete=True))
    assert isinstance(c1, int)
    assert a1 < b1 < a2 < a3 < c1

    async with contextlib.aclosing(storage.watch(bucket)) as events:
        replay = await take(events, 4)
        assert summary(replay) == [
            ("b", b1, b"b1", Op.PUT),
            ("a", a3, b"a3", Op.PUT),
            ("c", c1, b"gone", Op.DELETE),
            ("caught-up", c1),
        ]
        live = [await put(storage, bucket, "d", b"d1"), await put(storage, bucket, "a", b"a4")]
        more = await take(events, 2)
        assert summary(more) == [("d", live[0], b"d1", Op.PUT), ("a", live[1], b"a4", Op.PUT)]
        # CaughtUp comes once only: nothing else is pending.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(events), 0.5)


async def test_watch_after_a_revision_resumes_there(storage: Storage, bucket: str) -> None:
    revisions = [await put(storage, bucket, key, key.encode()) for key in ("a", "b", "c")]

    async with contextlib.aclosing(storage.watch(bucket, after=revisions[0])) as events:
        assert summary(await take(events, 3)) == [
            ("b", revisions[1], b"b", Op.PUT),
            ("c", revisions[2], b"c", Op.PUT),
            ("caught-up", revisions[2]),
        ]

    async with contextlib.aclosing(storage.watch(bucket, after=revisions[2])) as events:
        assert await next_event(events) == CaughtUp(revisions[2])
        d = await put(storage, bucket, "d", b"d")
        assert summary([await next_event(events)]) == [("d", d, b"d", Op.PUT)]


async def test_two_watches_see_the_same_entries(storage: Storage, bucket: str) -> None:
    async with (
        contextlib.aclosing(storage.watch(bucket)) as first,
        contextlib.aclosing(storage.watch(bucket)) as second,
    ):
        assert await next_event(first) == CaughtUp(0)
        assert await next_event(second) == CaughtUp(0)
        revision = await put(storage, bucket, "k", b"v")
        expected = [("k", revision, b"v", Op.PUT)]
        assert summary([await next_event(first)]) == summary([await next_event(second)]) == expected


async def test_large_replay_arrives_whole_and_in_order_through_a_slow_reader(
    storage: Storage, bucket: str
) -> None:
    count = 3000
    results = await storage.write(bucket, [Write(f"k{i}", b"x" * 200, 0) for i in range(count)])
    assert all(isinstance(result, int) for result in results)

    revisions: list[int] = []
    async with contextlib.aclosing(storage.watch(bucket)) as events:
        while True:
            event = await next_event(events)
            if isinstance(event, CaughtUp):
                assert event.revision == results[-1]
                break
            revisions.append(event.revision)
            if len(revisions) % 500 == 0:
                await asyncio.sleep(0.2)  # let the queue fill: the server must wait, not drop
    assert revisions == results


async def test_watch_batches_hold_the_events_of_watch_in_order_many_at_a_time(
    storage: Storage, bucket: str
) -> None:
    count = 2000
    results = await storage.write(bucket, [Write(f"k{i}", b"x" * 100, 0) for i in range(count)])
    assert all(isinstance(result, int) for result in results)

    batches: list[list[WatchEvent]] = []
    async with contextlib.aclosing(storage.watch_batches(bucket)) as stream:
        while not batches or not isinstance(batches[-1][-1], CaughtUp):
            batches.append(await asyncio.wait_for(anext(stream), STEP))
        live = await put(storage, bucket, "k0", b"again")
        batches.append(await asyncio.wait_for(anext(stream), STEP))
    events = [event for batch in batches for event in batch]
    assert all(batches)  # never an empty batch
    assert summary(events) == [
        *((f"k{i}", revision, b"x" * 100, Op.PUT) for i, revision in enumerate(results)),
        ("caught-up", results[-1]),
        ("k0", live, b"again", Op.PUT),
    ]
    # The point of batches: a replay is handed over in a few steps, not one per entry.
    assert len(batches) < count / 10
    async with contextlib.aclosing(storage.watch(bucket)) as one_by_one:
        assert summary(await take(one_by_one, count)) == summary([*events[1:count], events[count + 1]])


async def test_close_ends_every_watch(storage: Storage, bucket: str) -> None:
    events = storage.watch(bucket)
    assert await next_event(events) == CaughtUp(0)
    reader = asyncio.create_task(read_one(events))
    await asyncio.sleep(0.1)

    await storage.close()

    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reader, STEP)


async def test_memory_share_syncs_two_nodes_with_separate_close() -> None:
    first = MemoryStorage()
    second = first.share()
    await first.open_bucket("b")
    async with contextlib.aclosing(second.watch("b")) as events:
        assert await next_event(events) == CaughtUp(0)
        revision = await put(first, "b", "k", b"v")
        assert summary([await next_event(events)]) == [("k", revision, b"v", Op.PUT)]
        await first.close()
        assert (await second.get("b", "k")) is not None
        revision = await put(second, "b", "k", b"w")
        assert summary([await next_event(events)]) == [("k", revision, b"w", Op.PUT)]
    await second.close()


# -- NATS only -----------------------------------------------------------------------------------------


def test_ack_reply_subjects_of_both_forms_are_parsed() -> None:
    old = "$JS.ACK.KV_b.consumer.1.42.7.1700000000000000000.3"
    new = "$JS.ACK.hub.ACCHASH.KV_b.consumer.1.42.7.1700000000000000000.3.rnd"

    expected = (42, 7, 1700000000000000000)  # stream sequence, consumer sequence, time in ns
    assert parse_ack_reply(old) == expected
    assert parse_ack_reply(new) == expected
    assert parse_ack_reply("_INBOX.abc") is None
    assert parse_ack_reply("$JS.ACK.a.b.c.d.e.f.g.h.i.j") is None
    assert parse_ack_reply("$JS.NAK.KV_b.consumer.1.42.7.1700000000000000000.3") is None
    assert parse_ack_reply("$JS.ACK.KV_b.consumer.1.x.7.1700000000000000000.3") is None


@pytest.fixture
async def admin(nats_server: EmbeddedServer) -> AsyncIterator[nats.aio.client.Client]:
    async with nats_connection(nats_server.url) as nc:
        yield nc


@pytest.mark.nats
async def test_created_bucket_is_a_normal_kv_bucket_for_nats_py(
    nats_server: EmbeddedServer, admin: nats.aio.client.Client, namespace: str
) -> None:
    bucket = f"{namespace}-call"
    async with kv_storage(nats_server.url) as storage:
        await storage.open_bucket(bucket)
        revision = await put(storage, bucket, "k1", b"hello")

        js = admin.jetstream()
        kv = await js.key_value(bucket)
        entry = await kv.get("k1")
        assert (entry.value, entry.revision) == (b"hello", revision)
        await kv.put("k2", b"from nats-py")
        ours = await storage.get(bucket, "k2")
        assert ours is not None
        assert ours.value == b"from nats-py"

        config = (await js.stream_info(f"KV_{bucket}")).config
        assert config.allow_direct is True
        assert not config.allow_msg_ttl
        assert config.max_msgs_per_subject == 1
        assert config.deny_delete is True
        assert config.allow_rollup_hdrs is True


@pytest.mark.nats
async def test_existing_bucket_is_bound_not_reconfigured(
    nats_server: EmbeddedServer, admin: nats.aio.client.Client, namespace: str
) -> None:
    bucket = f"{namespace}-call"
    await admin.jetstream().create_key_value(bucket=bucket, history=5)
    async with kv_storage(nats_server.url, history=1) as storage:
        assert await storage.open_bucket(bucket)
        config = (await admin.jetstream().stream_info(f"KV_{bucket}")).config
        assert config.max_msgs_per_subject == 5
        # nats-py left direct get off: reads must still work through the stream leader.
        await put(storage, bucket, "k", b"v")
        entry = await storage.get(bucket, "k")
        assert entry is not None
        assert entry.value == b"v"


@pytest.mark.nats
async def test_two_nodes_creating_the_same_bucket_both_succeed(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    bucket = f"{namespace}-race"
    async with kv_storage(nats_server.url) as first, kv_storage(nats_server.url, history=4) as second:
        assert all(await asyncio.gather(first.open_bucket(bucket), second.open_bucket(bucket)))


async def wait_for_consumers(js: nats.js.JetStreamContext, stream: str, count: int) -> None:
    deadline = time.monotonic() + STEP
    while (await js.stream_info(stream)).state.consumer_count != count:
        assert time.monotonic() < deadline, f"{stream} never had {count} consumers"
        await asyncio.sleep(0.05)


@pytest.mark.nats
async def test_cancelling_the_reader_deletes_the_consumer(
    nats_server: EmbeddedServer, admin: nats.aio.client.Client, namespace: str
) -> None:
    bucket = f"{namespace}-call"
    async with kv_storage(nats_server.url) as storage:
        await storage.open_bucket(bucket)
        events = storage.watch(bucket)
        assert await next_event(events) == CaughtUp(0)
        js = admin.jetstream()
        # CaughtUp(0) of an empty bucket may come before the consumer exists.
        await wait_for_consumers(js, f"KV_{bucket}", 1)

        reader = asyncio.create_task(read_one(events))
        await asyncio.sleep(0.1)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader

        assert (await js.stream_info(f"KV_{bucket}")).state.consumer_count == 0


async def collect_until(events: AsyncIterator[WatchEvent], key: str, seen: list[Entry]) -> Entry:
    while True:
        event = await next_event(events)
        if isinstance(event, Entry):
            seen.append(event)
            if event.key == key:
                return event


@pytest.mark.nats
async def test_watch_survives_a_server_restart(own_server: EmbeddedServer, namespace: str) -> None:
    bucket = f"{namespace}-call"
    seen: list[Entry] = []
    async with kv_storage(own_server.url) as storage:
        await storage.open_bucket(bucket)
        await put(storage, bucket, "before", b"1")
        async with contextlib.aclosing(storage.watch(bucket)) as events:
            await collect_until(events, "before", seen)
            assert isinstance(await next_event(events), CaughtUp)

            own_server.kill()
            await asyncio.sleep(0.5)
            own_server.start()
            async with kv_storage(own_server.url) as writer:
                await writer.open_bucket(bucket)
                revision = await put(writer, bucket, "after", b"2")

            entry = await collect_until(events, "after", seen)
            assert entry.revision == revision
        revisions = [entry.revision for entry in seen]
        assert revisions == sorted(set(revisions))
        assert storage.stats["restarts"] >= 1


@pytest.mark.nats
async def test_writes_fail_fast_while_the_server_is_down_and_work_again_after(
    own_server: EmbeddedServer, namespace: str
) -> None:
    bucket = f"{namespace}-call"
    async with kv_storage(own_server.url, timeout=2.0) as storage:
        await storage.open_bucket(bucket)
        await put(storage, bucket, "k0", b"0")
        own_server.kill()

        started = time.monotonic()
        results = await storage.write(bucket, [Write(f"k{i}", b"v", None) for i in range(10)])
        assert time.monotonic() - started < 3.0
        assert all(isinstance(result, UnavailableError) for result in results)
        assert storage.stats["write_errors"] >= 10

        own_server.start()
        deadline = time.monotonic() + 15
        while True:
            results = await storage.write(bucket, [Write("k1", b"v", None)])
            if isinstance(results[0], int):
                break
            assert isinstance(results[0], UnavailableError)
            assert time.monotonic() < deadline, "writes did not recover"
            await asyncio.sleep(0.2)


async def write_until_accepted(storage: NatsKVStorage, bucket: str, key: str, deadline: float) -> int:
    while True:
        result = await write_one(storage, bucket, Write(key, key.encode(), None))
        if isinstance(result, int):
            return result
        assert isinstance(result, UnavailableError), result
        assert time.monotonic() < deadline, f"no write accepted: {result!r}"
        await asyncio.sleep(0.2)


@pytest.mark.nats
@pytest.mark.slow
async def test_replicated_bucket_keeps_working_when_its_leader_dies(
    nats_cluster: EmbeddedCluster, namespace: str
) -> None:
    bucket = f"{namespace}-call"
    seen: list[Entry] = []
    async with (
        kv_storage(nats_cluster.urls, replicas=3, timeout=2.0) as storage,
        nats_connection(nats_cluster.urls) as admin,
    ):
        deadline = time.monotonic() + 30
        while not await _open_when_cluster_ready(storage, bucket):
            assert time.monotonic() < deadline, "cluster never accepted the bucket"
        await write_until_accepted(storage, bucket, "first", time.monotonic() + 15)

        async with contextlib.aclosing(storage.watch(bucket)) as events:
            await collect_until(events, "first", seen)
            info = await admin.jetstream().stream_info(f"KV_{bucket}")
            assert info.cluster is not None
            assert info.cluster.leader is not None
            leader = nats_cluster.servers[int(info.cluster.leader.removeprefix("n")) - 1]
            leader.kill()

            for key in ("second", "third"):
                revision = await write_until_accepted(storage, bucket, key, time.monotonic() + 20)
                entry = await collect_until(events, key, seen)
                assert entry.revision == revision
        revisions = [entry.revision for entry in seen]
        assert revisions == sorted(set(revisions))


async def _open_when_cluster_ready(storage: NatsKVStorage, bucket: str) -> bool:
    try:
        return await storage.open_bucket(bucket)
    except StorageError:
        await asyncio.sleep(0.5)
        return False


async def delete_consumers(js: nats.js.JetStreamContext, stream: str) -> int:
    consumers = await js.consumers_info(stream)
    for consumer in consumers:
        await js.delete_consumer(stream, consumer.name)
    return len(consumers)


@pytest.mark.nats
@pytest.mark.slow
async def test_watch_resumes_after_its_consumer_is_deleted_in_mid_replay(
    nats_server: EmbeddedServer, admin: nats.aio.client.Client, namespace: str
) -> None:
    bucket = f"{namespace}-call"
    async with kv_storage(nats_server.url) as storage:
        await storage.open_bucket(bucket)
        # More than the server's flow-control window lets out at once, so the replay is cut for real.
        count = 20_000
        written = await storage.write(bucket, [Write(f"k{i}", b"v" * 1000, None) for i in range(count)])
        last = written[-1]
        assert isinstance(last, int)
        events = storage.watch(bucket)
        seen: list[WatchEvent] = [await next_event(events) for _ in range(100)]

        assert await delete_consumers(admin.jetstream(), f"KV_{bucket}") == 1
        late = await put(storage, bucket, "k5", b"changed")  # k5 was replayed already
        while not isinstance(seen[-1], CaughtUp):
            seen.append(await next_event(events))
        restarts_during_replay = storage.stats["restarts"]
        while late not in [event.revision for event in seen if isinstance(event, Entry)]:
            seen.append(await next_event(events))
        await events.aclose()

        assert restarts_during_replay >= 1
        entries = [event for event in seen if isinstance(event, Entry)]
        assert [entry.revision for entry in entries] == sorted({entry.revision for entry in entries})
        assert {entry.key for entry in entries} == {f"k{i}" for i in range(count)}
        assert [event for event in seen if isinstance(event, CaughtUp)] == [CaughtUp(last)]


@pytest.mark.nats
async def test_watch_catches_up_when_the_last_message_was_purged_by_an_operator(
    nats_server: EmbeddedServer, admin: nats.aio.client.Client, namespace: str
) -> None:
    bucket = f"{namespace}-call"
    async with kv_storage(nats_server.url) as storage:
        await storage.open_bucket(bucket)
        first = await put(storage, bucket, "a", b"1")
        last = await put(storage, bucket, "b", b"2")
        await admin.jetstream().purge_stream(f"KV_{bucket}", subject=f"$KV.{bucket}.b")

        async with contextlib.aclosing(storage.watch(bucket)) as events:
            assert summary(await take(events, 2)) == [("a", first, b"1", Op.PUT), ("caught-up", last)]


@pytest.mark.nats
async def test_watch_on_a_connection_closed_by_its_owner_raises_storage_error(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    nc = await nats.connect(nats_server.url)
    storage = NatsKVStorage(nc)
    bucket = f"{namespace}-call"
    await storage.open_bucket(bucket)
    async with contextlib.aclosing(storage.watch(bucket)) as events:
        assert await next_event(events) == CaughtUp(0)
        await nc.close()
        with pytest.raises(StorageError):
            await next_event(events)
    with pytest.raises(StorageError):
        await storage.get(bucket, "k")
    await storage.close()


# -- per-message TTL (expiring buckets) ------------------------------------------------------------


async def test_a_value_written_with_a_ttl_is_gone_after_it(storage: Storage, namespace: str) -> None:
    bucket = f"{namespace}-leases"
    assert await storage.open_bucket(bucket, expiring=True)
    first = await write_one(storage, bucket, Write("k", b"v", 0, ttl=1.0))
    assert isinstance(first, int)
    kept = await write_one(storage, bucket, Write("kept", b"v", 0))
    assert isinstance(kept, int)
    assert await storage.get(bucket, "k") is not None
    deadline = time.monotonic() + STEP
    while await storage.get(bucket, "k") is not None:
        assert time.monotonic() < deadline, "the value outlived its ttl"
        await asyncio.sleep(0.05)
    # Gone as if never written: a create expecting no entry succeeds; a write on the old revision fails.
    assert isinstance(await write_one(storage, bucket, Write("k", b"late", first, ttl=1.0)), ConflictError)
    assert isinstance(await write_one(storage, bucket, Write("k", b"again", 0, ttl=5.0)), int)
    entry = await storage.get(bucket, "kept")
    assert entry is not None and entry.value == b"v"  # a value written without a ttl stays


async def test_a_bucket_without_ttl_refuses_ttls(storage: Storage, bucket: str) -> None:
    result = await write_one(storage, bucket, Write("k", b"v", 0, ttl=1.0))
    assert isinstance(result, StorageError)
    with pytest.raises(StorageError):
        await storage.open_bucket(bucket, expiring=True)


@pytest.mark.nats
async def test_a_large_batch_waits_for_its_acknowledgements_while_they_keep_coming(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    # The server acknowledges writes at its own pace, long after the last one was sent. ``timeout`` is how
    # long the storage waits with no acknowledgement arriving, not for all of them: a batch far larger than
    # the server answers within the timeout is written whole.
    bucket = f"{namespace}-call"
    writes = [Write(f"k{n}", b'{"v":1}', 0) for n in range(120_000)]
    async with kv_storage(nats_server.url, timeout=0.5) as storage:
        await storage.open_bucket(bucket)
        results = await storage.write(bucket, writes)
    failed = [result for result in results if isinstance(result, Exception)]
    assert failed == []
    # Sent in windows (``publish.WINDOW``), one after the other: each write's revision in its place.
    assert results == list(range(1, len(writes) + 1))
