"""Typed views refuse a name that is not a field, as untyped entities do, instead of keeping it unstored.

Entities come from a database that is never started (``Brainless(None, ...)``): no event loop, no storage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from brainlessdb import Brainless, SchemaError
from brainlessdb.core.meta import meta
from brainlessdb.core.views import entity_of


@dataclass
class Call:
    state: str
    agent_id: int = 0
    uuid: str | None = None

    @property
    def label(self) -> str:
        return self.state.upper()

    @label.setter
    def label(self, text: str) -> None:
        self.state = text.lower()

    @property
    def shouting(self) -> bool:
        return self.state.isupper()


@dataclass(frozen=True)
class FrozenCall:
    state: str
    uuid: str | None = None


def database() -> Brainless:
    return Brainless(None, namespace="t", location="prague-1")


def test_a_typo_on_a_typed_view_is_a_schema_error_naming_the_field() -> None:
    db = database()
    call = db.call.typed(Call).add(Call(state="new"))
    entity = entity_of(call)
    assert entity is not None
    before = meta(entity).to_dict()
    version = entity._version
    with pytest.raises(SchemaError) as raised:
        call.agentid = 7  # type: ignore[attr-defined]
    assert raised.value.field == "agentid"
    assert "agent_id" in str(raised.value)  # the fields are listed
    assert meta(entity).to_dict() == before
    assert entity._version == version  # nothing marked dirty
    assert not hasattr(call, "agentid")


def test_untyped_entities_and_typed_views_refuse_an_unknown_name_alike() -> None:
    db = database()
    call = db.call.typed(Call).add(Call(state="new"))
    entity = entity_of(call)
    assert entity is not None
    with pytest.raises(SchemaError) as untyped:
        entity.agentid = 7
    with pytest.raises(SchemaError) as typed:
        call.agentid = 7  # type: ignore[attr-defined]
    assert untyped.value.field == typed.value.field == "agentid"


def test_fields_and_real_attributes_of_the_class_are_still_set() -> None:
    db = database()
    call = db.call.typed(Call).add(Call(state="new"))
    call.agent_id = 3
    call.label = "RINGING"  # a property with a setter: the user's code runs, and sets a field
    assert (call.agent_id, call.state) == (3, "ringing")
    entity = entity_of(call)
    assert entity is not None and meta(entity).data == {"state": "ringing", "agent_id": 3}
    with pytest.raises(AttributeError):
        call.shouting = True  # type: ignore[misc]  # a property without a setter stays read-only
    call.uuid = call.uuid  # the uuid may be set to itself
    with pytest.raises(AttributeError):
        call.uuid = "another"


def test_views_of_a_frozen_dataclass_stay_read_only_and_refuse_typos() -> None:
    db = database()
    call = db.call.typed(FrozenCall).add(FrozenCall(state="new"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.state = "ringing"  # type: ignore[misc]
    with pytest.raises(SchemaError) as raised:
        call.stat = "ringing"  # type: ignore[attr-defined]
    assert raised.value.field == "stat"
    assert call.state == "new"
