"""Where the time of one operation goes: ``python -m benchmarks.profile_ops OPS --n N [--top K]``.

Runs each operation of the benchmark suite once at ``N`` entities under cProfile and prints the top
entries of its profile (by cumulative time, then by own time), the figures ``docs/performance.md`` quotes
for every target that does not hold. OPS is a comma-separated list among:

- ``add``: ``add()`` of N entities into a fresh in-memory collection;
- ``set``: a tracked ``entity.state = x`` on each of them (each entity's first change);
- ``find``: ``find(channel_id=...)`` of 10,000 channel ids, the index built beforehand;
- ``order_by``: ``order_by("priority")`` over the whole collection, one entity's ``priority`` changed
  before each of 3 calls (so each call sorts);
- ``load``: ``start()`` of a node loading a bucket of N entities (a nats-server is started for it);
- ``flush``: ``add()`` and ``flush()`` of N new entities, then a change and ``flush()`` of each, in rounds of
  ``FLUSH_CHUNK`` as the benchmark writes them (each round's echo through the node's watch awaited).

cProfile adds a fixed cost to every Python call, so its times are inflated, more so for code made of
many small calls: read the shares, and the benchmark suite for the times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.common import COLLECTION, dataset
from benchmarks.memory_ops import fresh_collection
from benchmarks.nats_io import FLUSH_CHUNK, chunks, database, namespace, write_bucket
from brainlessdb import Brainless
from brainlessdb.embedded import EmbeddedServer

OPS = ("add", "set", "find", "order_by", "load", "flush")
TIMEOUT = 1800.0


def report(name: str, profile: cProfile.Profile, seconds: float, top: int) -> str:
    out = io.StringIO()
    out.write(f"## {name}: {seconds:.3f} s under cProfile\n\n")
    for sort in ("cumulative", "tottime"):
        out.write(f"### by {sort}\n\n```\n")
        stats = pstats.Stats(profile, stream=out)
        stats.strip_dirs().sort_stats(sort).print_stats(top)
        out.write("```\n\n")
    return out.getvalue()


async def profiled(name: str, action: Callable[[], Awaitable[Any]], top: int) -> str:
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    try:
        await action()
    finally:
        profile.disable()
    return report(name, profile, time.perf_counter() - start, top)


async def in_memory(ops: list[str], n: int, top: int) -> list[str]:
    rows = dataset(n)
    db, collection = await fresh_collection()
    out: list[str] = []
    entities: list[Any] = []
    try:

        async def add() -> None:
            entities.extend(collection.add(row) for row in rows)

        async def assign() -> None:
            for entity in entities:
                entity.state = "onhold"

        channels = [rows[i * max(1, n // 10_000) % n]["channel_id"] for i in range(10_000)]

        async def find() -> None:
            for channel in channels:
                await collection.find(channel_id=channel)

        async def order_by() -> None:
            for i in range(3):
                entities[i].priority = 100 + i  # a change: the sort is done again
                await collection.order_by("priority")

        if "add" in ops:
            out.append(await profiled(f"add x {n}", add, top))
        else:
            await add()
        if "set" in ops:
            out.append(await profiled(f"entity.state = x, {n} entities", assign, top))
        if "find" in ops:
            await collection.find(channel_id=channels[0])
            out.append(await profiled(f"find(channel_id=...) x 10000, N={n}", find, top))
        if "order_by" in ops:
            await collection.order_by("priority")
            out.append(await profiled(f"order_by('priority') x 3, N={n}", order_by, top))
    finally:
        await db.stop()
    return out


async def through_nats(ops: list[str], n: int, top: int) -> list[str]:
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="brainless-profile-") as store:
        server = EmbeddedServer(store_dir=store, name="profile")
        server.start()
        try:
            url = server.url
            if "load" in ops:
                ns = namespace("l")
                await write_bucket(url, ns, n, 1, TIMEOUT)
                db = Brainless(url, namespace=ns, location="profile-reader", flush_interval=3600)
                try:
                    out.append(await profiled(f"start() loading {n} entities", db.start, top))
                finally:
                    await db.stop(timeout=60)
            if "flush" in ops:
                async with database(url, namespace("f"), "profile-writer", flush_interval=3600) as db:
                    collection = db.collection(COLLECTION)
                    rows = dataset(n)
                    entities: list[Any] = []

                    async def flush_new() -> None:
                        for chunk in chunks(rows):
                            entities.extend(collection.add(row) for row in chunk)
                            await db.flush()
                            await asyncio.wait_for(collection.load(), TIMEOUT)

                    async def flush_updates() -> None:
                        for chunk in chunks(entities):
                            for entity in chunk:
                                entity.state = "onhold"
                            await db.flush()
                            await asyncio.wait_for(collection.load(), TIMEOUT)

                    what = f"in flushes of {FLUSH_CHUNK}, each settled"
                    out.append(await profiled(f"add + flush() of {n} new entities {what}", flush_new, top))
                    out.append(await profiled(f"set + flush() of {n} updates {what}", flush_updates, top))
        finally:
            server.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_ops", description=__doc__.split("\n")[0]
    )
    parser.add_argument("ops", help=f"comma-separated among {', '.join(OPS)}")
    parser.add_argument("--n", type=int, default=1_000_000, help="entities (default 1000000)")
    parser.add_argument("--top", type=int, default=15, help="entries of each profile shown (default 15)")
    args = parser.parse_args()
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        parser.error(f"unknown operation(s) {', '.join(unknown)}; choose among {', '.join(OPS)}")
    sections: list[str] = []
    if {"add", "set", "find", "order_by"} & set(ops):
        sections += asyncio.run(in_memory(ops, args.n, args.top))
    if {"load", "flush"} & set(ops):
        sections += asyncio.run(through_nats(ops, args.n, args.top))
    print("\n".join(sections))


if __name__ == "__main__":
    main()
