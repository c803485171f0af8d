"""Node presence: heartbeats in ``{namespace}--nodes`` on a real nats-server, listed by ``db.nodes()``.

Heartbeats are made every 0.5 s here (a TTL of 1.5 s), so that a node killed without stopping is gone
within seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from brainlessdb import Brainless, NotStartedError, meta
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.shell import presence
from tests.helpers import eventually, nats_connection

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 0.5


@pytest.fixture(autouse=True)
def quick_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "INTERVAL", INTERVAL)


@pytest.fixture
async def started() -> AsyncIterator[list[Brainless]]:
    """Databases a test starts; each one still running at the end is stopped."""
    databases: list[Brainless] = []
    yield databases
    for db in databases:
        await db.stop()


async def listed(db: Brainless) -> dict[str, dict[str, Any]]:
    return {node["node"]: node for node in await db.nodes()}


async def wait_listed(db: Brainless, node: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = await listed(db)
        if node in nodes:
            return nodes[node]
        assert time.monotonic() < deadline, f"{node} not listed within {timeout}s"
        await asyncio.sleep(0.05)


@pytest.mark.nats
async def test_two_nodes_see_each_other_and_a_stopped_one_is_gone_at_once(
    nats_server: EmbeddedServer, namespace: str, started: list[Brainless]
) -> None:
    a = await Brainless(nats_server.url, namespace=namespace, location="prague-1").start()
    started.append(a)
    # A location with characters a key cannot hold: the node id is escaped in the key, not in the record.
    b = await Brainless(nats_server.url, namespace=namespace, location="brno 2/ü").start()
    started.append(b)

    from_b = await wait_listed(b, a.clock.replica)
    from_a = await wait_listed(a, b.clock.replica)
    assert set(await listed(a)) == set(await listed(b)) == {a.clock.replica, b.clock.replica}
    assert [node["location"] for node in await a.nodes()] == ["brno 2/ü", "prague-1"]  # by location
    assert from_b["location"] == "prague-1" and from_a["location"] == "brno 2/ü"
    for node in (from_a, from_b):
        assert node["namespace"] == namespace
        assert node["version"] == metadata.version("brainlessdb")
        assert node["pid"] == os.getpid()
        assert node["interval"] == INTERVAL and node["ttl"] == 3 * INTERVAL
        assert node["started"] <= node["seen"] + 1.0  # the node's clock and the server's, on one machine
        assert node["domain"] is None and node["copy_lag"] == {}

    # What a heartbeat tells follows the node: b's entities and pending changes reach a's list.
    assert from_a["entities"] == 0
    calls = [b.call.add(n=i) for i in range(3)]
    await b.flush()
    await eventually(lambda: not any(meta(call).dirty for call in calls))
    deadline = time.monotonic() + 5
    while (await listed(a))[b.clock.replica]["entities"] != 3:
        assert time.monotonic() < deadline, "b's heartbeat never told its entities"
        await asyncio.sleep(0.05)
    node = (await listed(a))[b.clock.replica]
    assert (node["collections"], node["pending"], node["watch_restarts"]) == (1, 0, 0)
    assert b.stats()["presence"]["heartbeats"] >= 2
    assert b.stats()["presence"]["failures"] == 0

    await b.stop()
    started.remove(b)
    assert set(await listed(a)) == {a.clock.replica}  # at once, not after the TTL


@pytest.mark.nats
async def test_a_killed_node_is_gone_after_its_ttl(
    nats_server: EmbeddedServer, namespace: str, started: list[Brainless]
) -> None:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.shell.workers.presence_node",
        nats_server.url,
        namespace,
        "doomed",
        str(INTERVAL),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), 20)
        doomed = json.loads(line)["node"]
        db = await Brainless(nats_server.url, namespace=namespace, location="survivor").start()
        started.append(db)
        node = await wait_listed(db, doomed)
        assert node["location"] == "doomed" and node["pid"] == worker.pid

        worker.kill()  # SIGKILL: no stop(), no deletion of its key
        await worker.wait()
        killed = time.monotonic()
        assert doomed in await listed(db)  # its last heartbeat lives on until the TTL
        while doomed in await listed(db):
            assert time.monotonic() - killed < 3 * INTERVAL + 3.0, "the dead node's heartbeat never expired"
            await asyncio.sleep(0.1)
        gone_after = time.monotonic() - killed
        assert gone_after <= 3 * INTERVAL + 2.0  # the server removed it after its TTL, give or take a second
        assert set(await listed(db)) == {db.clock.replica}
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


@pytest.mark.nats
async def test_heartbeats_fail_quietly_while_nats_is_away_and_come_back(
    own_server: EmbeddedServer, namespace: str, started: list[Brainless]
) -> None:
    db = await Brainless(own_server.url, namespace=namespace, location="prague-1", connect_timeout=1).start()
    started.append(db)
    await wait_listed(db, db.clock.replica)
    own_server.kill()
    await eventually(lambda: db.stats()["presence"]["failures"] >= 1, timeout=10)
    assert db.stats()["presence"]["last_error"]
    own_server.restart()
    await eventually(lambda: db.stats()["presence"]["last_error"] is None, timeout=20)
    assert db.clock.replica in await listed(db)


@pytest.mark.nats
async def test_the_heartbeat_bucket_expires_messages_and_holds_one_key_per_node(
    nats_server: EmbeddedServer, namespace: str, started: list[Brainless]
) -> None:
    db = await Brainless(nats_server.url, namespace=namespace, location="prague-1").start()
    started.append(db)
    await wait_listed(db, db.clock.replica)
    async with nats_connection(nats_server.url) as client:
        js = client.jetstream()
        info = await js.stream_info(f"KV_{namespace}--nodes", subjects_filter=">")
        assert info.config.allow_msg_ttl
        assert list(info.state.subjects or {}) == [
            f"$KV.{namespace}--nodes.{presence.node_key(db.clock.replica)}"
        ]
        message = await js.get_last_msg(f"KV_{namespace}--nodes", f"$KV.{namespace}--nodes.>")
        assert message.headers is not None and message.headers.get("Nats-TTL") == "1500ms"
        assert json.loads(message.data)["node"] == db.clock.replica


async def test_in_memory_a_database_lists_itself_and_writes_nothing() -> None:
    async with Brainless(None, namespace="alone", location="here") as db:
        db.call.add(n=1)
        [node] = await db.nodes()
        assert node["node"] == db.clock.replica and node["location"] == "here"
        assert node["entities"] == 1 and node["pending"] == 1
        assert db.stats()["presence"]["announcing"] is False
        storage: Any = db._storage
        assert await storage.list_buckets("alone-") == []  # no heartbeat bucket


async def test_nodes_needs_a_started_database() -> None:
    db = Brainless(None, namespace="alone", location="here")
    with pytest.raises(NotStartedError):
        await db.nodes()
    await db.start()
    await db.stop()
    with pytest.raises(NotStartedError):
        await db.nodes()
