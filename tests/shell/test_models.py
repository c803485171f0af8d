"""Models between nodes: every model library's entities stored as plain JSON by one node and read back
as declared by another, changes through views (nested ones too) merged, and refused values never stored.

The nodes write only when asked (``flush_interval=60``, then ``flush()``), and read when asked
(``load()``), so each step is one the test makes: no waiting on timers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from brainlessdb import Brainless, SchemaError, meta
from brainlessdb.core.codec import decode_value
from tests.core.test_models import (
    CREATED,
    KINDS,
    REF,
    Agent,
    ALimited,
    Limited,
    MLimited,
    State,
    new_call,
)
from tests.helpers import MakeDb


async def two_nodes(make_db: MakeDb) -> tuple[Brainless, Brainless]:
    return await make_db("prague-1", flush_interval=60), await make_db("brno-1", flush_interval=60)


async def stored_data(db: Brainless, collection: str, uuid: str) -> Any:
    """The fields of the entity version the bucket holds, as any client reads them."""
    entry = await db._storage.get(db.bucket_name(collection), uuid)  # type: ignore[union-attr]
    return decode_value(entry.value, time_ns=entry.time_ns).data


@pytest.mark.parametrize("kind", list(KINDS))
async def test_an_entity_of_each_library_reads_back_as_declared_on_another_node(
    make_db: MakeDb, kind: str
) -> None:
    call, address = KINDS[kind]
    a, b = await two_nodes(make_db)
    made = new_call(call, address, ref=REF, day=dt.date(2026, 3, 1), history=[CREATED], tags=["vip"])
    view = a.call.typed(call).add(made)
    await a.flush()

    assert (await stored_data(a, "call", view.uuid))["created"] == "2026-03-01T08:30:00+00:00"
    copy = b.call.typed(call)
    await copy.load()
    there = copy[view.uuid]
    assert isinstance(there, call)
    assert there.state is State.WAITING and there.created == CREATED and there.ref == REF
    assert there.day == dt.date(2026, 3, 1) and there.history == [CREATED] and there.tags == ["vip"]
    assert there.caller == address(city="Praha") and there == view
    assert b.call.schema == a.call.schema


@pytest.mark.parametrize("kind", list(KINDS))
async def test_changes_through_views_nested_ones_too_are_merged_between_nodes(
    make_db: MakeDb, kind: str
) -> None:
    call, address = KINDS[kind]
    a, b = await two_nodes(make_db)
    here = a.call.typed(call).add(new_call(call, address))
    await a.flush()
    calls_b = b.call.typed(call)
    await calls_b.load()
    there = calls_b[here.uuid]

    # Two keys of one nested object changed at once on two nodes: both survive.
    here.caller.city = "Brno"
    there.caller.zip = "60200"
    await asyncio.gather(a.flush(), b.flush())
    await asyncio.gather(a.flush(), b.flush())
    for node in (a, b):
        await node.call.load()
        assert node.call[here.uuid].caller == address(city="Brno", zip="60200")

    here.state = State.TALKING
    there.created = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    await asyncio.gather(a.flush(), b.flush())
    await asyncio.gather(a.flush(), b.flush())
    for node in (a, b):
        await node.call.load()
        seen = node.call[here.uuid]
        assert seen.state is State.TALKING
        assert seen.created == dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    stored = await stored_data(a, "call", here.uuid)
    assert stored["caller"] == {"city": "Brno", "zip": "60200"} and stored["state"] == "talking"


@pytest.mark.parametrize("model", [Limited, MLimited, ALimited])
async def test_values_the_library_refuses_are_never_stored(make_db: MakeDb, model: type) -> None:
    a, b = await two_nodes(make_db)
    items = a.item.typed(model)
    kept = items.add({"name": "kept", "score": 1})
    with pytest.raises(SchemaError) as refused:
        items.add({"name": "refused", "score": -1})
    assert refused.value.field == "score"
    with pytest.raises(SchemaError):
        kept.score = -2
    await a.flush()

    copy = b.item.typed(model)
    await copy.load()
    assert [item.name for item in await copy.all()] == ["kept"]
    uuid = meta(kept).uuid  # the model declares no uuid field: meta() tells it
    assert copy[uuid].score == 1
    assert await stored_data(a, "item", uuid) == {"name": "kept", "score": 1}


async def test_a_node_that_only_adds_keeps_the_declared_nullability(make_db: MakeDb) -> None:
    a, b = await two_nodes(make_db)
    a.agent.typed(Agent)
    a.agent.add(name="a", team=None)
    await a.flush()
    await b.agent.load()  # b never declares Agent: it adopts the stored schema
    with pytest.raises(SchemaError) as refused:
        b.agent.add(name=None, team="x")
    assert refused.value.field == "name"
    b.agent.add(name="b", team=None)


async def test_a_declaration_made_before_the_stored_schema_was_seen_still_decides(
    make_db: MakeDb,
) -> None:
    a, b = await two_nodes(make_db)
    a.agent.add(name="a", team="x")  # inferred: name takes None
    await a.flush()
    b.agent.typed(Agent)  # before b has read the schema a stored
    await b.flush()
    for node in (a, b):
        await node.agent.load()
        schema = node.agent.schema
        assert schema is not None and not schema.fields["name"].nullable
    with pytest.raises(SchemaError):
        next(iter(a.agent)).name = None
