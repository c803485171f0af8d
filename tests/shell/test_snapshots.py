"""Warm restarts (``snapshot_dir``): a node starts from its snapshot and replays only what changed since,
and every snapshot it cannot trust (corrupt, of another namespace, of a recreated bucket, older than the
delete markers kept, left by a node killed with -9) ends in exactly what a fresh node's full replay gives:
the same fields, stamps and extras, revisions and remembered deletes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from brainlessdb import Brainless, meta
from brainlessdb.core import snapshot_format
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.storage.base import Write
from brainlessdb.storage.memory import MemoryStorage
from brainlessdb.storage.nats.kv import NatsKVStorage
from tests.helpers import MakeDb, eventually, nats_connection, stored_state

ROOT = Path(__file__).resolve().parents[2]


def state(db: Brainless, name: str = "call") -> tuple[Any, ...]:
    """What a load put in memory: every entity's fields, its stored version (stamps, extras) and revision,
    and the deletes remembered."""
    return stored_state(db.collection(name))


async def fill(db: Brainless, count: int = 20) -> list[Any]:
    items = [db.call.add(state="idle", n=n, caller={"city": "Brno"}) for n in range(count)]
    items[0].caller["city"] = "Praha"
    db.call.increment(items[1], "n", 5)
    db.call.delete(items[2])
    await db.synced()
    return items


async def change_while_down(db: Brainless) -> None:
    """Another node updates, deletes and adds while the first is down."""
    items = sorted(await db.call.all(), key=lambda item: item.uuid)
    items[3].state = "talking"
    items[4].caller["zip"] = "60200"
    db.call.delete(items[5])
    db.call.add({**meta(items[6]).data, "state": "new"})
    await db.synced()


async def test_a_restart_replays_only_what_changed_since_the_snapshot(
    make_db: MakeDb, tmp_path: Path
) -> None:
    first = await make_db("node-1", snapshot_dir=tmp_path)
    await fill(first)
    await first.stop()  # writes the snapshot
    assert first.stats()["snapshots"]["written"] == 1
    other = await make_db("node-2")
    await change_while_down(other)
    await other.stop()

    again = await make_db("node-1", snapshot_dir=tmp_path)
    assert again.stats()["snapshots"] == {"restored": 1, "refused": 0, "written": 0, "failed": 0}
    fresh = await make_db("fresh-1")
    assert state(again) == state(fresh)
    assert len(again.call) == 19 and await again.call.exists(state="new")


async def test_changes_pending_at_the_snapshot_are_read_from_the_bucket(
    make_db: MakeDb, tmp_path: Path
) -> None:
    first = await make_db("node-1", snapshot_dir=tmp_path, flush_interval=60)
    items = await fill(first)
    items[6].state = "unsent"  # never acknowledged: not in the snapshot, the bucket's version stands
    first.call.delete(items[7])
    snapshots, watches = first._snapshots, first._watches
    assert snapshots is not None and watches is not None
    await snapshots.write_all(watches.followers())  # while the changes are pending
    again = await make_db("node-1b", snapshot_dir=tmp_path)
    assert again.stats()["snapshots"]["restored"] == 1
    assert meta(again.call[items[6].uuid]).data["state"] == "idle"
    assert items[7].uuid in again.call
    assert state(again) == state(await make_db("fresh-1"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:40] + bytes([data[40] ^ 0xFF]) + data[41:],
        lambda data: b"",
    ],
    ids=["truncated", "one byte changed", "empty"],
)
async def test_a_corrupt_snapshot_is_refused_and_the_bucket_replayed(
    make_db: MakeDb, tmp_path: Path, damage: Any, namespace: str
) -> None:
    first = await make_db("node-1", snapshot_dir=tmp_path)
    await fill(first)
    await first.stop()
    other = await make_db("node-2")
    await change_while_down(other)
    await other.stop()
    path = tmp_path / f"{namespace}-call.snapshot"
    path.write_bytes(damage(path.read_bytes()))

    again = await make_db("node-1", snapshot_dir=tmp_path)
    assert again.stats()["snapshots"]["refused"] == 1
    assert again.stats()["snapshots"]["restored"] == 0
    assert state(again) == state(await make_db("fresh-1"))


async def test_a_snapshot_of_another_namespace_is_refused(
    make_db: MakeDb, tmp_path: Path, namespace: str
) -> None:
    foreign = await make_db("node-1", namespace=f"{namespace}x", snapshot_dir=tmp_path)
    await fill(foreign, 5)
    await foreign.stop()
    own = await make_db("node-1")
    await fill(own, 3)
    await own.stop()
    shutil.copy(tmp_path / f"{namespace}x-call.snapshot", tmp_path / f"{namespace}-call.snapshot")

    again = await make_db("node-1", snapshot_dir=tmp_path)
    assert again.stats()["snapshots"] == {"restored": 0, "refused": 1, "written": 0, "failed": 0}
    assert state(again) == state(await make_db("fresh-1"))
    assert len(again.call) == 2


async def test_the_in_memory_mode_refuses_a_snapshot_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="in-memory"):
        Brainless(None, snapshot_dir=tmp_path)
    with pytest.raises(ValueError, match="snapshot_interval"):
        Brainless("nats://127.0.0.1:4222", snapshot_dir=tmp_path, snapshot_interval=0)


@pytest.mark.nats
async def test_a_snapshot_older_than_the_delete_retention_is_refused(
    make_db: MakeDb, tmp_path: Path, backend: str
) -> None:
    if backend != "nats":
        pytest.skip("delete markers are removed from NATS")
    first = await make_db("node-1", snapshot_dir=tmp_path, delete_retention=0.5)
    await fill(first)
    await first.stop()
    other = await make_db("node-2", delete_retention=0.5)
    await change_while_down(other)
    # Past the retention, the delete markers written since the snapshot are removed: a replay from the
    # snapshot's revision would miss those deletes.
    await asyncio.sleep(0.6)
    await other.expire_deletes()  # (unless its housekeeping removed them already)
    assert len(other.call.sync.tombstones) == 0
    await other.stop()

    again = await make_db("node-1", snapshot_dir=tmp_path, delete_retention=0.5)
    assert again.stats()["snapshots"]["refused"] == 1
    assert state(again) == state(await make_db("fresh-1", delete_retention=0.5))


@pytest.mark.nats
async def test_a_snapshot_of_a_recreated_bucket_is_refused(
    make_db: MakeDb, tmp_path: Path, backend: str, namespace: str, nats_server: EmbeddedServer
) -> None:
    if backend != "nats":
        pytest.skip("a NATS bucket recreated")
    first = await make_db("node-1", snapshot_dir=tmp_path)
    await fill(first, 30)
    await first.stop()
    async with nats_connection(nats_server.url) as client:
        await client.jetstream().delete_key_value(f"{namespace}-call")
    other = await make_db("node-2")
    await fill(other, 40)  # more revisions than before: only the bucket's origin tells it apart
    await other.stop()

    again = await make_db("node-1", snapshot_dir=tmp_path)
    assert again.stats()["snapshots"]["refused"] == 1
    assert state(again) == state(await make_db("fresh-1"))
    assert len(again.call) == 39


@pytest.mark.nats
async def test_a_node_killed_between_snapshots_restarts_from_its_last_one(
    make_db: MakeDb, tmp_path: Path, backend: str, namespace: str, nats_server: EmbeddedServer
) -> None:
    if backend != "nats":
        pytest.skip("a node in a process of its own")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.shell.workers.snapshot_writer",
        nats_server.url,
        namespace,
        str(tmp_path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert json.loads(line)["ready"] >= 3
    finally:
        process.kill()  # SIGKILL: no final flush, no final snapshot
        await process.wait()
    path = tmp_path / f"{namespace}-call.snapshot"
    left = snapshot_format.decode(path.read_bytes())  # whole: the previous file or the new one, never half
    (tmp_path / f"{path.name}.1.cut.tmp").write_bytes(b"a write cut off by a crash")
    other = await make_db("node-2")
    await change_while_down(other)
    await other.stop()

    again = await make_db("writer-1", snapshot_dir=tmp_path)
    assert again.stats()["snapshots"]["restored"] == 1
    assert os.listdir(tmp_path) == [path.name]  # leftovers removed
    assert left.revision > 0 and left.entities
    assert state(again) == state(await make_db("fresh-1"))


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    backend: Any
    if request.param == "memory":
        backend = MemoryStorage()
    else:
        backend = await NatsKVStorage.connect(request.getfixturevalue("nats_server").url)
    yield backend
    await backend.close()


async def test_a_storage_tells_which_revisions_a_bucket_retains(storage: Any, namespace: str) -> None:
    bucket = f"{namespace}-retained"
    await storage.open_bucket(bucket)
    empty = await storage.retained(bucket)
    assert empty.last == 0
    assert empty.first <= 1
    await storage.write(bucket, [Write("a", b"1", None), Write("b", b"2", None)])
    assert (await storage.retained(bucket)).first == 1
    await storage.write(bucket, [Write("a", b"3", None)])  # revision 1 is superseded: gone
    now = await storage.retained(bucket)
    assert (now.first, now.last, now.origin) == (2, 3, empty.origin)
    await storage.forget(bucket, "b")
    assert (await storage.retained(bucket)).first == 3


async def test_no_snapshot_is_taken_during_a_full_replay(make_db: MakeDb, tmp_path: Path) -> None:
    db = await make_db("node-1", snapshot_dir=tmp_path)
    await fill(db, 3)
    snapshots, watches = db._snapshots, db._watches
    assert snapshots is not None
    assert watches is not None
    ((collection, follower),) = watches.followers()
    follower.resyncing = True  # as from the start of a full replay to its end
    assert not await snapshots.write(collection, follower)
    follower.resyncing = False
    assert await snapshots.write(collection, follower)
    await db.resync()
    await eventually(lambda: not follower.resyncing, message="the full replay never ended")
    assert follower.resyncs == 1
