"""The quick start of the documentation's home page: a typed collection, changes,
queries."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from brainlessdb import Brainless

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Call:
    channel_id: str
    state: str
    caller: dict[str, str] = field(default_factory=dict)
    agent_id: int | None = None
    uuid: str | None = None  # filled in by the database


async def main() -> None:
    async with Brainless(NATS_URL, namespace="quickstart", location="prague-1") as db:
        calls = db.call.typed(Call)  # results are live Call instances
        call = calls.add(
            Call(channel_id="chan-1", state="ringing", caller={"city": "Prague"})
        )
        calls.add(Call(channel_id="chan-2", state="answered", agent_id=7))

        call.state = "answered"  # every change is tracked ...
        call.caller["city"] = "Brno"  # ... nested ones too
        call.agent_id = 3

        assert await calls.find(caller__city="Brno") == call
        busy = await calls.order_by("-agent_id", state="answered")
        assert [c.agent_id for c in busy] == [7, 3]

        for c in busy:  # leave the namespace empty for the next run
            calls.delete(c)


if __name__ == "__main__":
    asyncio.run(main())
