"""Typed views on their own: the generated subclass of the user's dataclass, and ``fields_of``.

Entities come from a database that is never started (``Brainless(None, ...)``): adding, typing and reading
need no event loop and no storage.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from brainlessdb import Brainless, Entity, SchemaError
from brainlessdb.core.meta import meta
from brainlessdb.core.views import TypedView, entity_of, fields_of, make_view, make_views, view_class


@dataclass
class Call:
    """A call waiting in a queue."""

    state: str
    queue: int = 0
    tags: list[str] = field(default_factory=list)
    uuid: str | None = None


@dataclass
class CallWithNote:
    state: str
    note: str = "-"
    uuid: str | None = None


def database() -> Brainless:
    return Brainless(None, namespace="t", location="prague-1")


def typed_call(**fields: Any) -> tuple[Brainless, Call, Entity]:
    """A database whose ``call`` collection is typed by ``Call``, a call added, its view and its entity."""
    db = database()
    view = db.call.typed(Call).add(Call(state="new", **fields))
    entity = entity_of(view)
    assert entity is not None
    return db, view, entity


def test_the_view_class_of_a_dataclass_is_made_once() -> None:
    assert view_class(Call) is view_class(Call)
    assert view_class(Call) is not view_class(CallWithNote)


def test_the_view_class_is_a_subclass_of_the_dataclass_that_looks_like_it() -> None:
    made = view_class(Call)
    assert issubclass(made, Call) and issubclass(made, TypedView)
    assert (made.__name__, made.__qualname__, made.__module__, made.__doc__) == (
        Call.__name__,
        Call.__qualname__,
        Call.__module__,
        Call.__doc__,
    )
    assert [item.name for item in dataclasses.fields(made)] == ["state", "queue", "tags", "uuid"]


@pytest.mark.parametrize("wrong", [dict, Call("new"), "Call"])
def test_only_a_dataclass_has_a_view_class(wrong: Any) -> None:
    with pytest.raises(TypeError):
        view_class(wrong)


def test_a_typed_add_gives_an_instance_of_the_dataclass_backed_by_the_entity() -> None:
    db, view, entity = typed_call(tags=["vip"])
    assert isinstance(view, Call) and type(view) is view_class(Call)
    assert isinstance(entity, Entity)
    assert db.call.entities[entity.uuid] is entity
    assert (view.state, view.queue, view.tags, view.uuid) == ("new", 0, ["vip"], entity.uuid)
    assert view == Call(state="new", queue=0, tags=["vip"], uuid=entity.uuid)
    assert repr(view) == repr(Call(state="new", queue=0, tags=["vip"], uuid=entity.uuid))


def test_a_view_reads_the_entity_as_it_is_now() -> None:
    _, view, entity = typed_call()
    entity.state = "ringing"
    entity.tags.append("vip")
    assert view.state == "ringing"
    assert view.tags == ["vip"]


def test_writing_a_view_field_changes_the_entity_as_an_assignment_would() -> None:
    _, view, entity = typed_call()
    view.state = "ringing"
    view.tags.append("vip")
    assert (entity.state, entity.tags) == ("ringing", ["vip"])
    assert meta(entity).dirty
    with pytest.raises(SchemaError) as refused:
        view.queue = "five"  # type: ignore[assignment]
    assert refused.value.field == "queue"
    assert entity.queue == 0 and view.queue == 0


def test_a_view_field_the_entity_lacks_reads_as_the_dataclass_default() -> None:
    db = database()
    entity = db.call.add(state="new")
    view = make_view(CallWithNote, entity)
    assert "note" not in meta(entity).data
    assert view.note == "-"
    assert view.state == "new"


def test_the_uuid_of_a_view_is_the_entitys_and_refuses_to_change() -> None:
    db, view, entity = typed_call()
    view.uuid = entity.uuid  # the same value: allowed (a dataclass __init__ does it)
    with pytest.raises(AttributeError):
        view.uuid = "8a6b1f5e-0000-1000-8000-000000000001"
    assert view.uuid == entity.uuid
    assert db.call.entities[entity.uuid] is entity


def test_views_of_many_entities_come_in_their_order_each_backed_by_its_entity() -> None:
    db = database()
    entities = [db.call.add(state=str(i)) for i in range(5)]
    views = make_views(Call, reversed(entities))
    assert [entity_of(view) for view in views] == list(reversed(entities))
    assert [view.state for view in views] == ["4", "3", "2", "1", "0"]
    assert all(type(view) is view_class(Call) for view in views)
    assert make_views(Call, []) == []


def test_entity_of_finds_the_entity_behind_an_entity_or_a_view_only() -> None:
    db = database()
    entity = db.call.add(state="new")
    assert entity_of(entity) is entity
    assert entity_of(make_view(Call, entity)) is entity
    for other in (Call(state="new"), {"state": "new"}, None, entity.uuid):
        assert entity_of(other) is None


def test_fields_of_a_dict_is_a_copy() -> None:
    given_fields = {"state": "new", "queue": 1}
    found = fields_of(given_fields)
    assert found == given_fields and found is not given_fields


def test_fields_of_a_mapping_or_none() -> None:
    assert fields_of(types.MappingProxyType({"state": "new"})) == {"state": "new"}
    assert fields_of(None) == {}


def test_fields_of_a_dataclass_instance_are_its_fields_uuid_included() -> None:
    assert fields_of(Call(state="new", tags=["a"])) == {
        "state": "new",
        "queue": 0,
        "tags": ["a"],
        "uuid": None,
    }
    assert fields_of(CallWithNote(state="x")) == {"state": "x", "note": "-", "uuid": None}


def test_fields_of_an_entity_or_a_view_are_its_data_and_uuid() -> None:
    db = database()
    entity = db.call.add(state="new", queue=2, tags=["a"])
    expected = {"uuid": entity.uuid, "state": "new", "queue": 2, "tags": ["a"]}
    assert fields_of(entity) == expected
    assert fields_of(make_view(Call, entity)) == expected


@pytest.mark.parametrize("wrong", [1, "state=new", [("state", "new")], object()])
def test_fields_of_anything_else_is_a_type_error(wrong: Any) -> None:
    with pytest.raises(TypeError):
        fields_of(wrong)
