"""What can never be stored is refused at the call, on both backends; one unwritable entity fails no one else.

- after ``stop()`` (and while stopping, once the final flush has begun) every change is ``NotStartedError``;
- a change that would make an entity's stored value larger than the storage takes is ``SchemaError`` at
  the call, with the entity unchanged and nothing marked dirty;
- an entity that can never be written as it is is raised by the first ``flush()`` that meets it, then
  left to ``stop()``: later callers whose own changes were written are not failed by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from brainlessdb import (
    Brainless,
    FlushError,
    NotStartedError,
    SchemaError,
    TooLargeError,
    meta,
)
from brainlessdb.core.codec import encode_entity
from brainlessdb.core.names import SCHEMA_KEY
from brainlessdb.storage.base import Write
from brainlessdb.storage.memory import MemoryStorage
from tests.helpers import MakeDb

MIB = 1024 * 1024


@dataclass
class Call:
    state: str
    note: str = ""
    tags: list[str] = field(default_factory=list)
    uuid: str | None = None


def stored_size(entity: Any) -> int:
    return len(encode_entity(entity._data, entity._stamps))


def limit_of(db: Brainless) -> int:
    limit = getattr(db._storage, "max_value_size", None)
    assert isinstance(limit, int)
    return limit


# -- after stop() --------------------------------------------------------------------------------


async def test_every_change_after_stop_is_refused_and_nothing_of_it_kept(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(state="new", caller={"city": "Prague"}, tags=["a"])
    typed = db.typed_call.typed(Call)
    view = typed.add(Call(state="new"))
    await db.flush()
    await db.stop()

    before = meta(call).to_dict()
    changes = [
        lambda: db.call.add(state="late", caller={}, tags=[]),
        lambda: setattr(call, "state", "late"),
        lambda: call.__setitem__("state", "late"),
        lambda: call.caller.__setitem__("city", "Brno"),
        lambda: call.tags.append("b"),
        lambda: call.tags.clear(),
        lambda: db.call.delete(call),
        lambda: db.call.__delitem__(call),
        lambda: setattr(view, "state", "late"),
        lambda: view.tags.append("x"),
        lambda: db.other.add(name="a collection first used after stop()"),
    ]
    for change in changes:
        with pytest.raises(NotStartedError):
            change()
    assert meta(call).to_dict() == before and not meta(call).dirty
    assert call.uuid in db.call and len(db.call) == 1
    assert (view.state, view.tags) == ("new", [])

    @dataclass
    class Grown:
        state: str
        note: str = ""
        tags: list[str] = field(default_factory=list)
        extra: int = 0
        uuid: str | None = None

    with pytest.raises(NotStartedError):
        db.typed_call.typed(Grown)  # a schema change
    assert db.typed_call.typed(Call) is typed  # no change: still allowed
    assert "extra" not in (db.typed_call.schema.fields if db.typed_call.schema else {})


async def test_changes_before_start_are_kept_and_written(make_db: MakeDb) -> None:
    db = await make_db(start=False)
    call = db.call.add(state="early")
    call.state = "still before start"
    await db.start()
    await db.flush()
    assert not meta(call).dirty
    other = await make_db("node-2")
    await other.call.load()
    assert other.call[call.uuid].state == "still before start"


async def test_a_database_stopped_before_it_started_refuses_changes_too(make_db: MakeDb) -> None:
    db = await make_db(start=False)
    call = db.call.add(state="early")
    await db.stop()
    with pytest.raises(NotStartedError):
        call.state = "late"
    with pytest.raises(NotStartedError):
        db.call.add(state="late")


class HeldStorage(MemoryStorage):
    """A memory storage whose entity writes wait at a gate (schemas go through)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        if [write.key for write in writes] != [SCHEMA_KEY]:
            self.entered.set()
            await self.gate.wait()
        return await super().write(bucket, writes)


async def test_changes_made_while_stop_writes_its_final_flush_are_refused() -> None:
    storage = HeldStorage()
    db = Brainless(storage, namespace="ns", location="a", flush_interval=3600)
    await db.start()
    call = db.call.add(state="new")
    stopping = asyncio.create_task(db.stop())
    await storage.entered.wait()  # the final flush took its writes
    with pytest.raises(NotStartedError):
        call.state = "too late"
    with pytest.raises(NotStartedError):
        db.call.add(state="too late")
    storage.gate.set()
    await stopping
    assert call.state == "new" and not meta(call).dirty


# -- larger than the storage takes -----------------------------------------------------------------


async def test_an_add_larger_than_the_limit_is_refused_and_nothing_kept(make_db: MakeDb) -> None:
    db = await make_db()
    db.call.add(state="small", note="", info={})
    await db.flush()
    with pytest.raises(SchemaError) as raised:
        db.call.add(state="huge", note="x" * (2 * MIB), info={})
    assert raised.value.field == "note"
    with pytest.raises(SchemaError) as nested:
        db.call.add(state="huge", note="", info={"blob": "y" * (2 * MIB)})
    assert nested.value.field == "info"
    assert len(db.call) == 1
    assert not db.call.sync.has_pending()
    await db.flush()  # nothing left that could fail


async def test_a_change_larger_than_the_limit_is_refused_and_the_entity_unchanged(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(state="new", note="", caller={"city": "Prague"}, tags=[])
    await db.flush()
    before = meta(call).to_dict()
    refused = [
        lambda: setattr(call, "note", "x" * (2 * MIB)),
        lambda: call.__setitem__("caller", {"bio": "x" * (2 * MIB)}),
        lambda: call.caller.__setitem__("bio", "x" * (2 * MIB)),
        lambda: call.caller.update(bio="x" * (2 * MIB)),
        lambda: call.tags.append("x" * (2 * MIB)),
        lambda: call.tags.extend(["x" * MIB, "y" * MIB]),
    ]
    for change in refused:
        with pytest.raises(SchemaError) as raised:
            change()
        assert raised.value.field in ("note", "caller", "tags")
        assert meta(call).to_dict() == before
        assert not meta(call).dirty  # nothing marked dirty
    await db.flush()


async def test_growth_in_small_steps_is_refused_at_the_step_that_passes_the_limit(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(state="new", tags=[])
    tags = call.tags
    step = "t" * 1000

    def grow() -> None:
        for _ in range(2 * MIB // 1000):
            tags.append(step)

    with pytest.raises(SchemaError):
        grow()
    limit = limit_of(db)
    kept = len(call.tags)
    assert stored_size(call) <= limit
    assert stored_size(call) + 1003 > limit  # refused only at the step that would pass it
    assert tags is call.tags and len(tags) == kept  # the refused step left the list as it was
    await db.flush()
    assert not meta(call).dirty
    other = await make_db("node-2")
    await other.call.load()
    assert len(other.call[call.uuid].tags) == kept


async def test_the_check_is_exact_at_the_limit_and_the_value_is_written(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(state="new", note="")
    limit = limit_of(db)
    # The longest note the entity can hold, found by the refusals themselves.
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        try:
            call.note = "n" * middle
        except SchemaError:
            high = middle - 1
        else:
            low = middle
    call.note = "n" * low
    assert limit - 40 < stored_size(call) <= limit
    with pytest.raises(SchemaError):
        call.note = "n" * (low + 1)
    call.state = "ok"  # a small change of an entity at the limit is checked too
    await db.flush()  # and the storage takes it
    assert not meta(call).dirty
    with pytest.raises(SchemaError):
        call.state = "a state far longer than the one it replaces"
    assert call.state == "ok"
    call.note = "short again"
    call.state = "a state far longer than the one it replaces"
    await db.flush()


async def test_a_typed_view_of_a_value_too_large_is_refused(make_db: MakeDb) -> None:
    db = await make_db()
    calls = db.call.typed(Call)
    with pytest.raises(SchemaError):
        calls.add(Call(state="new", note="x" * (2 * MIB)))
    view = calls.add(Call(state="new"))
    with pytest.raises(SchemaError) as raised:
        view.note = "x" * (2 * MIB)
    assert raised.value.field == "note"
    assert view.note == ""


async def test_the_memory_storage_takes_its_limit_from_its_constructor() -> None:
    storage = MemoryStorage(max_value_size=4096)
    db = Brainless(storage, namespace="ns", location="a", flush_interval=3600)
    await db.start()
    try:
        call = db.call.add(state="new", note="")
        call.note = "x" * 3900
        with pytest.raises(SchemaError):
            call.note = "x" * 4100
        await db.flush()
        await storage.open_bucket("raw")
        [result] = await storage.write("raw", [Write("k", b"x" * 4097, 0)])
        assert isinstance(result, TooLargeError) and (result.size, result.limit) == (4097, 4096)
    finally:
        await db.stop()


# -- one entity that can never be written fails no one else ----------------------------------------


async def test_an_unwritable_entity_fails_the_first_flush_only_and_stop_reports_it(make_db: MakeDb) -> None:
    db = await make_db(start=False, flush_interval=3600)
    huge = db.call.add(n=-1, note="x" * (MIB + 100))  # no limit is known before start: accepted
    await db.start()
    small = [db.call.add(n=i, note="small") for i in range(5)]

    with pytest.raises(FlushError) as raised:
        await db.flush()
    assert set(raised.value.errors) == {f"call/{huge.uuid}"}
    assert isinstance(raised.value.errors[f"call/{huge.uuid}"], TooLargeError)
    assert not any(meta(entity).dirty for entity in small) and meta(huge).dirty

    # Other callers: their changes are written, and the entity nobody can write does not fail them.
    small[0].note = "changed"
    await db.flush()
    later = db.call.add(n=100, note="after")
    await db.call.flush()
    assert not meta(small[0]).dirty and not meta(later).dirty
    assert meta(huge).dirty and f"{huge.uuid}" in db.call.sync.errors()
    assert db.stats()["collections"]["call"]["errors"] == 1

    # A change that would leave it too large is refused at the call, as any such change is.
    with pytest.raises(SchemaError):
        huge.n = -2
    # A flush with nothing else to write reports what is stuck.
    with pytest.raises(FlushError) as alone:
        await db.flush()
    assert set(alone.value.errors) == {f"call/{huge.uuid}"}

    # stop() reports everything unwritten, whether raised before or not.
    with pytest.raises(FlushError) as stopped:
        await db.stop()
    assert set(stopped.value.errors) == {f"call/{huge.uuid}"}


async def test_shrinking_an_unwritable_entity_writes_it(make_db: MakeDb) -> None:
    db = await make_db(start=False, flush_interval=3600)
    huge = db.call.add(n=-1, note="x" * (MIB + 100))
    await db.start()
    with pytest.raises(FlushError):
        await db.flush()
    huge.note = "short now"  # changes of an entity over the limit that bring it under are accepted
    await db.flush()
    assert not meta(huge).dirty
    other = await make_db("node-2")
    await other.call.load()
    assert other.call[huge.uuid].note == "short now"


async def test_transient_failures_are_raised_by_every_flush_until_written(make_db: MakeDb) -> None:
    """The rule above is for what can never be written: an outage still fails every flush."""
    db = await make_db(flush_interval=3600)
    call = db.call.add(state="new")
    await db.flush()
    storage = db._storage
    assert storage is not None
    original = storage.write

    async def unavailable(bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        from brainlessdb import UnavailableError

        return [UnavailableError("outage") for _ in writes]

    storage.write = unavailable  # type: ignore[method-assign]
    try:
        call.state = "during the outage"
        for _ in range(3):
            with pytest.raises(FlushError) as raised:
                await db.flush()
            assert set(raised.value.errors) == {f"call/{call.uuid}"}
    finally:
        storage.write = original  # type: ignore[method-assign]
    await db.flush()
    assert not meta(call).dirty
