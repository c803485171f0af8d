"""Models: typed() takes dataclasses, pydantic, msgspec and attrs classes."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import os
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import attrs
import msgspec
import pydantic

from brainlessdb import Brainless, SchemaError, meta

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


# --8<-- [start:model]
class State(enum.Enum):
    WAITING = "waiting"
    TALKING = "talking"


class Caller(pydantic.BaseModel):
    number: str
    city: str = ""


class Call(pydantic.BaseModel):
    state: State  # stored as its value: "waiting"
    direction: Literal["in", "out"] = "in"  # one of these, checked
    started: dt.datetime  # stored as an ISO 8601 string
    trace: UUID | None = None  # stored as its string
    caller: Caller  # stored as a nested object
    tags: list[str] = []
    score: int = pydantic.Field(default=0, ge=0)  # pydantic's own rule
    uuid: str | None = None  # the entity's uuid


# --8<-- [end:model]


# --8<-- [start:libraries]
@dataclass
class Queue:
    name: str
    size: int = 0


class Agent(msgspec.Struct):
    name: str
    level: int = 1


@attrs.define
class Desk:
    floor: int = attrs.field(validator=attrs.validators.ge(0))


# --8<-- [end:libraries]


async def main() -> None:
    async with (
        Brainless(NATS_URL, namespace="models", location="prague-1") as db,
        Brainless(NATS_URL, namespace="models", location="brno-1") as other,
    ):
        # --8<-- [start:add]
        calls = db.call.typed(Call)
        started = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.timezone.utc)
        call = calls.add(
            Call(
                state=State.WAITING,
                started=started,
                caller=Caller(number="+420 777 000 111", city="Praha"),
            )
        )
        assert isinstance(call, Call)
        assert call.state is State.WAITING  # read back as declared
        assert call.started == started
        assert meta(call).data["started"] == "2026-03-01T10:30:00+00:00"  # stored

        call.state = State.TALKING  # a tracked change, stored as "talking"
        call.caller.city = "Brno"  # a change of one key inside caller
        # --8<-- [end:add]

        # --8<-- [start:validation]
        try:
            call.score = -1  # pydantic refuses it: nothing is kept
        except SchemaError as error:
            refused = error
        assert refused.field == "score"
        try:
            calls.add(
                {"state": "ringing", "started": started, "caller": {"number": "1"}}
            )
        except SchemaError as error:
            refused = error
        assert refused.field == "state"
        assert call.score == 0
        assert len(calls) == 1
        # --8<-- [end:validation]

        # --8<-- [start:other-node]
        await db.flush()
        seen = other.call.typed(Call)
        await seen.load()
        there = seen[call.uuid]
        assert there.state is State.TALKING
        assert there.caller.city == "Brno"
        plain = other.call.entities[call.uuid]  # the entity itself: stored JSON
        assert plain.state == "talking"
        assert plain.caller == {
            "number": "+420 777 000 111",
            "city": "Brno",
        }
        # Criteria take the declared types or the stored form alike:
        assert await seen.filter(state=State.TALKING) == [there]
        assert await seen.filter(state="talking") == [there]
        since = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
        assert await seen.filter(started__gte=since) == [there]
        assert await seen.filter(started__gte="2026-03-01T00:00:00+00:00") == [there]
        # --8<-- [end:other-node]

        # --8<-- [start:libraries-use]
        assert db.queue.typed(Queue).add(Queue("support")).size == 0
        assert db.agent.typed(Agent).add(Agent("Ada")).level == 1
        try:
            db.desk.typed(Desk).add(Desk(floor=0)).floor = -1
        except SchemaError as error:
            refused = error
        assert refused.field == "floor"
        # --8<-- [end:libraries-use]

        # --8<-- [start:nullability]
        @dataclass
        class Room:
            name: str  # not Optional: None is refused
            note: str | None = None

        rooms = db.room
        room = rooms.add(name="A", note="quiet")  # inferred: None fits for now
        rooms.typed(Room)  # the declaration decides from here on
        try:
            room.name = None
        except SchemaError as error:
            refused = error
        assert refused.field == "name"
        room.note = None
        # --8<-- [end:nullability]


if __name__ == "__main__":
    asyncio.run(main())
