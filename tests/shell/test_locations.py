"""Locations: each on its own NATS server (a JetStream domain), joined by a leaf node through a proxy
that the test cuts and heals.

Each location's nodes keep reading and writing through the cut and see each other's changes; a node
started during the cut loads its location; concurrent changes on both sides (different fields, the same
field, keys of a dict, counters, a delete against an update) converge after the heal on every node and on
fresh ones; nothing is written in answer to received data, so the streams' message counts settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ExternalStream, StreamSource

from brainlessdb import Brainless, ConfigurationError, InvalidNameError, meta
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.embedded_locations import CutMode, EmbeddedLocations, Link
from brainlessdb.storage.nats.kv import NatsKVStorage
from tests.helpers import eventually, memory_of, nats_connection

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parents[2]
HEAL = 90.0  # seconds a catch-up after a heal may take (the server retries a source within ~50 s)


@dataclass
class Locations:
    prague: EmbeddedServer  # the hub
    brno: EmbeddedServer  # a leaf of it, through ``link``
    link: Link


@pytest.fixture
async def locations(tmp_path: Path) -> AsyncIterator[Locations]:
    async with EmbeddedLocations(["prague", "brno"], base_dir=tmp_path) as places:
        yield Locations(places.servers["prague"], places.servers["brno"], places.links["brno"])


@contextlib.asynccontextmanager
async def nodes() -> AsyncIterator[Callable[..., Awaitable[Brainless]]]:
    """Start nodes of either location; every one is stopped at the end."""
    started: list[Brainless] = []

    async def start(
        server: EmbeddedServer, domain: str, peer: str, name: str, namespace: str, **options: Any
    ) -> Brainless:
        options.setdefault("flush_interval", 0.02)
        db = Brainless(server.url, namespace=namespace, location=name, domain=domain, peers=[peer], **options)
        started.append(await db.start())
        return db

    try:
        yield start
    finally:
        for db in started:
            with contextlib.suppress(Exception):
                await db.stop(timeout=5)


def agree(dbs: list[Brainless]) -> bool:
    if any(c.sync.has_pending() for db in dbs for c in db.collections.values()):
        return False
    first = memory_of(dbs[0])
    return all(memory_of(db) == first for db in dbs[1:])


async def message_counts(server: EmbeddedServer, stream: str) -> int:
    async with nats_connection(server.url) as client:
        info = await client.jetstream().stream_info(stream)
        return int(info.state.last_seq)


@pytest.mark.parametrize("cut", ["reset", "blackhole"])
async def test_two_locations_work_through_a_cut_and_converge_after_the_heal(
    locations: Locations, namespace: str, cut: CutMode
) -> None:
    async with nodes() as start:
        prague = await start(locations.prague, "prague", "brno", "prague-1", namespace)
        brno = await start(locations.brno, "brno", "prague", "brno-1", namespace)
        base: dict[str, Any] = {"state": "ringing", "agent": None, "caller": {"city": "Praha"}, "attempts": 0}
        c1, c2, c3 = (prague.call.add(channel_id=f"c{i}", **base).uuid for i in (1, 2, 3))
        await prague.flush()
        await eventually(lambda: {c1, c2, c3} <= set(brno.call.entities), timeout=HEAL)

        locations.link.cut(cut)
        prague.call[c1].state = "answered"  # different fields of one entity
        brno.call[c1].agent = 7
        prague.call[c1].caller["zip"] = "110 00"  # different keys of one dict
        brno.call[c1].caller["vip"] = True
        prague.call.increment(c1, "attempts")  # increments on both sides
        brno.call.increment(c1, "attempts", 2)
        prague.call[c2].state = "prague's"  # the same field: the later change wins
        await asyncio.sleep(0.01)
        brno.call[c2].state = "brno's"
        brno.call.delete(c3)  # a delete on one side, an update on the other
        prague.call[c3].state = "updated"
        c4 = brno.call.add(channel_id="c4", **base).uuid  # a new entity on one side
        await prague.flush()
        await brno.flush()

        # During the cut each location works on its own: a node started now loads its location's state.
        brno_2 = await start(locations.brno, "brno", "prague", "brno-2", namespace)
        assert brno_2.call[c1].agent == 7 and brno_2.call[c1].state == "ringing"
        assert c4 in brno_2.call and c3 not in brno_2.call
        brno.call[c4].state = "seen by brno-2"
        await brno.flush()
        await eventually(lambda: brno_2.call[c4].state == "seen by brno-2", timeout=5)
        prague_2 = await start(locations.prague, "prague", "brno", "prague-2", namespace)
        assert prague_2.call[c3].state == "updated" and c4 not in prague_2.call

        locations.link.heal()
        everyone = [prague, prague_2, brno, brno_2]
        await eventually(lambda: agree(everyone) and c4 in prague.call, timeout=HEAL, interval=0.1)
        call = meta(prague.call[c1]).data
        assert call["state"] == "answered" and call["agent"] == 7
        assert call["caller"] == {"city": "Praha", "zip": "110 00", "vip": True}
        assert call["attempts"] == 3
        assert prague.call[c2].state == "brno's"
        assert c3 not in prague.call  # deletes win
        fresh = [
            await start(locations.prague, "prague", "brno", "prague-3", namespace),
            await start(locations.brno, "brno", "prague", "brno-3", namespace),
        ]
        assert all(memory_of(db) == memory_of(prague) for db in fresh)

    # Nothing is written in answer to what arrives: once converged, the streams stop growing.
    stream = f"KV_{namespace}-call"
    before = [await message_counts(server, stream) for server in (locations.prague, locations.brno)]
    await asyncio.sleep(2)
    after = [await message_counts(server, stream) for server in (locations.prague, locations.brno)]
    assert before == after


async def held_in_both(
    start: Callable[..., Awaitable[Brainless]], locations: Locations, namespace: str, **options: Any
) -> tuple[Brainless, Brainless, str]:
    """A node of each location, and an entity added in Prague that Brno changed (a version of its own)."""
    prague = await start(locations.prague, "prague", "brno", "prague-1", namespace, **options)
    brno = await start(locations.brno, "brno", "prague", "brno-1", namespace, **options)
    uuid = prague.call.add(channel_id="c1", state="new").uuid
    await prague.flush()
    await eventually(lambda: uuid in brno.call, timeout=HEAL)
    brno.call[uuid].state = "brno's"
    await brno.flush()
    await eventually(lambda: prague.call[uuid].state == "brno's", timeout=HEAL)
    return prague, brno, uuid


async def test_a_delete_outlives_the_markers_removed_after_their_retention_in_every_location(
    locations: Locations, namespace: str
) -> None:
    """Brno stored a version of its own of the entity Prague deletes: Brno writes the delete over it, so
    once both locations removed their markers, a node loading either location does not bring it back."""
    retention = {"delete_retention": 1.0}
    async with nodes() as start:
        prague, brno, uuid = await held_in_both(start, locations, namespace, **retention)
        prague.call.delete(uuid)
        await prague.flush()
        await eventually(lambda: uuid not in brno.call and not brno.call.sync.has_pending(), timeout=HEAL)
        await asyncio.sleep(3)  # both housekeepers remove their location's marker (retention 1 s)
        for server, domain, peer in (
            (locations.prague, "prague", "brno"),
            (locations.brno, "brno", "prague"),
        ):
            fresh = await start(server, domain, peer, f"{domain}-fresh", namespace, **retention)
            assert uuid not in fresh.call


async def test_a_delete_is_kept_while_a_location_that_holds_the_entity_is_cut_off_past_the_retention(
    locations: Locations, namespace: str
) -> None:
    """Prague deletes an entity while Brno, which holds a version of its own, is cut off for longer than
    the delete retention: Prague keeps its marker, so neither a node loading Prague during the cut nor
    anyone after the heal brings the entity back; once Brno took the delete in, the markers go."""
    retention = {"delete_retention": 0.5}
    async with nodes() as start:
        prague, brno, uuid = await held_in_both(start, locations, namespace, **retention)

        locations.link.cut("reset")
        prague.call.delete(uuid)
        await prague.flush()
        await asyncio.sleep(2)  # four retentions: without a reason to keep it, the marker would be gone
        during = await start(locations.prague, "prague", "brno", "prague-2", namespace, **retention)
        assert uuid not in during.call
        assert uuid in brno.call  # Brno has not heard of the delete

        locations.link.heal()
        everyone = [prague, during, brno]
        await eventually(lambda: all(uuid not in db.call for db in everyone), timeout=HEAL, interval=0.05)
        removed = lambda: prague._housekeeper is not None and prague._housekeeper.removed > 0  # noqa: E731
        await eventually(removed, timeout=HEAL, interval=0.1)  # every location has it: the marker goes
        for server, domain, peer in (
            (locations.prague, "prague", "brno"),
            (locations.brno, "brno", "prague"),
        ):
            fresh = await start(server, domain, peer, f"{domain}-fresh", namespace, **retention)
            assert uuid not in fresh.call


@dataclass
class Grown:
    channel_id: str
    state: str
    queue: int = 0


async def test_a_field_added_in_one_location_reaches_the_other_through_a_cut(
    locations: Locations, namespace: str
) -> None:
    async with nodes() as start:
        prague = await start(locations.prague, "prague", "brno", "prague-1", namespace)
        brno = await start(locations.brno, "brno", "prague", "brno-1", namespace)
        prague.call.add(channel_id="c1", state="new")
        await prague.flush()
        await brno.call.all()
        await eventually(lambda: len(brno.call) == 1, timeout=HEAL)
        locations.link.cut("reset")
        prague.call.typed(Grown).add(Grown("c2", "new", queue=3))  # a new optional field, during the cut
        await prague.flush()
        locations.link.heal()
        await eventually(lambda: len(brno.call) == 2, timeout=HEAL, interval=0.05)
        assert brno.call.schema is not None and "queue" in brno.call.schema.fields
        # Brno stores it in its own key too, so a node of Brno has it from its own location.
        await eventually(lambda: not brno.call.sync.has_pending(), timeout=HEAL)
        fresh = await start(locations.brno, "brno", "prague", "brno-2", namespace)
        assert fresh.call.schema is not None and "queue" in fresh.call.schema.fields
        entry = await fresh._storage.get(fresh.bucket_name("call"), "_schema")  # type: ignore[union-attr]
        assert entry is not None and b'"queue"' in entry.value


class NodeProcess:
    """A node of one location in a process of its own (``tests/shell/workers/location_node.py``)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def spawn(
        cls, server: EmbeddedServer, namespace: str, name: str, domain: str, peer: str
    ) -> NodeProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.shell.workers.location_node",
            server.url,
            namespace,
            name,
            domain,
            peer,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        node = cls(process)
        assert "ready" in await node.reply(30)
        return node

    async def reply(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert line, "the node process exited"
        return dict(json.loads(line))

    async def ask(self, **command: Any) -> dict[str, Any]:
        """Send one command; its answer (a ``wait`` may take its ``timeout``, anything else 30 s)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        return await self.reply(command.get("timeout", 0) + 30)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.ask(stop=True)
            if self.process.returncode is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 5)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


CUT = 60.0  # seconds the link stays cut in the test with node processes


async def test_node_processes_of_two_locations_work_through_a_minute_long_cut(
    locations: Locations, namespace: str
) -> None:
    processes: list[NodeProcess] = []

    async def spawn(server: EmbeddedServer, name: str, domain: str, peer: str) -> NodeProcess:
        node = await NodeProcess.spawn(server, namespace, name, domain, peer)
        processes.append(node)
        return node

    try:
        p1 = await spawn(locations.prague, "prague-1", "prague", "brno")
        p2 = await spawn(locations.prague, "prague-2", "prague", "brno")
        b1 = await spawn(locations.brno, "brno-1", "brno", "prague")
        b2 = await spawn(locations.brno, "brno-2", "brno", "prague")
        uuid = (await p1.ask(add={"channel_id": "c1", "state": "ringing", "agent": 0, "attempts": 0}))["uuid"]
        await p1.ask(flush=True)
        for node in (p2, b1, b2):
            assert (await node.ask(wait=uuid, field="state", value="ringing", timeout=HEAL))[
                "seconds"
            ] is not None

        locations.link.cut("reset")
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        rounds = 0
        while loop.time() - cut_at < CUT:
            rounds += 1
            # Each location's nodes change the entity, and see each other's changes.
            await p1.ask(set=uuid, field="state", value=f"prague-{rounds}")
            await p1.ask(increment=uuid, field="attempts", by=1)
            await p1.ask(flush=True)
            await b1.ask(set=uuid, field="agent", value=rounds)
            await b1.ask(increment=uuid, field="attempts", by=1)
            await b1.ask(flush=True)
            seen = [
                await p2.ask(wait=uuid, field="state", value=f"prague-{rounds}", timeout=10),
                await b2.ask(wait=uuid, field="agent", value=rounds, timeout=10),
            ]
            assert all(answer["seconds"] is not None for answer in seen), (rounds, seen)
            await asyncio.sleep(1)
        # A node started during the cut loads its location's state: its own changes, not the other's.
        b3 = await spawn(locations.brno, "brno-3", "brno", "prague")
        during = (await b3.ask(dump=True))["entities"][uuid]
        assert during["agent"] == rounds and during["state"] == "ringing"

        locations.link.heal()
        expected = {"channel_id": "c1", "state": f"prague-{rounds}", "agent": rounds, "attempts": 2 * rounds}
        everyone = [p1, p2, b1, b2, b3]
        for node in everyone:
            answer = await node.ask(wait=uuid, field="attempts", value=2 * rounds, timeout=HEAL)
            assert answer["seconds"] is not None
        p3 = await spawn(locations.prague, "prague-3", "prague", "brno")
        for node in [*everyone, p3]:
            assert (await node.ask(dump=True))["entities"] == {uuid: expected}
    finally:
        for node in processes:
            await node.stop()
    assert [node.process.returncode for node in processes] == [0] * len(processes)


async def test_three_locations_through_a_hub_converge_after_one_is_cut_off(
    tmp_path: Path, namespace: str
) -> None:
    """Prague is the hub; Brno and Ostrava are its leaves, and reach each other through it."""
    domains = ("prague", "brno", "ostrava")
    async with EmbeddedLocations(domains, base_dir=tmp_path) as places:
        started: list[Brainless] = []
        try:
            for domain in domains:
                peers = [peer for peer in domains if peer != domain]
                db = Brainless(
                    places.url(domain),
                    namespace=namespace,
                    location=f"{domain}-1",
                    domain=domain,
                    peers=peers,
                    flush_interval=0.02,
                )
                started.append(await db.start())
            prague, brno, ostrava = started
            uuid = ostrava.call.add(channel_id="c1", caller={}, attempts=0).uuid
            await ostrava.flush()
            await eventually(lambda: uuid in prague.call and uuid in brno.call, timeout=HEAL)
            places.links["brno"].cut("reset")
            for db in started:
                db.call[uuid].caller[db.domain or ""] = True
                db.call.increment(uuid, "attempts")
                await db.flush()
            await eventually(lambda: ostrava.call[uuid].caller.keys() == {"prague", "ostrava"}, timeout=HEAL)
            places.links["brno"].heal()
            await eventually(lambda: agree(started), timeout=HEAL, interval=0.1)
            assert prague.call[uuid].caller == {"prague": True, "brno": True, "ostrava": True}
            assert prague.call[uuid].attempts == 3
        finally:
            for db in started:
                with contextlib.suppress(Exception):
                    await db.stop(timeout=5)


async def test_a_bucket_copying_a_peers_keys_under_the_same_keys_is_refused(
    locations: Locations, namespace: str
) -> None:
    """Same-key sources both ways loop for ever: a node refuses such a bucket rather than follow it."""
    bucket = f"{namespace}-call"
    async with nats_connection(locations.brno.url) as client:
        js = client.jetstream()
        await NatsKVStorage(client).open_bucket(bucket)
        info = await js.stream_info(f"KV_{bucket}")
        info.config.sources = [
            StreamSource(name=f"KV_{bucket}", external=ExternalStream(api="$JS.prague.API"))
        ]
        await js.update_stream(info.config)
    async with nodes() as start:
        db = await start(locations.brno, "brno", "prague", "brno-1", namespace)
        with pytest.raises(ConfigurationError, match="could loop"):
            await db.call.all()


async def test_a_node_refuses_a_domain_its_server_is_not_in(locations: Locations, namespace: str) -> None:
    db = Brainless(locations.brno.url, namespace=namespace, location="x", domain="ostrava", peers=["prague"])
    with pytest.raises(ConfigurationError, match="brno"):
        await db.start()


def test_locations_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="domain"):
        Brainless(None, peers=["prague"])
    with pytest.raises(ValueError, match="distinct"):
        Brainless(None, domain="brno", peers=["prague", "brno"])
    with pytest.raises(InvalidNameError):
        Brainless(None, domain="br.no", peers=["prague"])
    with pytest.raises(TypeError):
        Brainless(None, domain="brno", peers="prague")  # type: ignore[arg-type]
