"""Entities: how they are built."""

from __future__ import annotations

from typing import Any, cast

from brainlessdb.entity import Entity, new_entity

STAMP = (1 << 40, "prague-1")


def test_new_entity_builds_the_same_entity_as_the_constructor() -> None:
    """``new_entity()`` (the fast way) gives an ``Entity`` with the same state as ``Entity(...)``."""
    collection = cast(Any, object())
    slow = Entity(collection, "u-1", {"state": "idle"}, STAMP, 7)
    fast = new_entity(collection, "u-1", {"state": "idle"}, STAMP, 7)
    assert type(fast) is Entity
    for entity in (slow, fast):
        assert (entity._collection, entity.uuid, entity._data, entity._stamps) == (
            collection,
            "u-1",
            {"state": "idle"},
            STAMP,
        )
        assert (entity.revision, entity._version, entity._written, entity.dirty) == (7, 0, 0, False)
    assert fast == slow
