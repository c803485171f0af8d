"""Locations: two nats-servers in their own JetStream domains, a leaf link through a proxy that is cut.

- ``propagation within a location`` and ``across locations``: sequential changes on a Prague node until
  another Prague node, or a Brno node, sees each (``on_change``), against raw ``kv.put`` on Prague's
  bucket seen by an ordered consumer on that bucket, or on a Brno bucket sourcing it the same way.
- ``catch-up``: with the link cut for a while, a Prague node changes ``n`` entities (acknowledged by
  Prague's NATS); the seconds from the heal until a Brno node holds every change, against the same ``n``
  raw puts into a raw bucket that a raw Brno bucket sources, and the seconds until all are copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js.api import DeliverPolicy
from tests.helpers import eventually

from benchmarks import baselines
from benchmarks.common import Params, Row, Series, encode, entity_data, new_keys, pair, percentile
from brainlessdb import Brainless, Change
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.embedded_locations import EmbeddedLocations, Link
from brainlessdb.storage.nats.buckets import peer_source

logger = logging.getLogger("benchmarks")

COLLECTION = "call"


@dataclass
class Pair:
    prague: EmbeddedServer
    brno: EmbeddedServer
    link: Link


@contextlib.asynccontextmanager
async def two_locations(binary: str | None) -> AsyncIterator[Pair]:
    async with EmbeddedLocations(["prague", "brno"], binary=binary) as places:
        yield Pair(places.servers["prague"], places.servers["brno"], places.links["brno"])


def node(server: EmbeddedServer, ns: str, name: str, domain: str, peer: str) -> Brainless:
    return Brainless(server.url, namespace=ns, location=name, domain=domain, peers=[peer], flush_interval=0)


# -- propagation -------------------------------------------------------------------------------------


async def lib_latencies(
    pair_: Pair, ns: str, changes: int, timeout: float
) -> tuple[list[float], list[float]]:
    """Seconds from a change on Prague's node until Prague's other node, and Brno's node, see it."""
    loop = asyncio.get_running_loop()
    waiting: dict[tuple[str, int], asyncio.Future[float]] = {}
    async with (
        node(pair_.prague, ns, "prague-1", "prague", "brno") as writer,
        node(pair_.prague, ns, "prague-2", "prague", "brno") as local,
        node(pair_.brno, ns, "brno-1", "brno", "prague") as remote,
    ):
        entity = writer.collection(COLLECTION).add({**entity_data(0), "priority": -1})
        await writer.flush()
        for name, db in (("local", local), ("remote", remote)):
            collection = db.collection(COLLECTION)
            await collection.all()

            def seen(event: Change, name: str = name) -> None:
                change = event.changes.get("priority")
                if change is not None and (future := waiting.pop((name, change[1]), None)) is not None:
                    future.set_result(time.perf_counter())

            collection.on_change(seen)
            await eventually(lambda c=collection: entity.uuid in c, timeout, interval=0.005)
        within, across = [], []
        for i in range(changes):
            arrivals = [waiting.setdefault((name, i), loop.create_future()) for name in ("local", "remote")]
            start = time.perf_counter()
            entity.priority = i
            local_at, remote_at = await asyncio.wait_for(asyncio.gather(*arrivals), timeout)
            within.append(local_at - start)
            across.append(remote_at - start)
        return within, across


async def raw_latencies(
    pair_: Pair, ns: str, changes: int, timeout: float
) -> tuple[list[float], list[float]]:
    """Seconds from a raw ``kv.put`` on Prague's bucket until an ordered consumer on it, and one on a
    Brno bucket sourcing it, see the message."""
    bucket = f"{ns}-raw"
    async with connected(pair_.prague) as prague, connected(pair_.brno) as brno:
        await baselines.create_bucket(prague, bucket)
        await sourcing(brno, bucket, "prague")
        loop = asyncio.get_running_loop()
        waiting: dict[tuple[str, bytes], asyncio.Future[float]] = {}

        async def watch(nc: Client, name: str, subject: str) -> None:
            async def arrived(msg: object) -> None:
                future = waiting.pop((name, msg.data), None)  # type: ignore[attr-defined]
                if future is not None:
                    future.set_result(time.perf_counter())

            await nc.jetstream().subscribe(
                subject, cb=arrived, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )

        await watch(prague, "local", f"$KV.{bucket}.*")
        await watch(brno, "remote", f"$KV.{bucket}._prague.*")
        await asyncio.sleep(0.5)
        kv = await prague.jetstream().key_value(bucket)
        within, across = [], []
        for i in range(changes):
            value = encode({**entity_data(0), "priority": i})
            arrivals = [
                waiting.setdefault((name, value), loop.create_future()) for name in ("local", "remote")
            ]
            start = time.perf_counter()
            await kv.put("k", value)
            local_at, remote_at = await asyncio.wait_for(asyncio.gather(*arrivals), timeout)
            within.append(local_at - start)
            across.append(remote_at - start)
        return within, across


@contextlib.asynccontextmanager
async def connected(server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await baselines.connect(server.url)
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def sourcing(nc: Client, bucket: str, peer: str) -> None:
    """A raw bucket ``bucket`` here that sources the peer's bucket of that name, as brainlessdb does."""
    await baselines.create_bucket(nc, bucket)
    js = nc.jetstream()
    info = await js.stream_info(f"KV_{bucket}")
    info.config.sources = [peer_source(bucket, peer)]
    await js.update_stream(info.config)


# -- catch-up -----------------------------------------------------------------------------------------


async def lib_catch_up(pair_: Pair, ns: str, n: int, cut: float, timeout: float) -> float:
    """Seconds from the heal until Brno's node holds ``n`` changes Prague's node made during the cut."""
    async with (
        node(pair_.prague, ns, "prague-1", "prague", "brno") as prague,
        node(pair_.brno, ns, "brno-1", "brno", "prague") as brno,
    ):
        calls = prague.collection(COLLECTION)
        entities = [calls.add(entity_data(i)) for i in range(n)]
        await prague.flush()
        replica = brno.collection(COLLECTION)
        await replica.all()
        await eventually(lambda: len(replica) == n, timeout, interval=0.05)
        pair_.link.cut("reset")
        for entity in entities:
            entity.state = "after the cut"
        await prague.flush()
        await asyncio.sleep(cut)
        pair_.link.heal()
        healed = time.perf_counter()
        await eventually(lambda: replica.count(state="after the cut") == n, timeout, interval=0.02)
        return time.perf_counter() - healed


async def raw_catch_up(pair_: Pair, ns: str, n: int, cut: float, timeout: float) -> float:
    """Seconds from the heal until a raw Brno bucket sourcing Prague's has copied ``n`` raw puts made
    during the cut."""
    bucket = f"{ns}-raw"
    async with connected(pair_.prague) as prague, connected(pair_.brno) as brno:
        await baselines.create_bucket(prague, bucket)
        await sourcing(brno, bucket, "prague")
        keys = new_keys(n)
        kv = await prague.jetstream().key_value(bucket)
        for key in keys:
            await kv.put(key, encode(entity_data(0)))
        before = await copied(brno, bucket, n, timeout)
        pair_.link.cut("reset")
        await asyncio.gather(*(kv.put(key, encode({"state": "after the cut"})) for key in keys))
        await asyncio.sleep(cut)
        pair_.link.heal()
        healed = time.perf_counter()
        await copied(brno, bucket, before + n, timeout)
        return time.perf_counter() - healed


async def copied(nc: Client, bucket: str, at_least: int, timeout: float) -> int:
    """Wait until the Brno stream's last sequence reaches ``at_least`` (a copy takes one); that sequence."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    last = 0
    while time.monotonic() < deadline:
        last = int((await js.stream_info(f"KV_{bucket}")).state.last_seq)
        if last >= at_least:
            return last
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the raw source copied up to {last} of {at_least} messages")


async def bench_locations(params: Params, cuts: tuple[float, ...], binary: str | None) -> list[Row]:
    rows: list[Row] = []
    async with two_locations(binary) as pair_:
        within = [Series("brainlessdb", "ms", False), Series("raw put -> ordered consumer", "ms", False)]
        across = [Series("brainlessdb", "ms", False), Series("raw put -> sourced copy", "ms", False)]
        for repeat in range(params.repeats):
            logger.info("locations: propagation, repeat %d/%d", repeat + 1, params.repeats)
            for side, measure in enumerate((lib_latencies, raw_latencies)):
                local, remote = await measure(pair_, f"p{repeat}{side}", params.changes, params.timeout)
                within[side].samples.append(percentile(local, 0.5) * 1000)
                across[side].samples.append(percentile(remote, 0.5) * 1000)
        what = f"p50 of {params.changes} sequential changes"
        rows.append(pair("locations", f"propagation within a location, {what}", *within))
        rows.append(pair("locations", f"propagation across locations, {what}", *across))
        for cut in cuts:
            repeats = params.repeats if cut <= 10 else 1
            lib = Series("brainlessdb", "s", False)
            raw = Series("raw sourced stream", "s", False)
            for repeat in range(repeats):
                logger.info("locations: catch-up after %gs, repeat %d/%d", cut, repeat + 1, repeats)
                ns = f"c{int(cut)}r{repeat}"
                lib.samples.append(await lib_catch_up(pair_, ns, params.n, cut, params.timeout))
                raw.samples.append(await raw_catch_up(pair_, ns, params.n, cut, params.timeout))
            note = "" if repeats > 1 else "one repeat"
            rows.append(
                pair(
                    "locations", f"catch-up after a {cut:g} s cut, {params.n} changes pending", lib, raw, note
                )
            )
    return rows
