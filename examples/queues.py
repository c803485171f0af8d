"""Queues and claims (docs/guides/queues.md): work taken once, leases, counters.

Two nodes share one queue. Workers on both take items with ``update_if``, so no
item is taken twice; a lease lets one node at a time dispatch; counters add up
across nodes.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from brainlessdb import Brainless, Collection

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


# --8<-- [start:model]
@dataclass
class Job:
    priority: int
    caller_id: str
    state: str = "waiting"
    agent_id: int | None = None
    attempts: int = 0
    uuid: str | None = None


# --8<-- [end:model]


# --8<-- [start:take]
async def take_next(queue: Collection[Job], agent_id: int) -> Job | None:
    """The most urgent waiting job, taken by this agent; None when no job waits."""
    for job in await queue.order_by("-priority", state="waiting"):
        if await queue.update_if(
            job, {"state": "waiting"}, state="taken", agent_id=agent_id
        ):
            return job  # only this node got True for it: the job is this agent's
        # another node took it first: try the next one
    return None


# --8<-- [end:take]


# --8<-- [start:workers]
async def worker(
    queue: Collection[Job], agent_id: int, done: list[tuple[int, str]]
) -> None:
    while (job := await take_next(queue, agent_id)) is not None:
        done.append((agent_id, job.caller_id))


async def share_the_work(prague: Brainless, brno: Brainless) -> None:
    queue = prague.job.typed(Job)
    for number in range(20):
        queue.add(Job(priority=number % 3, caller_id=f"caller-{number}"))
    await prague.synced()  # written, and Brno in step with it:
    await brno.synced()  # no node starts from a queue that is behind

    done: list[tuple[int, str]] = []
    await asyncio.gather(
        worker(prague.job.typed(Job), 1, done),
        worker(prague.job.typed(Job), 2, done),
        worker(brno.job.typed(Job), 3, done),
    )
    taken = [caller for _, caller in done]
    assert sorted(taken) == sorted(
        f"caller-{number}" for number in range(20)
    )  # each exactly once
    # --8<-- [end:workers]


# --8<-- [start:lease]
async def dispatch_alone(prague: Brainless, brno: Brainless) -> None:
    lease = await prague.lease("dispatcher", ttl=5)
    assert lease is not None  # Prague dispatches ...
    assert await brno.lease("dispatcher", ttl=5) is None  # ... so Brno may not
    first_token = lease.token
    await lease.renew()  # within ttl, or the lease is lost (LeaseLostError)
    await lease.release()

    taken = await brno.lease("dispatcher", ttl=5)  # free again: Brno takes it
    assert taken is not None
    async with taken:  # released at the end of the block
        assert taken.token > first_token  # a new holder's fencing token is greater
        # hand taken.token to what the lease protects: it refuses older tokens
    # --8<-- [end:lease]


# --8<-- [start:counter]
async def count_attempts(prague: Brainless, brno: Brainless) -> None:
    here, there = prague.job.typed(Job), brno.job.typed(Job)
    job = here.add(Job(priority=0, caller_id="caller-retry"))
    await prague.synced()
    await brno.synced()

    for _ in range(3):
        here.increment(job, "attempts")  # on both nodes at once: every increment counts
        there.increment(job, "attempts")
    await asyncio.gather(prague.synced(), brno.synced())  # both written ...
    await asyncio.gather(prague.synced(), brno.synced())  # ... and read by the other

    assert job.attempts == 6
    on_brno = await there.get(job)
    assert on_brno is not None
    assert on_brno.attempts == 6
    # --8<-- [end:counter]


async def main() -> None:
    async with (
        Brainless(NATS_URL, namespace="guide-queues", location="prague-1") as prague,
        Brainless(NATS_URL, namespace="guide-queues", location="brno-1") as brno,
    ):
        await share_the_work(prague, brno)
        await dispatch_alone(prague, brno)
        await count_attempts(prague, brno)
        for job in await prague.job.all():  # leave the namespace empty for the next run
            prague.job.delete(job)


if __name__ == "__main__":
    asyncio.run(main())
