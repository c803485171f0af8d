"""Queries and claims take the values a model declares: an Enum member, a datetime, a date or a UUID in
criteria is compared in the form typed fields store it, and ``update_if`` converts and validates its
changes through the model, on both backends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid as uuids

import pytest

from brainlessdb import SchemaError, meta
from tests.helpers import MakeDb


class State(enum.Enum):
    WAITING = "waiting"
    TALKING = "talking"
    DONE = "done"


PRAGUE = dt.timezone(dt.timedelta(hours=1))


@dataclasses.dataclass
class Call:
    state: State
    created: dt.datetime
    day: dt.date
    ref: uuids.UUID
    uuid: str | None = None


def call(state: State, hour: int) -> Call:
    created = dt.datetime(2026, 3, 1, hour, 0, tzinfo=PRAGUE)
    return Call(state=state, created=created, day=created.date(), ref=uuids.uuid4())


async def test_criteria_take_enum_members_datetimes_dates_and_uuids(make_db: MakeDb) -> None:
    db = await make_db("prague-1")
    calls = db.call.typed(Call)
    early, late = calls.add(call(State.WAITING, 8)), calls.add(call(State.TALKING, 12))

    assert await calls.filter(state=State.WAITING) == [early]
    assert await calls.filter(state__in=[State.TALKING, State.DONE]) == [late]
    # Aware datetimes are stored in UTC (08:00 in Prague is 07:00 UTC), and compared so.
    noon_utc = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.timezone.utc)
    assert await calls.filter(created__lt=noon_utc) == [early]
    assert await calls.order_by("-created", created__gte=dt.datetime(2026, 3, 1, 7, tzinfo=PRAGUE)) == [
        late,
        early,
    ]
    assert await calls.find(day=dt.date(2026, 3, 1)) in (early, late)
    assert await calls.find(ref=late.ref) == late
    assert calls.count(state=State.DONE) == 0


async def test_update_if_converts_and_checks_its_changes_through_the_model(make_db: MakeDb) -> None:
    db = await make_db("prague-1")
    calls = db.call.typed(Call)
    item = calls.add(call(State.WAITING, 8))
    moved = dt.datetime(2026, 3, 2, 9, 0, tzinfo=PRAGUE)

    assert await calls.update_if(item, {"state": State.WAITING}, state=State.TALKING, created=moved)
    assert item.state is State.TALKING and item.created == moved
    assert meta(item).data["state"] == "talking"
    assert meta(item).data["created"] == "2026-03-02T08:00:00+00:00"
    assert not await calls.update_if(item, {"state": State.WAITING}, state=State.DONE)

    with pytest.raises(SchemaError) as refused:
        await calls.update_if(item, {"state": State.TALKING}, state="on hold")
    assert refused.value.field == "state"
    assert item.state is State.TALKING
