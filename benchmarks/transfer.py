"""``brainless dump`` and ``brainless restore`` of ``n`` entities, as an operator runs them (a process each).

- dump: the command writing one collection to a file, against a raw ordered consumer replaying the
  bucket (the read any backup of the stream makes);
- restore: the command merging that file into an empty namespace, against raw pipelined publishes of the
  same values into an empty bucket (a restore that merges nothing and checks nothing).
Both commands' figures include the start of a Python process and its connection (about 0.3 s here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import baselines
from benchmarks.common import Params, Row, Series, pair, rate
from benchmarks.nats_io import COLLECTION, namespace, raw_connection, write_bucket

logger = logging.getLogger("benchmarks")

UNIT = "entities/s"


async def brainless(*args: str, timeout: float) -> float:
    """Seconds of one ``brainless`` command (a process of its own); it must succeed."""
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "brainlessdb",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(
            f"brainless {' '.join(args[4:])} failed ({process.returncode}): {err.decode()[-500:]}"
        )
    return seconds


def dumped_values(file: str) -> list[tuple[str, bytes, int]]:
    """The stored values a dump holds, as raw creates: ``(key, value, expected revision 0)``."""
    values = []
    for line in Path(file).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("op") == "PUT":
            values.append((record["key"], json.dumps(record["value"]).encode(), 0))
    return values


async def bench_transfer(url: str, params: Params) -> list[Row]:
    n = params.n
    source = namespace("d")
    dump = Series("brainless dump", UNIT, True)
    replay = Series("raw ordered consumer replay", UNIT, True)
    restore = Series("brainless restore", UNIT, True)
    publish = Series("raw publish_async of the same values", UNIT, True)
    logger.info("transfer: writing %d entities", n)
    await write_bucket(url, source, n, 1, params.timeout)
    bucket = f"{source}-{COLLECTION}"
    try:
        with tempfile.TemporaryDirectory(prefix="brainless-bench-dump-") as folder:
            file = str(Path(folder) / "dump.jsonl")
            for repeat in range(params.repeats):
                logger.info("transfer: repeat %d/%d", repeat + 1, params.repeats)
                seconds = await brainless(
                    "-s", url, "-n", source, "dump", COLLECTION, "-o", file, timeout=params.timeout
                )
                dump.samples.append(rate(n, seconds))
                async with raw_connection(url) as nc:
                    # The bucket holds the n entities and the collection's schema.
                    seconds, _ = await baselines.ordered_replay(nc, bucket, n + 1, params.timeout)
                replay.samples.append(rate(n, seconds))

                target = namespace("r")
                try:
                    seconds = await brainless(
                        "-s", url, "-n", target, "restore", file, timeout=params.timeout
                    )
                    restore.samples.append(rate(n, seconds))
                finally:
                    async with raw_connection(url) as nc:
                        await baselines.delete_buckets(nc, f"{target}-{COLLECTION}")
                values = dumped_values(file)
                raw = f"{namespace('p')}-raw"
                async with raw_connection(url) as nc:
                    try:
                        await baselines.create_bucket(nc, raw)
                        seconds, _ = await baselines.publish_async_batch(nc, raw, values, params.timeout)
                        publish.samples.append(rate(len(values), seconds))
                    finally:
                        await baselines.delete_buckets(nc, raw)
    finally:
        async with raw_connection(url) as nc:
            await baselines.delete_buckets(nc, bucket)
    return [
        pair("transfer", f"dump of {n} entities (one process)", dump, replay),
        pair("transfer", f"restore of {n} entities into an empty namespace (one process)", restore, publish),
    ]
