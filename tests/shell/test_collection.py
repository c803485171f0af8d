"""Collections and entities through a started database: schema, errors, queries, dirty tracking, flushing.

Most tests run on both backends (``make_db``); the ones that must pause or fail writes at a precise moment
wrap the in-memory storage, which honours the same contract as NATS KV.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import brainlessdb
from brainlessdb import (
    Brainless,
    BrainlessError,
    FlushError,
    InvalidNameError,
    NotFoundError,
    NotStartedError,
    QueryError,
    SchemaError,
    UnavailableError,
    meta,
)
from brainlessdb.core.names import SCHEMA_KEY
from brainlessdb.core.query.lookups import LOOKUPS
from brainlessdb.storage.base import Write
from brainlessdb.storage.memory import MemoryStorage
from tests.helpers import MakeDb, eventually

# Schema ----------------------------------------------------------------------------------------


async def test_schema_is_locked_after_first_add(make_db: MakeDb) -> None:
    db = await make_db()
    db.call.add(channel_id="1", queue_id=5, state="new")
    with pytest.raises(SchemaError) as unknown:
        db.call.add(channel_id="2", queue_id=5, state="new", extra=True)
    assert unknown.value.field == "extra"
    with pytest.raises(SchemaError) as missing:
        db.call.add(channel_id="2", state="new")
    assert missing.value.field == "queue_id"
    with pytest.raises(SchemaError) as wrong:
        db.call.add(channel_id="2", queue_id="five", state="new")
    assert (wrong.value.field, wrong.value.expected) == ("queue_id", "int")
    assert len(db.call) == 1


async def test_wrong_type_on_assignment_keeps_the_old_value(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(channel_id="1", queue_id=5)
    await db.flush()
    with pytest.raises(SchemaError):
        call.queue_id = "six"
    with pytest.raises(SchemaError):
        call.unknown = 1
    assert call.queue_id == 5
    assert not meta(call).dirty


async def test_values_that_are_not_json_are_refused(make_db: MakeDb) -> None:
    db = await make_db()
    with pytest.raises(SchemaError):
        db.call.add(when=object())
    with pytest.raises(SchemaError):
        db.call.add(ratio=float("nan"))
    with pytest.raises(SchemaError):
        db.call.add(tags={1, 2})
    assert len(db.call) == 0


async def test_typed_schema_fills_defaults_and_checks_types(make_db: MakeDb) -> None:
    @dataclass
    class Agent:
        name: str
        skills: list[str] = field(default_factory=list)
        level: int = 1
        uuid: str | None = None

    db = await make_db()
    agents = db.agent.typed(Agent)
    eva = agents.add(name="Eva")
    assert (eva.skills, eva.level) == ([], 1)
    with pytest.raises(SchemaError):
        agents.add(name="Adam", level="high")
    with pytest.raises(SchemaError):
        agents.add(level=2)


async def test_typed_with_an_incompatible_class_is_a_schema_error(make_db: MakeDb) -> None:
    @dataclass
    class Wrong:
        channel_id: int

    db = await make_db()
    db.call.add(channel_id="1")
    with pytest.raises(SchemaError):
        db.call.typed(Wrong)


# Errors ----------------------------------------------------------------------------------------


async def test_missing_uuid_is_a_key_error(make_db: MakeDb) -> None:
    db = await make_db()
    with pytest.raises(KeyError):
        db.call["550e8400-e29b-41d4-a716-446655440000"]
    with pytest.raises(NotFoundError) as missing:
        del db.call["550e8400-e29b-41d4-a716-446655440000"]
    assert missing.value.uuid == "550e8400-e29b-41d4-a716-446655440000"
    assert db.call.delete("550e8400-e29b-41d4-a716-446655440000") is False


async def test_every_error_is_a_brainless_error() -> None:
    for error in (SchemaError, QueryError, NotFoundError, FlushError, InvalidNameError, UnavailableError):
        assert issubclass(error, BrainlessError)
    assert issubclass(SchemaError, ValueError)
    assert issubclass(NotStartedError, RuntimeError)


async def test_invalid_names_fail_clearly_and_alone(make_db: MakeDb) -> None:
    with pytest.raises(InvalidNameError):
        Brainless(None, namespace="my.app")
    db = await make_db()
    with pytest.raises(InvalidNameError):
        db.collection("bad-name")
    with pytest.raises(InvalidNameError):
        db.collection("*")
    call = db.call.add(channel_id="1")
    await db.flush()
    assert not meta(call).dirty


async def test_private_names_are_not_collections() -> None:
    db = Brainless(None)
    with pytest.raises(AttributeError):
        db._private  # noqa: B018
    assert db.collections == {}


async def test_module_level_api_before_setup_is_not_started() -> None:
    with pytest.raises(NotStartedError):
        brainlessdb.call  # noqa: B018
    with pytest.raises(NotStartedError):
        await brainlessdb.flush()


async def test_unknown_lookup_is_a_query_error(make_db: MakeDb) -> None:
    db = await make_db()
    db.call.add(age=30, caller={"city": "Prague"})
    with pytest.raises(QueryError):
        await db.call.filter(age__gtt=5)
    with pytest.raises(QueryError):
        await db.call.filter(nope=1)
    with pytest.raises(QueryError):
        await db.call.order_by("-")


@dataclass
class Tagged:
    tag: Any
    uuid: str | None = None


@pytest.mark.parametrize("typed", [False, True])
async def test_find_on_one_field_answers_as_the_first_match_of_filter(make_db: MakeDb, typed: bool) -> None:
    """find()'s fast path (one exact criterion on a field) answers as the general path, also after changes."""
    db = await make_db()
    calls: Any = db.call.typed(Tagged) if typed else db.call
    values: list[Any] = [None, "a", "b", 1, 1.0, True, False, 0, {"x": 1}, [1, 2], ""]
    added = [calls.add(tag=value) for value in values * 2]

    async def check() -> None:
        assert await calls.find(tag__exact=1) == await calls.find(tag=1)
        for value in [*values, "zz", 2, 0.0]:
            matches = await calls.filter(tag=value)
            scan = [c for c in await calls.all() if LOOKUPS["exact"](c.tag, value)]
            assert sorted(c.uuid for c in matches) == sorted(c.uuid for c in scan)
            found = await calls.find(tag=value)
            assert (found and found.uuid) == (matches[0].uuid if matches else None)

    await check()
    added[1].tag = "zz"
    added[3].tag = {"x": 1}
    calls.delete(added[4])
    calls.delete(added[11])
    await check()
    uuid = added[5].uuid
    assert (await calls.find(uuid=uuid)).uuid == uuid


# Known defects of the first published version --------------------------------------------------


async def test_lt_lookup_is_not_a_nested_path(make_db: MakeDb) -> None:
    db = await make_db()
    db.session.add(token="old", last_seen=100.0)
    db.session.add(token="new", last_seen=900.0)
    stale = await db.session.filter(last_seen__lt=500.0)
    assert [s.token for s in stale] == ["old"]


async def test_descending_strings_with_a_common_prefix(make_db: MakeDb) -> None:
    db = await make_db()
    for name in ("a", "abc", "ab"):
        db.user.add(name=name)
    assert [u.name for u in await db.user.order_by("-name")] == ["abc", "ab", "a"]
    assert [u.name for u in await db.user.order_by("name")] == ["a", "ab", "abc"]


async def test_filtering_on_a_dict_field_matches_by_value(make_db: MakeDb) -> None:
    db = await make_db()
    db.call.add(caller={"city": "Prague"}, tags=["a"])
    db.call.add(caller={"city": "Brno"}, tags=["b"])
    found = await db.call.filter(caller={"city": "Brno"})
    assert [c.caller["city"] for c in found] == ["Brno"]
    assert len(await db.call.filter(tags=["a"])) == 1


async def test_nested_none_matches_only_none(make_db: MakeDb) -> None:
    db = await make_db()
    db.call.add(caller={"city": None})
    db.call.add(caller={"city": "Brno"})
    db.call.add(caller={})
    assert len(await db.call.filter(caller__city=None)) == 1
    assert len(await db.call.filter(caller__city__isnull=True)) == 2


async def test_nested_mutation_is_tracked_and_indexed(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(caller={"city": "Prague", "tags": []})
    assert await db.call.find(caller__city="Prague") is call
    await db.flush()
    assert not meta(call).dirty

    call.caller["city"] = "Brno"
    call.caller["tags"].append("vip")
    assert meta(call).dirty
    assert await db.call.find(caller__city="Prague") is None
    assert await db.call.find(caller__city="Brno") is call
    await db.flush()
    assert not meta(call).dirty

    other = await make_db("node-2")
    await other.call.load()
    copy = other.call[call.uuid]
    assert copy.caller == {"city": "Brno", "tags": ["vip"]}


async def test_a_replaced_container_no_longer_counts(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(caller={"city": "Prague"})
    old = call.caller
    call.caller = {"city": "Brno"}
    await db.flush()
    old["city"] = "Ostrava"
    assert not meta(call).dirty
    assert call.caller == {"city": "Brno"}


async def test_load_never_overwrites_unflushed_changes(make_db: MakeDb) -> None:
    db = await make_db(flush_interval=60)
    kept = db.call.add(channel_id="1", state="new")
    gone = db.call.add(channel_id="2", state="new")
    await db.flush()

    kept.state = "changed locally"
    db.call.delete(gone)
    await db.call.load()
    assert (await db.call.get(kept.uuid)).state == "changed locally"
    assert await db.call.get(gone.uuid) is None
    assert [c.channel_id for c in await db.call.filter(state="new")] == []
    assert meta(kept).dirty


# Flushing --------------------------------------------------------------------------------------


class GatedStorage(MemoryStorage):
    """A real in-memory storage whose writes can be held at a gate, counted, or failed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.writes: list[Write] = []
        self.fail_next = 0

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        self.entered.set()
        await self.gate.wait()
        if [write.key for write in writes] == [SCHEMA_KEY]:
            return await super().write(bucket, writes)
        if self.fail_next > 0:
            self.fail_next -= 1
            return [UnavailableError("outage") for _ in writes]
        self.writes.extend(writes)
        return await super().write(bucket, writes)


@contextlib.asynccontextmanager
async def gated_db(storage: GatedStorage, flush_interval: float) -> AsyncIterator[Brainless]:
    """A database started on ``storage``, stopped at the end even when the test fails (gate opened)."""
    db = Brainless(storage, namespace="ns", location="a", flush_interval=flush_interval)
    await db.start()
    try:
        yield db
    finally:
        storage.gate.set()
        await db.stop()


async def test_change_during_an_inflight_write_is_written_once_more() -> None:
    storage = GatedStorage()
    async with gated_db(storage, flush_interval=60) as db:
        call = db.call.add(state="new")
        await db.flush()
        storage.writes.clear()

        storage.gate.clear()
        storage.entered.clear()
        call.state = "v1"
        flushing = asyncio.create_task(db.flush())
        await storage.entered.wait()
        call.state = "v2"
        storage.gate.set()
        await flushing
        assert meta(call).dirty
        await db.flush()
        assert not meta(call).dirty
        assert len(storage.writes) == 2
        stored = await storage.get("ns-call", call.uuid)
        assert stored is not None and b'"v2"' in stored.value


async def test_overlapping_flushes_write_each_change_once() -> None:
    storage = GatedStorage()
    async with gated_db(storage, flush_interval=0) as db:
        storage.gate.clear()
        calls = [db.call.add(state=str(i)) for i in range(20)]
        await asyncio.sleep(0.01)
        manual = [asyncio.create_task(db.flush()) for _ in range(3)]
        await asyncio.sleep(0.01)
        storage.gate.set()
        await asyncio.gather(*manual)
        assert not any(meta(c).dirty for c in calls)
        keys = [w.key for w in storage.writes]
        assert sorted(keys) == sorted(c.uuid for c in calls)


async def test_background_flush_survives_errors_and_reports_them() -> None:
    storage = GatedStorage()
    async with gated_db(storage, flush_interval=0.01) as db:
        storage.gate.clear()
        call = db.call.add(state="new")
        await asyncio.sleep(0.05)
        storage.fail_next = 3
        storage.gate.set()
        with pytest.raises(FlushError):
            await db.call.flush()
        await eventually(lambda: not meta(call).dirty)
        assert db.stats()["flush"]["errors"] >= 1

        storage.fail_next = 1000
        call.state = "unwritable"
        with pytest.raises(FlushError) as failed:
            await db.flush()
        assert isinstance(next(iter(failed.value.errors.values())), UnavailableError)
        storage.fail_next = 0
        await db.flush()
        assert not meta(call).dirty


@pytest.mark.parametrize(
    "change",
    [
        lambda call: call.caller.__setitem__("when", object()),
        lambda call: call.caller.__setitem__(1, "a key that is not a string"),
        lambda call: call.caller.update(city="Brno", when={1, 2}),
        lambda call: call.caller.setdefault("when", float("nan")),
        lambda call: call.tags.append(("a", "tuple")),
        lambda call: call.tags.extend(["b", "\ud800"]),
        lambda call: call.tags.insert(0, b"bytes"),
        lambda call: call.tags.__setitem__(slice(0, 1), [object()]),
        lambda call: call.caller["more"].__setitem__("deep", [1, {2, 3}]),
    ],
    ids=["setitem", "key", "update", "setdefault", "append", "extend", "insert", "slice", "deeper"],
)
async def test_a_nested_change_json_cannot_hold_raises_at_once_and_changes_nothing(
    make_db: MakeDb, change: Any
) -> None:
    """A value put inside a dict or list field is checked like an assignment: a ``SchemaError`` at
    once, and the field as it was (not a failure at the next flush)."""
    db = await make_db(flush_interval=60)
    call = db.call.add(caller={"city": "Prague", "more": {}}, tags=["a"])
    await db.flush()
    with pytest.raises(SchemaError):
        change(call)
    assert call.caller == {"city": "Prague", "more": {}}
    assert call.tags == ["a"]
    assert not meta(call).dirty
    call.caller["city"] = "Ostrava"
    call.tags.append({"a": [1, 2.5, None, True]})
    await db.flush()
    other = await make_db("node-2")
    copy = await other.call.get(call.uuid)
    assert copy is not None and meta(copy).data == {
        "caller": {"city": "Ostrava", "more": {}},
        "tags": ["a", {"a": [1, 2.5, None, True]}],
    }


async def test_stop_flushes_what_is_pending(make_db: MakeDb) -> None:
    db = await make_db(flush_interval=60)
    call = db.call.add(state="new")
    await db.stop()
    assert not meta(call).dirty
    other = await make_db("node-2")
    assert (await other.call.get(call.uuid)) is not None


async def test_repr_shows_state(make_db: MakeDb) -> None:
    db = await make_db(flush_interval=60)
    db.call.add(channel_id="1")
    await db.call.find(channel_id="1")
    assert repr(db.call) == "<Collection call: 1 entities, 1 pending, indexes=[channel_id]>"
    await db.flush()
    assert repr(db.call) == "<Collection call: 1 entities, 0 pending, indexes=[channel_id]>"


async def test_add_with_an_existing_uuid_is_refused(make_db: MakeDb) -> None:
    db = await make_db()
    call = db.call.add(channel_id="1")
    with pytest.raises(brainlessdb.DuplicateError):
        db.call.add(uuid=call.uuid, channel_id="2")
    with pytest.raises(SchemaError):
        db.call.add(uuid="not-a-uuid", channel_id="2")
    deleted_uuid = call.uuid
    db.call.delete(call)
    with pytest.raises(brainlessdb.DuplicateError):
        db.call.add(uuid=deleted_uuid, channel_id="3")


def test_the_readme_lists_every_lowercase_name_of_the_package_brainlessdb_dot_name_cannot_reach() -> None:
    """The module names in the README are exactly the package's own lowercase names, once every one of its
    modules is imported (a submodule becomes an attribute of the package): ``brainlessdb.events`` is the
    module, so a collection ``events`` is reached with ``get_db().collection("events")``."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- module names")[1].split("<!-- end of module names")[0]
    listed = set(re.findall(r"`([a-z_]+)`", block))
    package = Path(brainlessdb.__file__).parent
    for module in package.iterdir():
        if module.name.startswith("_") or not (module.suffix == ".py" or (module / "__init__.py").exists()):
            continue
        importlib.import_module(f"brainlessdb.{module.stem}")
    own = {name for name in vars(brainlessdb) if not name.startswith("_") and name.islower()}
    assert listed == own


def test_the_readme_lists_every_name_db_dot_name_cannot_reach() -> None:
    """The reserved names in the README are exactly the database's own public attributes."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- reserved names")[1].split("<!-- end of reserved names")[0]
    listed = set(re.findall(r"`([a-z_]+)`", block))
    db = Brainless(None, namespace="reserved", location="here")
    own = {name for name in set(dir(db)) | set(vars(db)) if not name.startswith("_")}
    assert listed == own
    assert db.collection("lease").name == "lease"  # a collection with a reserved name is still reachable
