"""warm_restart: ``start()`` of a node from its snapshot (``snapshot_dir``) against a full replay.

The bucket holds N entities (10 x ``--n``: 100,000 by default; a million with ``--scale-1m``). A node loads
it once and stops, which writes its snapshot. Each repeat then changes 1% of the entities (other ones each
time) as another node would, with pipelined compare-and-set writes of complete versions stamped later, and
times, back to back on the same bucket: the node's ``start()`` from its snapshot (its ``stop()``, untimed,
writes the next snapshot), and a fresh node's ``start()``, which replays the bucket in full. Both open their
connection beforehand and must end with N entities; the warm one must have used its snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import pstats
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import baselines
from benchmarks.common import COLLECTION, Params, Row, Series, entity_data, median, pair
from benchmarks.nats_io import _publish_chunks, namespace, raw_connection, time_start, write_bucket
from brainlessdb import Brainless, meta
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.codec import encode_entity
from brainlessdb.embedded import EmbeddedServer

logger = logging.getLogger("benchmarks")

MILLION = 1_000_000
CHANGED = 0.01  # the share of the entities changed between two starts


def size_of(params: Params) -> int:
    """The entities of the bucket: a million with ``--scale-1m``, else ten times ``--n``."""
    return params.io_n if params.io_n >= MILLION else params.n * 10


async def bench_warm_restart(url: str, params: Params) -> list[Row]:
    n, timeout = size_of(params), params.timeout
    changed = max(1, int(n * CHANGED))
    ns = namespace("w")
    bucket = f"{ns}-{COLLECTION}"
    warm = Series(f"start() from its snapshot, {changed} entities changed since", "s", False)
    full = Series("start() replaying the bucket in full (the same bucket)", "s", False)
    writes: list[float] = []
    sizes: list[int] = []
    with tempfile.TemporaryDirectory(prefix="brainless-snapshots-") as directory:
        async with raw_connection(url) as nc:
            try:
                logger.info("warm_restart: writing %d entities", n)
                await write_bucket(url, ns, n, 1, timeout)
                logger.info("warm_restart: the first start (a full replay) and its snapshot")
                revisions = await first_start(url, ns, n, Path(directory), timeout)
                keys = sorted(revisions)
                clock = HybridLogicalClock("bench-changer")
                for repeat in range(params.repeats):
                    logger.info("warm_restart: repeat %d/%d", repeat + 1, params.repeats)
                    start = repeat * changed % n
                    chosen = (keys[start:] + keys[:start])[:changed]
                    items = [
                        (
                            key,
                            encode_entity({**entity_data(i), "priority": 1000 + repeat}, clock.tick()),
                            revisions[key],
                        )
                        for i, key in enumerate(chosen)
                    ]
                    _, written = await _publish_chunks(nc, bucket, items, timeout)
                    revisions.update(zip(chosen, written, strict=True))
                    seconds, wrote, size = await warm_start(url, ns, n, Path(directory), timeout)
                    warm.samples.append(seconds)
                    writes.append(wrote)
                    sizes.append(size)
                    full.samples.append(await time_start(url, ns, n, timeout))
            finally:
                await baselines.delete_buckets(nc, bucket)
    note = (
        f"snapshot of {n} entities written at stop() in {median(writes):.2f}s (median), "
        f"{median([float(size) for size in sizes]) / 1e6:.1f} MB"
    )
    measure = f"start() of a node of {n} entities, {changed} changed since its snapshot"
    return [pair("warm_restart", measure, warm, full, note=note)]


async def first_start(url: str, ns: str, n: int, directory: Path, timeout: float) -> dict[str, int]:
    """Load the bucket once into the node that keeps snapshots (its stop writes the first one): the
    revision of every key."""
    async with raw_connection(url) as nc:
        db = Brainless(nc, namespace=ns, location="bench-warm", flush_interval=3600, snapshot_dir=directory)
        try:
            await asyncio.wait_for(db.start(), timeout)
            collection = db.collection(COLLECTION)
            revisions = {uuid: meta(entity).revision or 0 for uuid, entity in collection.entities.items()}
        finally:
            await asyncio.wait_for(db.stop(timeout=timeout), timeout)
    if len(revisions) != n or db.stats()["snapshots"]["written"] != 1:
        raise RuntimeError(f"the first start loaded {len(revisions)} entities and wrote no snapshot")
    return revisions


async def warm_start(url: str, ns: str, n: int, directory: Path, timeout: float) -> tuple[float, float, int]:
    """Seconds of ``start()`` from the snapshot, seconds of the ``stop()`` that writes the next one, and the
    size of the snapshot file."""
    async with raw_connection(url) as nc:
        db = Brainless(nc, namespace=ns, location="bench-warm", flush_interval=3600, snapshot_dir=directory)
        try:
            start = time.perf_counter()
            await asyncio.wait_for(db.start(), timeout)
            seconds = time.perf_counter() - start
            loaded = len(db.collection(COLLECTION))
            restored = db.stats()["snapshots"]["restored"]
        finally:
            stopping = time.perf_counter()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(db.stop(timeout=timeout), timeout)
            wrote = time.perf_counter() - stopping
    if loaded != n or restored != 1:
        raise RuntimeError(f"start() from the snapshot: {loaded} entities of {n}, {restored} restored")
    size = (directory / f"{ns}-{COLLECTION}.snapshot").stat().st_size
    return seconds, wrote, size


async def profile_start(url: str, n: int, directory: Path, timeout: float) -> None:
    """Print the cProfile of one ``start()`` from a snapshot of ``n`` entities (1% changed since)."""
    ns = namespace("wp")
    async with raw_connection(url) as nc:
        try:
            await write_bucket(url, ns, n, 1, timeout)
            revisions = await first_start(url, ns, n, directory, timeout)
            clock = HybridLogicalClock("bench-changer")
            chosen = sorted(revisions)[: max(1, int(n * CHANGED))]
            items = [
                (key, encode_entity({**entity_data(i), "priority": 1000}, clock.tick()), revisions[key])
                for i, key in enumerate(chosen)
            ]
            await _publish_chunks(nc, f"{ns}-{COLLECTION}", items, timeout)
            db = Brainless(
                nc, namespace=ns, location="bench-warm", flush_interval=3600, snapshot_dir=directory
            )
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            await asyncio.wait_for(db.start(), timeout)
            profiler.disable()
            print(f"start() from the snapshot: {time.perf_counter() - start:.2f}s under the profiler")
            await db.stop(timeout=timeout)
            for order in ("cumulative", "tottime"):
                pstats.Stats(profiler).sort_stats(order).print_stats(20)
        finally:
            await baselines.delete_buckets(nc, f"{ns}-{COLLECTION}")


def main() -> None:
    """``python -m benchmarks.warm_restart [N]``: the profile of one warm start (N = 1,000,000)."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else MILLION
    with tempfile.TemporaryDirectory() as store, tempfile.TemporaryDirectory() as directory:
        server = EmbeddedServer(store_dir=store, name="profile")
        server.start()
        try:
            asyncio.run(profile_start(server.url, n, Path(directory), 600.0))
        finally:
            server.close()


if __name__ == "__main__":
    main()
