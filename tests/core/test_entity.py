"""Entities: how they are built, and how their fields read as attributes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from brainlessdb import Brainless
from brainlessdb.core.changes import LocalChanges
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.entity import Entity, new_entity, set_slot
from brainlessdb.core.meta import meta
from brainlessdb.core.schema import Schema
from brainlessdb.core.stamps import shared_stamp
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.table import EntityTable
from brainlessdb.errors import SchemaError

STAMP = (1 << 40, "prague-1")
UUID = "8a6b1f5e-0000-1000-8000-000000000001"


class Owner(LocalChanges):
    """An entity owner without a database (enough to build and read entities)."""

    def __init__(self, schema: Schema) -> None:
        clock = HybridLogicalClock("prague-1")
        super().__init__("calls", clock, lambda uuid: None)
        self.table = EntityTable(self, lambda listener, event: None)
        self.attach(self.table, SyncState(self.table, clock, lambda: None))
        self.table.adopt_schema(schema)

    @property
    def schema(self) -> Schema | None:
        return self.table.schema


def collection_of(schema: Schema) -> Owner:
    return Owner(schema)


def test_new_entity_sets_the_state_an_entity_starts_with() -> None:
    """``new_entity()`` gives an ``Entity`` of the collection's own entity class, not yet written."""
    collection = collection_of(Schema.infer({"state": "idle"}))
    entity = new_entity(collection, "u-1", collection.layout.row({"state": "idle"}), STAMP, 7)
    assert isinstance(entity, Entity)
    assert type(entity) is not Entity  # the collection's subclass, holding its fields' readers
    assert (entity._owner, entity.uuid, entity._data, shared_stamp(entity._stamps)) == (
        collection,
        "u-1",
        {"state": "idle"},
        STAMP,
    )
    assert type(entity._stamps) is int  # the one stamp of every field, packed
    assert (meta(entity).revision, entity._version, entity._written, meta(entity).dirty) == (7, 0, 0, False)
    assert type(Entity(collection, "u-2", {"state": "idle"}, STAMP)) is type(entity)


def test_fields_read_as_attributes_defaults_included() -> None:
    """A field reads as an attribute; a declared field the data lacks reads as its default; an unknown
    name is an AttributeError; a field named like a former member of the entity reads as that field."""
    schema = Schema.from_json(
        {
            "v": 1,
            "fields": {
                "state": {"type": "str"},
                "note": {"type": "str", "required": False, "nullable": True, "default": "-"},
                "data": {"type": "int"},
            },
        }
    )
    owner = collection_of(schema)
    entity = new_entity(owner, "u-1", owner.layout.row({"state": "idle", "data": 3}), STAMP)
    assert entity.state == "idle"
    assert entity.note == "-"
    assert entity["data"] == 3
    assert entity.data == 3  # the field, not the entity's former member
    with pytest.raises(AttributeError):
        _ = entity.colour


def test_a_schema_that_grows_gives_new_attributes() -> None:
    """Fields a later schema adds read as attributes on the entities that already exist."""
    collection = collection_of(Schema.infer({"state": "idle"}))
    entity = new_entity(collection, "u-1", collection.layout.row({"state": "idle"}), STAMP)
    with pytest.raises(AttributeError):
        _ = entity.queue
    grown = collection.schema
    assert grown is not None
    collection.table.adopt_schema(
        grown.extend(
            Schema.from_json(
                {
                    "v": 1,
                    "fields": {
                        "state": {"type": "str"},
                        "queue": {"type": "int", "required": False, "default": 5},
                    },
                }
            )
        )
    )
    assert entity.queue == 5


# Fields named like members ------------------------------------------------------------------------

FORMER_MEMBERS = ("data", "dirty", "revision", "to_dict", "as_type", "get")
"""The entity's shortcuts to what ``meta()`` reads: never in a field's way."""
MAPPING_NAMES = ("keys", "items", "values", "copy", "update", "pop", "setdefault", "collection", "meta")


def entity_with_field(name: str, value: Any) -> Entity:
    """An entity of a new collection ``calls`` with fields ``state`` and ``name``, holding ``value`` in
    ``name`` (added to a database never started: no event loop, no storage)."""
    db = Brainless(None, namespace="t", location="prague-1")
    entity: Entity = db.collection("calls").add({"uuid": UUID, "state": "idle", name: value})
    return entity


@pytest.mark.parametrize("name", FORMER_MEMBERS + MAPPING_NAMES)
def test_a_field_named_like_a_member_reads_and_writes_as_an_attribute_and_an_item(name: str) -> None:
    """Whatever its name, a field reads and writes both ways, and no warning is raised (warnings fail the
    tests): the field wins over the former member of the same name."""
    entity = entity_with_field(name, 3)
    assert getattr(entity, name) == 3 and entity[name] == 3
    version = entity._version
    setattr(entity, name, 4)
    assert entity[name] == 4 and getattr(entity, name) == 4
    entity[name] = 5
    assert getattr(entity, name) == 5
    assert meta(entity).data == {"state": "idle", name: 5}
    assert entity._version == version + 2
    assert name in dir(entity)


@pytest.mark.parametrize("name", FORMER_MEMBERS)
def test_a_field_named_like_a_member_holds_any_type_and_refuses_a_wrong_one(name: str) -> None:
    """The field is a field like any other: its dicts come back tracked, its schema is checked."""
    entity = entity_with_field(name, {"city": "Prague"})
    version = entity._version
    getattr(entity, name)["city"] = "Brno"
    assert entity[name] == {"city": "Brno"} and entity._version > version
    with pytest.raises(SchemaError) as refused:
        setattr(entity, name, "not a dict")
    assert refused.value.field == name
    assert meta(entity).get(name) == {"city": "Brno"}


@given(
    name=st.sampled_from(FORMER_MEMBERS + MAPPING_NAMES)
    | st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
    values=st.lists(st.integers(), min_size=1, max_size=4),
)
def test_any_valid_field_name_reads_back_what_was_written_through_either_door(
    name: str, values: list[int]
) -> None:
    """For every valid name, what is written as an attribute reads as an item and the reverse."""
    assume(name != "uuid" and "__" not in name)
    entity = entity_with_field(name, 0)
    for i, value in enumerate(values):
        if i % 2:
            entity[name] = value
        else:
            setattr(entity, name, value)
        assert getattr(entity, name) == entity[name] == meta(entity).get(name) == value


def test_the_uuid_is_the_one_attribute_that_is_not_a_field() -> None:
    entity = entity_with_field("state", "idle")
    assert entity.uuid == UUID
    with pytest.raises(AttributeError):
        entity.uuid = "u-2"
    with pytest.raises(SchemaError):
        entity["uuid"] = "u-2"
    assert entity.uuid == UUID and "uuid" not in meta(entity).data


# meta() ----------------------------------------------------------------------------------------------


def test_meta_reads_the_entitys_own_state_live() -> None:
    entity = entity_with_field("caller", {"city": "Prague"})
    state = meta(entity)
    assert (state.uuid, state.collection, state.revision, state.dirty) == (UUID, "calls", None, True)
    assert state.entity is entity
    set_slot(entity, "_written", entity._version)
    assert not state.dirty
    entity.state = "ringing"
    assert state.dirty  # the same meta object sees the change: it copies nothing
    set_slot(entity, "_written", entity._version)
    set_slot(entity, "_revision", 12)
    assert (state.dirty, state.revision) == (False, 12)
    assert repr(state) == f"<EntityMeta calls/{UUID} revision=12>"


def test_meta_data_and_to_dict_are_plain_copies() -> None:
    entity = entity_with_field("caller", {"city": "Prague"})
    version = entity._version
    data = meta(entity).data
    assert data == {"state": "idle", "caller": {"city": "Prague"}}
    assert type(data["caller"]) is dict
    data["caller"]["city"] = "Brno"
    data["state"] = "gone"
    assert entity.caller == {"city": "Prague"} and entity.state == "idle" and entity._version == version
    whole = meta(entity).to_dict()
    assert list(whole) == ["uuid", "state", "caller"]
    assert whole == {"uuid": UUID, "state": "idle", "caller": {"city": "Prague"}}


def test_meta_get_answers_a_field_or_the_default() -> None:
    entity = entity_with_field("caller", {"city": "Prague"})
    assert meta(entity).get("state") == "idle"
    assert meta(entity).get("colour") is None
    assert meta(entity).get("colour", "red") == "red"
    version = entity._version
    meta(entity).get("caller")["city"] = "Brno"  # tracked, as entity["caller"] is
    assert entity.caller == {"city": "Brno"} and entity._version > version


def test_meta_is_read_only() -> None:
    state = meta(entity_with_field("state", "idle"))
    with pytest.raises(AttributeError):
        state.revision = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        state.colour = "red"  # type: ignore[attr-defined]


@dataclass
class Odd:
    """A model whose fields are named like the entity's former members."""

    data: int
    revision: str
    get: bool
    dirty: list[str] = dataclasses.field(default_factory=list)
    uuid: str | None = None


def test_meta_of_a_typed_view_is_the_meta_of_its_entity_and_as_type_makes_views() -> None:
    db = Brainless(None, namespace="t", location="prague-1")
    view = db.odd.typed(Odd).add(Odd(data=1, revision="r1", get=True))
    state = meta(view)
    entity = state.entity
    assert isinstance(entity, Entity) and db.odd.entities[entity.uuid] is entity
    assert (state.uuid, state.collection, state.dirty) == (view.uuid, "odd", True)
    assert state.to_dict() == {"uuid": view.uuid, "data": 1, "revision": "r1", "get": True, "dirty": []}
    again = meta(entity).as_type(Odd)
    assert isinstance(again, Odd) and again == view and meta(again).entity is entity


def test_fields_named_like_members_work_through_typed_views_and_entities_alike() -> None:
    db = Brainless(None, namespace="t", location="prague-1")
    view = db.odd.typed(Odd).add(Odd(data=1, revision="r1", get=True))
    entity = meta(view).entity
    view.data = 2
    view.dirty.append("x")
    entity.revision = "r2"
    entity["get"] = False
    assert (view.data, view.revision, view.get, view.dirty) == (2, "r2", False, ["x"])
    assert (entity.data, entity.revision, entity.get, entity.dirty) == (2, "r2", False, ["x"])


@pytest.mark.parametrize(
    "wrong", [None, {"state": "idle"}, Odd(data=1, revision="r", get=False), "u-1", Entity]
)
def test_meta_of_anything_else_is_a_type_error(wrong: Any) -> None:
    with pytest.raises(TypeError, match="entity"):
        meta(wrong)


# The spec's shortcuts -------------------------------------------------------------------------------


def test_the_spec_shortcuts_read_what_meta_reads_where_no_field_has_their_name() -> None:
    db = Brainless(None, namespace="t", location="prague-1")
    entity = db.call.add(state="idle", caller={"city": "Prague"})
    expected = {"uuid": entity.uuid, "state": "idle", "caller": {"city": "Prague"}}
    assert entity.data == meta(entity).data == {"state": "idle", "caller": {"city": "Prague"}}
    assert entity.dirty and meta(entity).dirty
    assert entity.revision is None and meta(entity).revision is None
    assert entity.to_dict() == meta(entity).to_dict() == expected
    assert entity.get("state") == "idle" and entity.get("colour", 1) == 1
    view = entity.as_type(Odd)
    assert meta(view).entity is entity


def test_a_field_named_like_a_shortcut_hides_it_but_not_meta() -> None:
    entity = entity_with_field("data", 1)
    assert entity.data == 1
    assert meta(entity).data == {"state": "idle", "data": 1}
    listed = dir(entity)
    assert "data" in listed and "uuid" in listed and "state" in listed
