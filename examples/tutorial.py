"""The tutorial's call-centre queue, from the first call to the last hang-up
(docs/tutorial.md shows it step by step).

Run it against a nats-server with JetStream (``brainless server --data ./nats-data``
starts one):

    python examples/tutorial.py
"""

# --8<-- [start:model]
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from brainlessdb import Brainless, Change

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Call:
    """A caller waiting in a queue, then talking to an agent."""

    caller: str
    queue: str
    priority: int = 0
    state: str = "waiting"
    agent: str | None = None
    uuid: str | None = None  # filled in by the database


# --8<-- [end:model]


async def main() -> None:
    # --8<-- [start:connect]
    prague = Brainless(NATS_URL, namespace="tutorial", location="prague-1")
    await prague.start()
    calls = prague.call.typed(
        Call
    )  # the collection "call", its entities as live Call instances
    # --8<-- [end:connect]

    # --8<-- [start:add]
    first = calls.add(Call(caller="+420 601 000 001", queue="sales"))
    calls.add(Call(caller="+420 601 000 002", queue="support", priority=2))
    calls.add(Call(caller="+420 601 000 003", queue="sales", priority=1))
    assert isinstance(first, Call)
    assert first.uuid is not None
    # --8<-- [end:add]

    # --8<-- [start:query]
    assert len(await calls.filter(queue="sales")) == 2
    assert calls.count(state="waiting") == 3
    urgent = await calls.find(priority__gte=2)  # one match, or None
    assert urgent is not None
    assert urgent.queue == "support"
    by_priority = await calls.order_by("-priority", state="waiting")
    assert [call.priority for call in by_priority] == [2, 1, 0]
    # --8<-- [end:query]

    # --8<-- [start:change]
    first.state = (
        "ringing"  # a tracked change: written to NATS by the background flusher
    )
    assert calls.count(state="waiting") == 2  # queries see it at once
    assert await calls.find(state="ringing") == first
    await (
        prague.flush()
    )  # write every pending change now, rather than within flush_interval
    # --8<-- [end:change]

    # --8<-- [start:second-node]
    brno = Brainless(NATS_URL, namespace="tutorial", location="brno-1")
    await brno.start()  # loads every collection of the namespace from NATS
    brno_calls = brno.call.typed(Call)
    assert len(brno_calls) == 3
    ringing = await brno_calls.find(state="ringing")
    assert ringing is not None
    assert ringing.uuid == first.uuid
    # --8<-- [end:second-node]

    # --8<-- [start:react]
    changes: asyncio.Queue[Change] = asyncio.Queue()
    brno_calls.on_change(
        changes.put_nowait
    )  # called for every change merged from other nodes

    first.state = "answered"  # in Prague...
    first.agent = "jana"
    event = await asyncio.wait_for(changes.get(), timeout=10)  # ...seen in Brno
    assert event.uuid == first.uuid
    assert event.origin == "remote"
    assert event.changes == {"state": ("ringing", "answered"), "agent": (None, "jana")}
    # --8<-- [end:react]

    # --8<-- [start:claim]
    # Two agents, one in each city, reach for the same call at once: one gets it.
    waiting = await calls.order_by("-priority", state="waiting")
    target = waiting[0]
    won = await asyncio.gather(
        calls.update_if(target, {"state": "waiting"}, state="answered", agent="petr"),
        brno_calls.update_if(
            target, {"state": "waiting"}, state="answered", agent="eva"
        ),
    )
    assert sorted(won) == [False, True]
    assert target.agent == (
        "petr" if won[0] else "eva"
    )  # what NATS stored, on both nodes
    # --8<-- [end:claim]

    # --8<-- [start:stop]
    for call in await calls.all():  # every caller hangs up
        calls.delete(call)
    assert len(calls) == 0
    await prague.stop()  # writes what is pending, then disconnects
    await brno.stop()
    # --8<-- [end:stop]


if __name__ == "__main__":
    asyncio.run(main())
