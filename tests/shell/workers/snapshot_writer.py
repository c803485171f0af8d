"""A node in a process of its own that keeps changing a collection while it writes snapshots, until killed.

    python -m tests.shell.workers.snapshot_writer URL NAMESPACE SNAPSHOT_DIR

It adds entities to collection ``call``, changes and deletes some, flushing as it goes, with a snapshot
written every few milliseconds. Prints ``{"ready": WRITES}`` once three snapshots were written, then goes
on changing and snapshotting, so that a kill -9 from the test lands between (or in the middle of) writes.
It stops by itself after ``DEADLINE`` seconds, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import sys

from brainlessdb import Brainless

DEADLINE = 60.0


async def main(url: str, namespace: str, directory: str) -> None:
    async with Brainless(
        url,
        namespace=namespace,
        location="writer-1",
        flush_interval=0.01,
        snapshot_dir=directory,
        snapshot_interval=0.02,
    ) as db:
        calls = db.call
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        said = False
        step = 0
        while loop.time() < deadline:
            step += 1
            item = calls.add(state="ringing", step=step, caller={"city": "Brno"})
            if step % 3 == 0:
                item.state = "talking"
            if step % 5 == 0:
                calls.delete(item)
            await calls.flush()
            if not said and db.stats()["snapshots"]["written"] >= 3:
                print(json.dumps({"ready": db.stats()["snapshots"]["written"]}), flush=True)
                said = True
            await asyncio.sleep(0.001)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
