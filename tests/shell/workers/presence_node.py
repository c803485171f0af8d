"""A node in a process of its own that only runs, announcing itself, until it is killed.

    python -m tests.shell.workers.presence_node URL NAMESPACE LOCATION INTERVAL

Prints one JSON line once started: ``{"node": <its node id>}``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from brainlessdb import Brainless
from brainlessdb.shell import presence


async def main(url: str, namespace: str, location: str, interval: float) -> None:
    presence.INTERVAL = interval
    async with Brainless(url, namespace=namespace, location=location) as db:
        print(json.dumps({"node": db.clock.replica}), flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
