"""A queue worker in a process of its own: takes waiting items with ``update_if`` until the queue is drained.

    python -m tests.shell.workers.queue_worker URL NAMESPACE AGENT TOTAL [WORK_SECONDS] [CLAIM_TIMEOUT]

Prints JSON lines: ``{"ready": AGENT}`` once started; ``{"took": uuid}`` for every item it won;
``{"unavailable": uuid, "unknown": bool}`` for a claim that raised ``UnavailableError`` (``unknown``: its
write had been sent; made again later with the same arguments, so one whose write was stored after all is
still reported as taken); and ``{"done": n}`` when
it has seen ``TOTAL`` items, none of them waiting, and no claim of its own left in doubt. It spends
``WORK_SECONDS`` on each item it takes, as a worker would.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from brainlessdb import Brainless, NotFoundError, UnavailableError

DEADLINE = 60.0  # seconds: a worker never runs longer, whatever happens


def say(**message: object) -> None:
    print(json.dumps(message), flush=True)


async def main(url: str, namespace: str, agent: int, total: int, work: float, claim_timeout: float) -> None:
    async with Brainless(
        url, namespace=namespace, location=f"worker-{agent}", flush_interval=0.05, claim_timeout=claim_timeout
    ) as db:
        queue = db.queue
        say(ready=agent)
        taken = 0
        in_doubt: list[str] = []  # claims that raised UnavailableError, to be made again
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while loop.time() < deadline:
            waiting = [item.uuid for item in await queue.filter(state="waiting")]
            random.shuffle(waiting)
            candidates = in_doubt + [uuid for uuid in waiting if uuid not in in_doubt]
            if not candidates:
                if len(queue) >= total:
                    break
                await asyncio.sleep(0.02)
                continue
            for uuid in candidates:
                try:
                    won = await queue.update_if(
                        uuid, {"state": "waiting"}, state="processing", agent_id=agent
                    )
                except UnavailableError as exc:
                    say(unavailable=uuid, unknown="outcome is unknown" in str(exc))
                    if uuid not in in_doubt:
                        in_doubt.append(uuid)
                    await asyncio.sleep(0.2)
                    break  # NATS is away: look again at what is waiting once it may be back
                except NotFoundError:
                    won = False
                if uuid in in_doubt:
                    in_doubt.remove(uuid)
                if won:
                    taken += 1
                    say(took=uuid)
                    await asyncio.sleep(work)
        say(done=taken)


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            args[0],
            args[1],
            int(args[2]),
            int(args[3]),
            float(args[4]) if len(args) > 4 else 0.0,
            float(args[5]) if len(args) > 5 else 5.0,
        )
    )
