"""A node in a process of its own that takes a lease and renews it until it is killed.

    python -m tests.shell.workers.lease_holder URL NAMESPACE LEASE TTL

Prints one JSON line once it holds the lease: ``{"token": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from brainlessdb import Brainless


async def main(url: str, namespace: str, name: str, ttl: float) -> None:
    async with Brainless(url, namespace=namespace, location="holder") as db:
        lease = None
        while lease is None:
            lease = await db.lease(name, ttl=ttl)
            if lease is None:
                await asyncio.sleep(0.05)
        print(json.dumps({"token": lease.token}), flush=True)
        while True:
            await asyncio.sleep(ttl / 4)
            await lease.renew()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
