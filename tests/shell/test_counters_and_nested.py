"""Counters and changes inside dict fields, through running databases on both backends and processes.

Concurrent increments on several nodes add up; concurrent changes of different keys of a dict field, at
any depth, all survive; the same key follows the newer change; a list stays one value. On a real
nats-server: three nodes in processes of their own increment one counter and edit one dict at once, and
every node, and a node started afterwards, reads the sum and every node's last edit.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from brainlessdb import Brainless, Change, NotFoundError, NotStartedError, SchemaError, meta
from brainlessdb.embedded import EmbeddedServer
from tests.helpers import MakeDb, eventually, memory_of, raw_bucket, settle

ROOT = Path(__file__).resolve().parents[2]


async def both(make_db: MakeDb) -> tuple[Brainless, Brainless]:
    return await make_db("prague-1"), await make_db("brno-1")


async def shared_call(a: Brainless, b: Brainless, **fields: Any) -> str:
    """An entity added on ``a`` and held by ``b`` too."""
    uuid = a.call.add(**fields).uuid
    await a.flush()
    await b.call.load()
    await eventually(lambda: uuid in b.call)
    return uuid


# -- counters --------------------------------------------------------------------------------------


async def test_concurrent_increments_on_two_nodes_add_up(make_db: MakeDb) -> None:
    a, b = await both(make_db)
    uuid = await shared_call(a, b, channel_id="c1", attempts=0)
    assert a.call.increment(uuid, "attempts") == 1
    assert b.call.increment(uuid, "attempts", 5) == 5  # neither node has seen the other's yet
    assert a.call.increment(a.call[uuid], "attempts", -3) == -2
    await settle([a, b])
    assert a.call[uuid].attempts == b.call[uuid].attempts == 3


async def test_setting_a_counter_starts_it_again_from_that_value(make_db: MakeDb) -> None:
    a, b = await both(make_db)
    uuid = await shared_call(a, b, channel_id="c1", attempts=0)
    a.call.increment(uuid, "attempts", 4)
    b.call.increment(uuid, "attempts", 2)
    await settle([a, b])
    assert b.call[uuid].attempts == 6
    b.call[uuid].attempts = 0
    await settle([a, b])
    a.call.increment(uuid, "attempts")
    await settle([a, b])
    assert a.call[uuid].attempts == b.call[uuid].attempts == 1


async def test_an_increment_is_a_local_change_seen_by_listeners_and_stored_as_a_plain_number(
    make_db: MakeDb, backend: str, namespace: str, request: pytest.FixtureRequest
) -> None:
    db = await make_db()
    item = db.call.add(channel_id="c1", attempts=7)
    changes: list[Change] = []
    db.call.on_change(changes.append, local=True, remote=False)
    db.call.increment(item, "attempts", 2)
    assert item.attempts == 9
    assert [change.changes for change in changes] == [{"attempts": (7, 9)}]
    assert await db.call.filter(attempts=9) == [item]
    await db.flush()
    if backend == "nats":
        live, _ = await raw_bucket(request.getfixturevalue("nats_server").url, f"{namespace}-call")
        assert live[item.uuid]["attempts"] == 9


async def test_bad_increments_are_refused_and_change_nothing(make_db: MakeDb) -> None:
    db = await make_db()
    item = db.call.add(channel_id="c1", attempts=1, note=None, flag=True)
    with pytest.raises(TypeError):
        db.call.increment(item, "attempts", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.call.increment(item, "attempts", True)  # type: ignore[arg-type]
    for name in ("channel_id", "note", "flag", "nope"):
        with pytest.raises(SchemaError):
            db.call.increment(item, name)
    with pytest.raises(SchemaError):
        db.call.increment(item, "attempts", 2**53)
    with pytest.raises(NotFoundError):
        db.call.increment("no-such-uuid", "attempts")
    assert meta(item).data == {"channel_id": "c1", "attempts": 1, "note": None, "flag": True}
    await db.stop()
    with pytest.raises(NotStartedError):
        db.call.increment(item, "attempts")


async def test_a_float_field_counts_in_integers(make_db: MakeDb) -> None:
    db = await make_db()
    item = db.call.add(channel_id="c1", seconds=0.5)
    with pytest.raises(SchemaError):
        db.call.increment(item, "seconds")  # 0.5 is not an integer
    item.seconds = 0
    assert db.call.increment(item, "seconds", 3) == 3


# -- changes inside dict fields ----------------------------------------------------------------------


async def test_concurrent_changes_of_different_keys_at_any_depth_all_survive(make_db: MakeDb) -> None:
    # Written only when asked: neither node sees the other's changes before making its own.
    a, b = await make_db("prague-1", flush_interval=60), await make_db("brno-1", flush_interval=60)
    uuid = await shared_call(
        a, b, channel_id="c1", caller={"number": "+420", "city": "Praha", "addr": {"zip": "1", "geo": {}}}
    )
    a.call[uuid].caller["city"] = "Brno"
    b.call[uuid].caller["number"] = "+421"
    a.call[uuid].caller["addr"]["geo"]["lat"] = 49.2
    b.call[uuid].caller["addr"]["zip"] = "602 00"
    del b.call[uuid].caller["addr"]["geo"]  # b removes geo; a's newer change inside it makes a geo
    await asyncio.sleep(0.005)
    a.call[uuid].caller["addr"]["geo"]["lon"] = 16.6
    await a.flush()
    await b.flush()
    await settle([a, b])
    assert a.call[uuid].caller == {
        "number": "+421",
        "city": "Brno",
        "addr": {"zip": "602 00", "geo": {"lon": 16.6}},
    }


async def test_the_same_key_follows_the_newer_change_and_a_write_of_the_field_clears_older_keys(
    make_db: MakeDb,
) -> None:
    a, b = await both(make_db)
    uuid = await shared_call(a, b, channel_id="c1", caller={"city": "Praha", "note": "x"})
    a.call[uuid].caller["city"] = "Brno"
    await asyncio.sleep(0.005)  # a later millisecond: a newer stamp on any node
    b.call[uuid].caller["city"] = "Ostrava"
    await settle([a, b])
    assert a.call[uuid].caller == {"city": "Ostrava", "note": "x"}
    b.call[uuid].caller["note"] = "older than a's write of the whole field"
    await asyncio.sleep(0.005)
    a.call[uuid].caller = {"city": "Plzeň"}
    await settle([a, b])
    assert b.call[uuid].caller == {"city": "Plzeň"}


async def test_a_list_is_one_value(make_db: MakeDb) -> None:
    # Written only when asked: each node appends to the list as it was before the other's append.
    a, b = await make_db("prague-1", flush_interval=60), await make_db("brno-1", flush_interval=60)
    uuid = await shared_call(a, b, channel_id="c1", caller={"tags": ["vip"]})
    a.call[uuid].caller["tags"].append("a")
    await asyncio.sleep(0.005)
    b.call[uuid].caller["tags"].append("b")  # the newer write of the whole list wins
    await a.flush()
    await b.flush()
    await settle([a, b])
    assert a.call[uuid].caller == {"tags": ["vip", "b"]}


async def test_a_node_started_afterwards_reads_the_merge(make_db: MakeDb) -> None:
    a, b = await both(make_db)
    uuid = await shared_call(a, b, channel_id="c1", caller={"city": "Praha"}, attempts=0)
    a.call[uuid].caller["city"] = "Brno"
    b.call[uuid].caller["zip"] = "602 00"
    a.call.increment(uuid, "attempts")
    b.call.increment(uuid, "attempts")
    await settle([a, b])
    fresh = await make_db("fresh-1")
    await fresh.call.load()
    assert memory_of(fresh) == memory_of(a)
    assert fresh.call[uuid].caller == {"city": "Brno", "zip": "602 00"}
    assert fresh.call[uuid].attempts == 2


# -- three processes --------------------------------------------------------------------------------

TIMES = 100
NODES = 3


@pytest.mark.nats
async def test_three_processes_incrementing_and_editing_at_once_all_read_every_change(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    url = nats_server.url
    async with Brainless(url, namespace=namespace, location="test-1", flush_interval=0.01) as db:
        item = db.call.add(channel_id="c1", attempts=0, caller={"go": False, "notes": {}})
        await db.flush()
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.shell.workers.counter_worker",
                url,
                namespace,
                str(agent),
                item.uuid,
                str(TIMES),
                str(NODES),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            for agent in range(NODES)
        ]
        try:
            for process in processes:
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), 30)
                assert "ready" in json.loads(line)
            item.caller["go"] = True
            await db.flush()
            reads = []
            for process in processes:
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), 90)
                reads.append(json.loads(line)["read"])
                assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        expected = {
            "channel_id": "c1",
            "attempts": TIMES * NODES,
            "caller": {"go": True, "notes": {str(agent): TIMES - 1 for agent in range(NODES)}},
        }
        assert reads == [expected] * NODES
        await eventually(lambda: meta(item).data == expected)
    async with Brainless(url, namespace=namespace, location="fresh-1") as fresh:
        assert meta(fresh.call[item.uuid]).data == expected
    live, _ = await raw_bucket(url, f"{namespace}-call")
    assert live[item.uuid] == expected  # what another client reads: plain values
