"""Entities: how they are built, and how their fields read as attributes."""

from __future__ import annotations

import pytest

from brainlessdb.core.changes import LocalChanges
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.entity import Entity, new_entity
from brainlessdb.core.schema import Schema
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.table import EntityTable

STAMP = (1 << 40, "prague-1")


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
    entity = new_entity(collection, "u-1", {"state": "idle"}, STAMP, 7)
    assert isinstance(entity, Entity)
    assert type(entity) is not Entity  # the collection's subclass, holding its fields' readers
    assert (entity._owner, entity.uuid, entity._data, entity._stamps) == (
        collection,
        "u-1",
        {"state": "idle"},
        STAMP,
    )
    assert (entity.revision, entity._version, entity._written, entity.dirty) == (7, 0, 0, False)
    assert type(Entity(collection, "u-2", {"state": "idle"}, STAMP)) is type(entity)


def test_fields_read_as_attributes_defaults_included() -> None:
    """A field reads as an attribute; a declared field the data lacks reads as its default; an unknown
    name is an AttributeError; a field named like an entity attribute is read with ``[]``."""
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
    entity = new_entity(collection_of(schema), "u-1", {"state": "idle", "data": 3}, STAMP)
    assert entity.state == "idle"
    assert entity.note == "-"
    assert entity["data"] == 3
    assert entity.data == {"state": "idle", "data": 3}  # the entity's own attribute wins
    with pytest.raises(AttributeError):
        _ = entity.colour


def test_a_schema_that_grows_gives_new_attributes() -> None:
    """Fields a later schema adds read as attributes on the entities that already exist."""
    collection = collection_of(Schema.infer({"state": "idle"}))
    entity = new_entity(collection, "u-1", {"state": "idle"}, STAMP)
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
