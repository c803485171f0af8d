"""Warm restarts (docs/guides/operating.md): a node that keeps a snapshot of its
collections starts from it, and replays only what changed in NATS since.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from brainlessdb import Brainless

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
NAMESPACE = "guide-warm-restart"


async def main() -> None:
    # In production: a directory that outlives the process.
    with tempfile.TemporaryDirectory() as snapshots:
        # --8<-- [start:snapshots]
        db = Brainless(
            NATS_URL,
            namespace=NAMESPACE,
            location="prague-1",
            snapshot_dir=snapshots,  # one file per collection, replaced atomically
            snapshot_interval=60,  # seconds between snapshots (and one more at stop())
        )
        # The first time: no snapshot yet, the buckets are replayed in full.
        await db.start()
        # --8<-- [end:snapshots]
        for number in range(100):
            db.call.add(number=number, state="waiting")
        await db.synced()
        await db.stop()  # writes the snapshot of every collection
        assert db.stats()["snapshots"]["written"] == 1

        # Meanwhile, another node changes what this one holds.
        async with Brainless(NATS_URL, namespace=NAMESPACE, location="brno-1") as other:
            first = await other.call.find(number=0)
            assert first is not None
            first.state = "talking"
            other.call.delete(await other.call.find(number=1))

        # --8<-- [start:restart]
        db = Brainless(
            NATS_URL, namespace=NAMESPACE, location="prague-1", snapshot_dir=snapshots
        )
        # Loads the snapshot, then replays only the entries written after it.
        await db.start()
        assert db.stats()["snapshots"]["restored"] == 1  # no full replay
        # --8<-- [end:restart]
        assert len(db.call) == 99
        assert await db.call.exists(number=0, state="talking")

        for item in await db.call.all():  # leave the namespace empty for the next run
            db.call.delete(item)
        await db.stop()


if __name__ == "__main__":
    asyncio.run(main())
