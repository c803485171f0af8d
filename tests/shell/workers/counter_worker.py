"""A node in a process of its own that increments one counter and edits one key of a shared dict field.

    python -m tests.shell.workers.counter_worker URL NAMESPACE AGENT UUID TIMES NODES

Prints ``{"ready": AGENT}`` once it holds the entity ``UUID`` of collection ``call``, then waits for the
key ``go`` of the dict field ``caller`` to be true (set by the test, so that every node starts at once).
It then makes ``TIMES`` increments of ``attempts`` and as many writes of ``caller["notes"][AGENT]``
(0, 1, ... ``TIMES - 1``), interleaved and unflushed between them, as a busy node does. It prints
``{"read": {...}}``, the entity as it holds it, once every node's increments and last notes are there (or
after ``DEADLINE`` seconds), and exits.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable

from brainlessdb import Brainless, meta

DEADLINE = 60.0  # seconds: a worker never runs longer, whatever happens


def say(**message: object) -> None:
    print(json.dumps(message), flush=True)


async def main(url: str, namespace: str, agent: str, uuid: str, times: int, nodes: int) -> None:
    async with Brainless(url, namespace=namespace, location=f"node-{agent}", flush_interval=0.01) as db:
        calls = db.call
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE

        async def until(done: Callable[[], bool]) -> None:
            while loop.time() < deadline:
                if done():
                    return
                await asyncio.sleep(0.005)

        await until(lambda: uuid in calls)
        say(ready=agent)
        await until(lambda: bool(calls[uuid].caller.get("go")))
        for time in range(times):
            calls.increment(uuid, "attempts")
            calls[uuid].caller["notes"][agent] = time
            if random.random() < 0.3:
                await asyncio.sleep(random.random() * 0.01)
        await calls.flush()

        def complete() -> bool:
            item = calls[uuid]
            notes = item.caller["notes"]
            every_note = len(notes) == nodes and set(notes.values()) == {times - 1}
            return bool(item.attempts == times * nodes and every_note)

        await until(complete)
        say(read=meta(calls[uuid]).data)


if __name__ == "__main__":
    url, namespace, agent, uuid, times, nodes = sys.argv[1:]
    asyncio.run(main(url, namespace, agent, uuid, int(times), int(nodes)))
