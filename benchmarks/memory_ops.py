"""In-memory benchmarks: operation costs against plain-Python floors, memory per entity, and scaling.

Operation costs run in this process on ``Brainless(None)`` (the in-memory mode; the flusher's interval is
an hour so no background flush runs between the timed operations). Memory is measured in a fresh Python
process per figure (``benchmarks.probe``) with tracemalloc, so nothing this process allocated before
counts.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import baselines
from benchmarks.common import COLLECTION, Params, Row, Series, dataset, median, new_keys, pair
from benchmarks.nats_io import namespace, raw_connection, write_bucket
from brainlessdb import Brainless, Collection

logger = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parent.parent
QUERY_CALLS = 3  # calls of a whole-collection query averaged into one sample
US = "µs/op"
MS = "ms/query"


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "caller": dict(row["caller"])} for row in rows]


async def _per_call(query: Callable[[], Awaitable[Any]], calls: int = QUERY_CALLS) -> float:
    """Seconds per ``await query()``, averaged over ``calls``."""
    start = time.perf_counter()
    for _ in range(calls):
        await query()
    return (time.perf_counter() - start) / calls


def _floor_per_call(timed_query: Callable[[], float], calls: int = QUERY_CALLS) -> float:
    """Seconds per call of a baseline that times itself, averaged over ``calls``."""
    return sum(timed_query() for _ in range(calls)) / calls


async def fresh_collection() -> tuple[Brainless, Collection[Any]]:
    db = Brainless(None, namespace="bench", location="bench", flush_interval=3600)
    await db.start()
    return db, db.collection(COLLECTION)


async def time_add(rows: list[dict[str, Any]]) -> tuple[float, Brainless, Collection[Any], list[Any]]:
    """Seconds per ``add()`` of every row into a fresh in-memory collection (which is returned)."""
    db, collection = await fresh_collection()
    add = collection.add
    start = time.perf_counter()
    entities = [add(row) for row in rows]
    return (time.perf_counter() - start) / len(rows), db, collection, entities


def time_set(entities: list[Any]) -> float:
    """Seconds per tracked ``entity.state = x``, once on each entity (its first change since added)."""
    start = time.perf_counter()
    for entity in entities:
        entity.state = "onhold"
    return (time.perf_counter() - start) / len(entities)


async def time_order_after_change(collection: Collection[Any], entities: list[Any]) -> float:
    """Milliseconds per ``order_by("priority")`` over the whole collection when one entity's priority
    changed (untimed) before each call: what a kept order saves nothing on, so every call sorts."""
    total = 0.0
    for i in range(QUERY_CALLS):
        entity = entities[(i * 7919) % len(entities)]
        entity.priority = (entity.priority + 1) % 5
        start = time.perf_counter()
        await collection.order_by("priority")
        total += time.perf_counter() - start
    return total / QUERY_CALLS * 1e3


async def time_find(collection: Collection[Any], channels: list[str]) -> float:
    """Seconds per ``find(channel_id=...)`` once its index is built."""
    await collection.find(channel_id=channels[0])
    find = collection.find
    start = time.perf_counter()
    for channel in channels:
        await find(channel_id=channel)
    return (time.perf_counter() - start) / len(channels)


def _lookup_sample(rows: list[dict[str, Any]], ops: int) -> list[str]:
    step = max(1, len(rows) // ops)
    return [rows[(i * step) % len(rows)]["channel_id"] for i in range(ops)]


# -- in_memory -------------------------------------------------------------------------------------


async def bench_in_memory(params: Params) -> list[Row]:
    n = params.n
    rows = dataset(n)
    channels = _lookup_sample(rows, params.ops)
    names = {
        "add": ("add(row)", "dict[uuid] = row.copy()", US),
        "set": ("entity.state = x (tracked)", "row['state'] = x", US),
        "find": ("find(channel_id=...) indexed, warm", "dict lookup by channel_id", US),
        "eq": ("filter(caller__city=...) indexed, warm", "list comprehension, full scan", MS),
        "sw": ("filter(caller__city__startswith=...) not indexable", "list comprehension, full scan", MS),
        "o1": ("order_by('priority')", "sorted(key=itemgetter('priority'))", MS),
        "o2": (
            "order_by('state', '-priority')",
            "sorted(itemgetter('priority'), reverse) + sort(itemgetter('state'))",
            MS,
        ),
    }
    ours = {key: Series("brainlessdb", unit, False) for key, (_, _, unit) in names.items()}
    floor = {key: Series(label, unit, False) for key, (_, label, unit) in names.items()}
    scale = {US: 1e6, MS: 1e3}
    for repeat in range(params.repeats):
        logger.info("in_memory: repeat %d/%d", repeat + 1, params.repeats)
        gc.collect()
        sample = await _in_memory_repeat(rows, channels)
        for key, (lib_seconds, floor_seconds) in sample.items():
            factor = scale[ours[key].unit]
            ours[key].samples.append(lib_seconds * factor)
            floor[key].samples.append(floor_seconds * factor)
    return [pair("in_memory", f"{names[key][0]} (N={n})", ours[key], floor[key]) for key in names]


async def _in_memory_repeat(
    rows: list[dict[str, Any]], channels: list[str]
) -> dict[str, tuple[float, float]]:
    """One repeat: for each operation, (brainlessdb seconds, plain-Python seconds) per op or per query."""
    n = len(rows)
    plain = _plain(rows)
    by_channel = {row["channel_id"]: row for row in plain}
    keys = new_keys(n)
    seconds, db, collection, entities = await time_add(rows)
    try:
        sample = {"add": (seconds, baselines.dict_insert(plain, keys))}
        sample["set"] = (time_set(entities), baselines.dict_assign(plain, "state", "onhold"))
        sample["find"] = (await time_find(collection, channels), baselines.dict_lookup(by_channel, channels))
        await collection.filter(caller__city="Prague")  # builds the index
        sample["eq"] = (
            await _per_call(lambda: collection.filter(caller__city="Prague")),
            _floor_per_call(lambda: baselines.nested_city_equals(plain, "Prague")),
        )
        sample["sw"] = (
            await _per_call(lambda: collection.filter(caller__city__startswith="Pra")),
            _floor_per_call(lambda: baselines.nested_city_startswith(plain, "Pra")),
        )
        sample["o1"] = (
            await _per_call(lambda: collection.order_by("priority")),
            _floor_per_call(lambda: baselines.sorted_one_key(plain, "priority")),
        )
        sample["o2"] = (
            await _per_call(lambda: collection.order_by("state", "-priority")),
            _floor_per_call(lambda: baselines.sorted_two_keys(plain, "state", "priority")),
        )
    finally:
        await db.stop()
    return sample


# -- memory ----------------------------------------------------------------------------------------


def probe(
    mode: str, n: int, url: str | None = None, ns: str | None = None, timeout: float = 1800
) -> dict[str, Any]:
    """What ``benchmarks.probe`` measured in a fresh process (``bytes_per_entity`` and more)."""
    command = [sys.executable, "-m", "benchmarks.probe", mode, "--n", str(n)]
    if url is not None and ns is not None:
        command += ["--url", url, "--namespace", ns]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {mode} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def bench_memory(url: str, params: Params) -> list[Row]:
    """Bytes per entity after ``start()`` loaded a bucket, against plain dicts and msgspec Structs loaded
    from the same one: once with every entity as first written (fresh), once with every entity updated
    once (one field changed, as a live system's entities are), once with each field of every entity
    written in a change of its own (a per-field change history: every field stamped apart)."""
    n = params.n
    rows: list[Row] = []
    shapes = (
        ("fresh", 1, False),
        ("every entity updated once", 2, False),
        ("every field of every entity updated apart", 1, True),
    )
    for label, revisions, every_field in shapes:
        ns = namespace("m")
        ours = Series("brainlessdb", "bytes/entity", False)
        plain = Series("plain dict per entity, in a dict keyed by uuid", "bytes/entity", False)
        struct = Series("msgspec Struct per entity, in a dict keyed by uuid", "bytes/entity", False)
        try:
            await write_bucket(url, ns, n, revisions, params.timeout, every_field=every_field)
            for repeat in range(params.repeats):
                logger.info("memory (%s): repeat %d/%d", label, repeat + 1, params.repeats)
                for series, mode in ((ours, "loaded"), (plain, "plain-loaded"), (struct, "struct-loaded")):
                    found = await asyncio.to_thread(probe, mode, n, url, ns)
                    series.samples.append(found["bytes_per_entity"])
        finally:
            async with raw_connection(url) as nc:
                await baselines.delete_buckets(nc, f"{ns}-{COLLECTION}")
        measure = f"{label}, after start() loaded {n} entities"
        rows += [pair("memory", measure, ours, plain), pair("memory", measure, ours, struct)]
    return rows


# -- scaling ---------------------------------------------------------------------------------------


async def bench_scaling(params: Params) -> list[Row]:
    """find (indexed), add, a tracked attribute set, order_by over the whole collection and memory per
    entity at each size: each against its floor at that size,
    and against its own figure at the smallest size (a flat cost per entity gives about 1.0x)."""
    sizes = sorted(params.scale_sizes)
    per_size: dict[int, dict[str, tuple[Series, Series]]] = {}
    unflushed: dict[int, list[float]] = {size: [] for size in sizes}
    for size in sizes:
        rows = dataset(size)
        channels = _lookup_sample(rows, params.ops)
        figures = {
            "find": (Series("brainlessdb", US, False), Series("dict lookup by channel_id", US, False)),
            "add": (Series("brainlessdb", US, False), Series("dict[uuid] = row.copy()", US, False)),
            "set": (Series("brainlessdb", US, False), Series("row['state'] = x", US, False)),
            "order_by": (
                Series("brainlessdb", MS, False),
                Series("sorted(key=itemgetter('priority'))", MS, False),
            ),
            "order_by_changed": (
                Series("brainlessdb", MS, False),
                Series("sorted(key=itemgetter('priority'))", MS, False),
            ),
            "memory": (
                Series("brainlessdb", "bytes/entity", False),
                Series("plain dict per entity, in a dict keyed by uuid", "bytes/entity", False),
            ),
        }
        for repeat in range(params.repeats):
            logger.info("scaling: N=%d repeat %d/%d", size, repeat + 1, params.repeats)
            gc.collect()
            plain = _plain(rows)
            seconds, db, collection, entities = await time_add(rows)
            figures["add"][0].samples.append(seconds * 1e6)
            figures["add"][1].samples.append(baselines.dict_insert(plain, new_keys(size)) * 1e6)
            figures["set"][0].samples.append(time_set(entities) * 1e6)
            figures["set"][1].samples.append(baselines.dict_assign(plain, "state", "onhold") * 1e6)
            figures["find"][0].samples.append(await time_find(collection, channels) * 1e6)
            by_channel = {row["channel_id"]: row for row in plain}
            figures["find"][1].samples.append(baselines.dict_lookup(by_channel, channels) * 1e6)
            await collection.order_by("priority")  # warm, as find is
            figures["order_by"][0].samples.append(
                await _per_call(functools.partial(collection.order_by, "priority")) * 1e3
            )
            figures["order_by"][1].samples.append(
                _floor_per_call(functools.partial(baselines.sorted_one_key, plain, "priority")) * 1e3
            )
            figures["order_by_changed"][0].samples.append(await time_order_after_change(collection, entities))
            figures["order_by_changed"][1].samples.append(figures["order_by"][1].samples[-1])
            await db.stop()
            del db, collection, entities, plain, by_channel
            gc.collect()
            found = await asyncio.to_thread(probe, "added", size)
            figures["memory"][0].samples.append(found["bytes_per_entity"])
            unflushed[size].append(found["bytes_before_flush"] / size)
            found = await asyncio.to_thread(probe, "plain-added", size)
            figures["memory"][1].samples.append(found["bytes_per_entity"])
        per_size[size] = figures
        del rows
    labels = {
        "find": "find(channel_id=...) indexed",
        "add": "add(row)",
        "set": "entity.state = x (tracked)",
        "order_by": "order_by('priority'), whole collection",
        "order_by_changed": "order_by('priority'), whole collection, one priority changed before each call",
        "memory": "memory, in-memory mode after add + flush",
    }
    result: list[Row] = []
    smallest = sizes[0]
    for what, label in labels.items():
        for size in sizes:
            ours, floor = per_size[size][what]
            note = ""
            if what == "memory":
                note = f"{median(unflushed[size]):.0f} bytes/entity before the first flush"
            result.append(pair("scaling", f"{label}, N={size}", ours, floor, note))
        for size in sizes[1:]:
            ours = per_size[size][what][0]
            first = per_size[smallest][what][0]
            reference = Series(f"brainlessdb at N={smallest}", first.unit, False, list(first.samples))
            result.append(pair("scaling", f"{label}, N={size} vs N={smallest}", ours, reference))
    return result
