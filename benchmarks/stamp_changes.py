"""The cost of a tracked change by the form an entity's stamps are in: ``python -m benchmarks.stamp_changes``.

Adds batches of entities to an in-memory collection, then times ``entity.state = x`` on each of them (the
first change since the add: one stamp becomes a small tuple) and again (the same field changed again:
the tuple's last stamp replaced). Prints the best µs per change of the batches, as one JSON line; run it
alternately against two trees (``PYTHONPATH=<tree>/src:<tree>``) to compare them on a shared machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time

from benchmarks.common import COLLECTION, dataset
from brainlessdb import Brainless

BATCHES = 5
BATCH = 4_000


async def main() -> dict[str, float]:
    db = Brainless(None, namespace="stamps", location="stamps", flush_interval=3600)
    await db.start()
    collection = db.collection(COLLECTION)
    rows = dataset(BATCHES * BATCH)
    found: dict[str, list[float]] = {"first": [], "again": []}
    try:
        for batch in range(BATCHES):
            entities = [collection.add(row) for row in rows[batch * BATCH : (batch + 1) * BATCH]]
            gc.collect()
            for what, value in (("first", "onhold"), ("again", "talking")):
                start = time.perf_counter()
                for entity in entities:
                    entity.state = value
                found[what].append((time.perf_counter() - start) / len(entities) * 1e6)
    finally:
        await db.stop()
    return {what: round(min(samples), 3) for what, samples in found.items()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
