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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from brainlessdb import Brainless, ConfigurationError, InvalidNameError
from brainlessdb.embedded import EmbeddedServer, free_port
from tests.helpers import eventually, memory_of, nats_connection
from tests.proxy import CutMode, Proxy

pytestmark = pytest.mark.nats

HEAL = 90.0  # seconds a catch-up after a heal may take (the server retries a source within ~50 s)


@dataclass
class Locations:
    prague: EmbeddedServer  # the hub
    brno: EmbeddedServer  # a leaf of it, through ``link``
    link: Proxy


@pytest.fixture
async def locations(tmp_path: Path) -> AsyncIterator[Locations]:
    hub_port = free_port()
    prague = EmbeddedServer(
        store_dir=tmp_path / "prague",
        name="prague",
        jetstream_config="domain: prague",
        # no_advertise: the leaf must not learn this listener's own address and bypass the proxy.
        extra_config=f'leafnodes {{ listen: "127.0.0.1:{hub_port}", no_advertise: true }}',
    )
    link = await Proxy(hub_port).start()
    brno = EmbeddedServer(
        store_dir=tmp_path / "brno",
        name="brno",
        jetstream_config="domain: brno",
        extra_config=(
            f'leafnodes {{ reconnect: 1, remotes: [ {{ url: "nats-leaf://127.0.0.1:{link.port}" }} ] }}'
        ),
    )
    try:
        prague.start()
        brno.start()
        yield Locations(prague, brno, link)
    finally:
        await link.close()
        brno.close()
        prague.close()


@contextlib.asynccontextmanager
async def nodes() -> AsyncIterator[Callable[..., Awaitable[Brainless]]]:
    """Start nodes of either location; every one is stopped at the end."""
    started: list[Brainless] = []

    async def start(server: EmbeddedServer, domain: str, peer: str, name: str, namespace: str) -> Brainless:
        db = Brainless(
            server.url, namespace=namespace, location=name, domain=domain, peers=[peer], flush_interval=0.02
        )
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
        call = prague.call[c1].data
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


async def test_three_locations_through_a_hub_converge_after_one_is_cut_off(
    tmp_path: Path, namespace: str
) -> None:
    """Prague is the hub; Brno and Ostrava are its leaves, and reach each other through it."""
    hub_port = free_port()
    domains = ("prague", "brno", "ostrava")
    servers = {
        "prague": EmbeddedServer(
            store_dir=tmp_path / "prague",
            name="prague",
            jetstream_config="domain: prague",
            extra_config=f'leafnodes {{ listen: "127.0.0.1:{hub_port}", no_advertise: true }}',
        )
    }
    links = {leaf: await Proxy(hub_port).start() for leaf in domains[1:]}
    for leaf, link in links.items():
        servers[leaf] = EmbeddedServer(
            store_dir=tmp_path / leaf,
            name=leaf,
            jetstream_config=f"domain: {leaf}",
            extra_config=(
                f'leafnodes {{ reconnect: 1, remotes: [ {{ url: "nats-leaf://127.0.0.1:{link.port}" }} ] }}'
            ),
        )
    try:
        for server in servers.values():
            server.start()
        started: list[Brainless] = []
        try:
            for domain in domains:
                peers = [peer for peer in domains if peer != domain]
                db = Brainless(
                    servers[domain].url,
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
            links["brno"].cut("reset")
            for db in started:
                db.call[uuid].caller[db.domain or ""] = True
                db.call.increment(uuid, "attempts")
                await db.flush()
            await eventually(lambda: ostrava.call[uuid].caller.keys() == {"prague", "ostrava"}, timeout=HEAL)
            links["brno"].heal()
            await eventually(lambda: agree(started), timeout=HEAL, interval=0.1)
            assert prague.call[uuid].caller == {"prague": True, "brno": True, "ostrava": True}
            assert prague.call[uuid].attempts == 3
        finally:
            for db in started:
                with contextlib.suppress(Exception):
                    await db.stop(timeout=5)
    finally:
        for link in links.values():
            await link.close()
        for server in servers.values():
            server.close()


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
