"""Memory per entity after a load, and where it goes: ``python -m benchmarks --only entity_memory``.

Each figure is measured in a fresh Python process (``python -m benchmarks.entity_memory MODE ...``) with
tracemalloc, so nothing allocated before counts; the process prints one JSON line. Modes:

- ``fresh``: ``start()`` loads a bucket of N entities, each written once;
- ``updated``: ``start()`` loads a bucket of N entities each updated once by another node (one field has
  a stamp of its own, as in a live system);
- ``changed``: ``start()`` loads the fresh bucket, then this node changes one field of every entity and
  flushes (the first local change of a loaded entity);
- ``history``: ``start()`` loads a bucket of N entities each of whose fields another node wrote in a
  change of its own (every field has a stamp of its own: a per-field change history);
- ``plain``: an ordered consumer replays the fresh bucket into a plain dict per entity, keyed by uuid;
- ``struct``: the same replay, each entity's fields converted into a msgspec Struct (a nested one for
  ``caller``).

The brainlessdb modes also report the allocation sites holding the most bytes per entity (``sites``):
what the analysis in docs/performance.md ("Memory per entity") is read from.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec

from benchmarks import baselines
from benchmarks.common import COLLECTION, Params, Row, Series, pair
from benchmarks.nats_io import namespace, raw_connection, write_bucket
from benchmarks.probe import Call
from brainlessdb import Brainless

logger = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600.0
SITES = 12
CHUNK = 2_000
UNIT = "bytes/entity"
MODES = ("fresh", "updated", "changed", "history", "plain", "struct")


# -- the probe, in its own process -------------------------------------------------------------------


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _sites(before: tracemalloc.Snapshot, n: int) -> list[tuple[str, float]]:
    """The allocation sites holding the most bytes since ``before``, per entity."""
    after = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = after.compare_to(before, "lineno")
    out = []
    for stat in sorted(stats, key=lambda s: -s.size_diff)[:SITES]:
        frame = stat.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        out.append((where, round(stat.size_diff / n, 1)))
    return out


async def _loaded(url: str, ns: str, n: int, change: str | None) -> dict[str, Any]:
    before = _traced()
    snapshot = tracemalloc.take_snapshot()
    db = Brainless(url, namespace=ns, location="probe", flush_interval=3600)
    await asyncio.wait_for(db.start(), TIMEOUT)
    collection = db.collection(COLLECTION)
    if change is not None:
        # Flushed a chunk at a time: a shared machine may not acknowledge tens of thousands at once in time.
        for index, entity in enumerate(list(collection)):
            entity.state = change
            if index % CHUNK == CHUNK - 1:
                await asyncio.wait_for(db.flush(), TIMEOUT)
        await asyncio.wait_for(db.flush(), TIMEOUT)
    await db.stop()
    count = len(collection)
    used = _traced() - before
    return {"count": count, "bytes": used, "sites": _sites(snapshot, n)}


async def _replayed(url: str, ns: str, n: int, typed: bool) -> dict[str, Any]:
    before = _traced()
    nc = await baselines.connect(url)
    store: dict[str, Any] = {}
    bucket = f"{ns}-{COLLECTION}"
    try:
        pick = (lambda value: msgspec.convert(value["d"], Call)) if typed else (lambda value: value["d"])
        await baselines.ordered_replay(nc, bucket, n, TIMEOUT, store=store, pick=pick)
    finally:
        await nc.close()
    del nc
    used = _traced() - before
    return {"count": len(store), "bytes": used}


def probe_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.entity_memory")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--change", default="onhold", help="the value `changed` sets")
    args = parser.parse_args(argv)
    tracemalloc.start()
    if args.mode in ("plain", "struct"):
        result = asyncio.run(_replayed(args.url, args.namespace, args.n, args.mode == "struct"))
    else:
        change = args.change if args.mode == "changed" else None
        result = asyncio.run(_loaded(args.url, args.namespace, args.n, change))
    if result["count"] != args.n:
        raise SystemExit(f"probe {args.mode}: {result['count']} entities, expected {args.n}")
    result["bytes_per_entity"] = result["bytes"] / args.n
    result["mode"] = args.mode
    print(json.dumps(result))


# -- the benchmark -----------------------------------------------------------------------------------


def probe(mode: str, n: int, url: str, ns: str, change: str = "onhold") -> dict[str, Any]:
    """What the probe ``mode`` measured in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.entity_memory", mode, "--n", str(n)]
    command += ["--url", url, "--namespace", ns, "--change", change]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT * 3, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {mode} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def bench_entity_memory(url: str, params: Params) -> list[Row]:
    """Bytes per entity held after a load (fresh, updated elsewhere, changed here), beside a plain dict and
    a msgspec Struct per entity loaded from the same bucket in the same run."""
    n = params.n
    fresh_ns, updated_ns, changed_ns = namespace("ef"), namespace("eu"), namespace("ec")
    history_ns = namespace("eh")
    samples = {mode: Series(mode, UNIT, False) for mode in MODES}
    sites: dict[str, list[tuple[str, float]]] = {}
    try:
        await write_bucket(url, fresh_ns, n, 1, params.timeout)
        await write_bucket(url, updated_ns, n, 2, params.timeout)
        await write_bucket(url, changed_ns, n, 1, params.timeout)
        await write_bucket(url, history_ns, n, 1, params.timeout, every_field=True)
        for repeat in range(params.repeats):
            logger.info("entity_memory: repeat %d/%d", repeat + 1, params.repeats)
            for mode in MODES:
                ns = {"updated": updated_ns, "changed": changed_ns, "history": history_ns}.get(mode, fresh_ns)
                found = await asyncio.to_thread(probe, mode, n, url, ns, f"onhold-{repeat}")
                samples[mode].samples.append(found["bytes_per_entity"])
                if "sites" in found:
                    sites[mode] = found["sites"]
    finally:
        async with raw_connection(url) as nc:
            await baselines.delete_buckets(
                nc, *(f"{ns}-{COLLECTION}" for ns in (fresh_ns, updated_ns, changed_ns, history_ns))
            )
    for mode, found in sites.items():
        logger.info("entity_memory: %s, bytes per entity by allocation site (last repeat):", mode)
        for where, size in found:
            logger.info("  %8.1f  %s", size, where)
    plain = samples["plain"]
    plain.name = "plain dict per entity, keyed by uuid"
    struct = samples["struct"]
    struct.name = "msgspec Struct per entity, keyed by uuid"
    labels = {
        "fresh": f"after start() loaded {n} entities",
        "updated": f"after start() loaded {n} entities, each updated once elsewhere",
        "changed": f"after start() loaded {n} entities, then one field of each changed here",
        "history": f"after start() loaded {n} entities, each field of each updated elsewhere apart",
    }
    rows = []
    for mode, label in labels.items():
        rows.append(pair("entity_memory", label, samples[mode], plain))
        rows.append(pair("entity_memory", label, samples[mode], struct))
    return rows


if __name__ == "__main__":
    probe_main(sys.argv[1:])
