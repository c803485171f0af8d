"""What mypy makes of a typed collection: checked by ``test_typing.py``, never run.

Each ``reveal_type`` is a line of mypy's output that the test compares with what it should say.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from typing_extensions import reveal_type

from brainlessdb import Brainless


@dataclass
class Call:
    state: str
    queue: int = 0


class Agent(msgspec.Struct):
    name: str


async def usage(db: Brainless) -> None:
    calls = db.call.typed(Call)
    reveal_type(calls)
    reveal_type(calls.add(Call(state="new")))
    reveal_type(await calls.get("uuid"))
    reveal_type(await calls.find(state="new"))
    reveal_type(await calls.filter(state="new"))
    reveal_type(await calls.all())
    reveal_type(calls["uuid"])
    agents = db.agent.typed(Agent)
    reveal_type(await agents.filter(name="a"))
    call = calls.add(state="new")
    call.queue = "7"  # a wrong type, which mypy reports
