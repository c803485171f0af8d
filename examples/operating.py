"""Operating a node (docs/guides/operating.md): a journal, health from stats() and
nodes(), Prometheus metrics, and a clean stop.

Needs the ``metrics`` extra (``prometheus-client``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from brainlessdb import Brainless
from brainlessdb.metrics import register_prometheus

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        journal = (
            Path(scratch) / "prague-1.journal"
        )  # in production: a directory that outlives the process
        # --8<-- [start:start]
        db = Brainless(
            NATS_URL,
            namespace="guide-operating",
            location="prague-1",  # one per running process
            journal=journal,  # unacknowledged changes survive a crash (next start())
            stop_timeout=10,  # how long stop() may take to write what is pending
            connect_timeout=10,  # start() gives up with UnavailableError after this
        )
        await db.start()
        # --8<-- [end:start]
        call = db.call.add(state="waiting")

        # --8<-- [start:health]
        await (
            db.flush()
        )  # write what is pending now (FlushError says what could not be written)
        stats = db.stats()
        assert stats["state"] == "started"
        assert (
            stats["collections"]["call"]["pending"] == 0
        )  # everything acknowledged by NATS
        assert (
            stats["collections"]["call"]["dead_letters"] == 0
        )  # no stored value set aside

        (me,) = [node for node in await db.nodes() if node["location"] == "prague-1"]
        assert me["pending"] == 0  # as its last heartbeat said
        # --8<-- [end:health]

        # --8<-- [start:metrics]
        registry = (
            CollectorRegistry()
        )  # or the default registry, served by start_http_server(9100)
        register_prometheus(db, registry=registry)
        scraped = generate_latest(registry).decode()
        assert (
            'brainless_started{location="prague-1",namespace="guide-operating"} 1.0'
            in scraped
        )
        # --8<-- [end:metrics]

        db.call.delete(call)  # leave the namespace empty for the next run
        # --8<-- [start:stop]
        await db.stop()  # writes what is pending, removes its heartbeat, disconnects
        # --8<-- [end:stop]


if __name__ == "__main__":
    asyncio.run(main())
