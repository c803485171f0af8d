"""Models on their own: every model library, every field type, the schema each declares, the stored JSON,
views reading and writing it, and validation that keeps nothing it refuses.

Entities come from a database that is never started (``Brainless(None, ...)``): no event loop, no storage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid as uuids
from typing import Annotated, Any, Literal, Optional, Union

import attrs
import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb import Brainless, SchemaError
from brainlessdb.core.collection import Collection
from brainlessdb.core.entity import Entity
from brainlessdb.core.field_types import field_type
from brainlessdb.core.models import model_of, model_of_class
from brainlessdb.core.schema import FieldSpec, Schema
from brainlessdb.core.views import entity_of


class State(enum.Enum):
    WAITING = "waiting"
    TALKING = "talking"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


CREATED = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
REF = uuids.UUID("6f1c1d3e-5a0b-4c43-9a55-0f0d2b6b8c11")


# -- one model, declared with each library --------------------------------------------------------


@dataclasses.dataclass
class DAddress:
    city: str
    zip: str = ""


@dataclasses.dataclass
class DCall:
    state: State
    created: dt.datetime
    caller: DAddress
    kind: Literal["in", "out"] = "in"
    priority: Priority = Priority.LOW
    day: Optional[dt.date] = None  # noqa: UP045 - the typing spelling must work too
    ref: uuids.UUID | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    history: list[dt.datetime] = dataclasses.field(default_factory=list)
    extras: dict[str, int] = dataclasses.field(default_factory=dict)
    note: str | None = None
    uuid: str | None = None

    def label(self) -> str:
        return f"{self.state.value}@{self.caller.city}"


class PAddress(pydantic.BaseModel):
    city: str
    zip: str = ""


class PCall(pydantic.BaseModel):
    state: State
    created: dt.datetime
    caller: PAddress
    kind: Literal["in", "out"] = "in"
    priority: Priority = Priority.LOW
    day: Optional[dt.date] = None  # noqa: UP045
    ref: uuids.UUID | None = None
    tags: list[str] = []
    history: list[dt.datetime] = []
    extras: dict[str, int] = {}
    note: str | None = None
    uuid: str | None = None

    def label(self) -> str:
        return f"{self.state.value}@{self.caller.city}"


class MAddress(msgspec.Struct):
    city: str
    zip: str = ""


class MCall(msgspec.Struct, kw_only=True):
    state: State
    created: dt.datetime
    caller: MAddress
    kind: Literal["in", "out"] = "in"
    priority: Priority = Priority.LOW
    day: Optional[dt.date] = None  # noqa: UP045
    ref: uuids.UUID | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    history: list[dt.datetime] = msgspec.field(default_factory=list)
    extras: dict[str, int] = msgspec.field(default_factory=dict)
    note: str | None = None
    uuid: str | None = None

    def label(self) -> str:
        return f"{self.state.value}@{self.caller.city}"


@attrs.define
class AAddress:
    city: str
    zip: str = ""


@attrs.define(kw_only=True)
class ACall:
    state: State
    created: dt.datetime
    caller: AAddress
    kind: Literal["in", "out"] = "in"
    priority: Priority = Priority.LOW
    day: Optional[dt.date] = None  # noqa: UP045
    ref: uuids.UUID | None = None
    tags: list[str] = attrs.Factory(list)
    history: list[dt.datetime] = attrs.Factory(list)
    extras: dict[str, int] = attrs.Factory(dict)
    note: str | None = None
    uuid: str | None = None

    def label(self) -> str:
        return f"{self.state.value}@{self.caller.city}"


KINDS: dict[str, tuple[type, type]] = {
    "dataclass": (DCall, DAddress),
    "pydantic": (PCall, PAddress),
    "msgspec": (MCall, MAddress),
    "attrs": (ACall, AAddress),
}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> tuple[type, type]:
    return KINDS[request.param]


def database() -> Brainless:
    return Brainless(None, namespace="t", location="prague-1")


def new_call(call: type, address: type, **fields: Any) -> Any:
    values: dict[str, Any] = {"state": State.WAITING, "created": CREATED, "caller": address(city="Praha")}
    values.update(fields)
    return call(**values)


def entity(view: Any) -> Entity:
    found = entity_of(view)
    assert found is not None
    return found


# -- the schema a model declares ------------------------------------------------------------------

EXPECTED_SCHEMA = {
    "state": FieldSpec("str", required=True, nullable=False, choices=("waiting", "talking")),
    "created": FieldSpec("str", required=True, nullable=False),
    "caller": FieldSpec("dict", required=True, nullable=False),
    "kind": FieldSpec("str", required=False, nullable=False, default="in", choices=("in", "out")),
    "priority": FieldSpec("int", required=False, nullable=False, default=1, choices=(1, 2)),
    "day": FieldSpec("str", required=False, nullable=True, default=None),
    "ref": FieldSpec("str", required=False, nullable=True, default=None),
    "tags": FieldSpec("list", required=False, nullable=False, default=[]),
    "history": FieldSpec("list", required=False, nullable=False, default=[]),
    "extras": FieldSpec("dict", required=False, nullable=False, default={}),
    "note": FieldSpec("str", required=False, nullable=True, default=None),
}


def test_every_library_declares_the_same_schema_for_the_same_model(kind: tuple[type, type]) -> None:
    call, _ = kind
    schema = model_of(call).schema()
    assert dict(schema.fields) == EXPECTED_SCHEMA
    assert Schema.from_json(schema.to_json()) == schema  # choices are stored and read back


def test_typed_refuses_what_is_not_a_model_class_with_a_type_error() -> None:
    class Plain:
        state: str

    db = database()
    for wrong in (Plain, dict, int, DCall(State.WAITING, CREATED, DAddress("x"))):
        with pytest.raises(TypeError, match="dataclass, a pydantic model, a msgspec Struct or an attrs"):
            db.call.typed(wrong)  # type: ignore[arg-type]
    assert db.call.schema is None


@pytest.mark.parametrize(
    "annotation",
    [set[int], bytes, Union[dt.datetime, int], dict[int, str], tuple[int, dt.date], Literal[1.5j]],  # noqa: UP007
)
def test_an_annotation_json_cannot_hold_is_a_schema_error_naming_the_field(annotation: Any) -> None:
    with pytest.raises(SchemaError) as refused:
        field_type(annotation, "f")
    assert refused.value.field == "f"


@pytest.mark.parametrize(
    ("annotation", "kind", "nullable", "choices"),
    [
        (State, "str", False, ("waiting", "talking")),
        (Priority, "int", False, (1, 2)),
        (Literal["a", 1], "any", False, ("a", 1)),
        (Literal["a", None], "str", True, ("a",)),
        (Optional[Literal[True]], "bool", True, (True,)),  # noqa: UP045
        (dt.datetime, "str", False, None),
        (dt.date | None, "str", True, None),
        (uuids.UUID, "str", False, None),
        (list[dt.date], "list", False, None),
        (tuple[State, ...], "list", False, None),
        (dict[str, uuids.UUID], "dict", False, None),
        (Annotated[int, "meta"], "int", False, None),
        (DAddress | None, "dict", True, None),
    ],
)
def test_each_type_has_a_schema_type_nullability_and_choices(
    annotation: Any, kind: str, nullable: bool, choices: Any
) -> None:
    found = field_type(annotation, "f", model_of_class)
    assert (found.kind, found.nullable, found.choices) == (kind, nullable, choices)


# -- stored JSON and views -------------------------------------------------------------------------


def test_an_instance_is_stored_as_plain_json_and_read_back_as_declared(kind: tuple[type, type]) -> None:
    call, address = kind
    db = database()
    calls = db.call.typed(call)
    made = new_call(
        call,
        address,
        day=dt.date(2026, 3, 1),
        ref=REF,
        history=[CREATED],
        priority=Priority.HIGH,
        kind="out",
    )
    view = calls.add(made)
    assert entity(view)._data == {
        "state": "waiting",
        "created": "2026-03-01T08:30:00+00:00",  # an aware datetime is stored in UTC
        "caller": {"city": "Praha", "zip": ""},
        "kind": "out",
        "priority": 2,
        "day": "2026-03-01",
        "ref": str(REF),
        "tags": [],
        "history": ["2026-03-01T08:30:00+00:00"],
        "extras": {},
        "note": None,
    }
    assert isinstance(view, call)
    assert view.state is State.WAITING and view.priority is Priority.HIGH
    assert view.created == CREATED and view.created.tzinfo is not None
    assert view.day == dt.date(2026, 3, 1) and view.ref == REF and view.history == [CREATED]
    assert isinstance(view.caller, address) and view.caller.city == "Praha"
    assert view.label() == "waiting@Praha"  # the class's own methods read the view
    assert view.uuid == entity(view)._uuid
    assert "Praha" in repr(view) and call.__name__ in repr(view)


def test_a_naive_datetime_stays_naive(kind: tuple[type, type]) -> None:
    call, address = kind
    view = database().call.typed(call).add(new_call(call, address, created=dt.datetime(2026, 3, 1, 10)))
    assert entity(view)._data["created"] == "2026-03-01T10:00:00"
    assert view.created == dt.datetime(2026, 3, 1, 10) and view.created.tzinfo is None


def test_writes_through_a_view_are_converted_and_tracked(kind: tuple[type, type]) -> None:
    call, address = kind
    view = database().call.typed(call).add(new_call(call, address))
    stored = entity(view)
    version = stored._version
    view.state = State.TALKING
    view.created = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    view.ref = REF
    view.caller = address(city="Brno", zip="60200")
    view.tags.append("vip")  # a JSON list reads tracked
    assert stored._data["state"] == "talking"
    assert stored._data["created"] == "2026-03-02T00:00:00+00:00"
    assert stored._data["ref"] == str(REF)
    assert stored._data["caller"] == {"city": "Brno", "zip": "60200"}
    assert stored._data["tags"] == ["vip"]
    assert stored._version == version + 5
    view.state = "waiting"  # a member's value is taken as the member
    assert view.state is State.WAITING


def test_a_nested_view_writes_one_key_inside_the_field(kind: tuple[type, type]) -> None:
    call, address = kind
    view = database().call.typed(call).add(new_call(call, address))
    stored = entity(view)
    version = stored._version
    caller = view.caller
    caller.city = "Brno"
    assert stored._data["caller"] == {"city": "Brno", "zip": ""}
    assert stored._version == version + 1  # a change, to be written
    # A change inside the field, recorded at its key (merged per key, as nested dict changes are).
    assert stored._extras is not None and stored._extras.holds("caller")
    assert view.caller == address(city="Brno", zip="")
    assert entity_of(caller) is None  # a nested view is no entity
    with pytest.raises(SchemaError) as refused:
        caller.town = "x"
    assert refused.value.field == "town"


def test_plain_entity_access_sees_the_stored_json(kind: tuple[type, type]) -> None:
    call, address = kind
    db = database()
    calls = db.call.typed(call)
    calls.add(new_call(call, address))
    plain = next(iter(calls._entities.values()))
    assert plain.created == "2026-03-01T08:30:00+00:00" and plain.state == "waiting"


def test_adding_a_mapping_converts_and_fills_defaults(kind: tuple[type, type]) -> None:
    call, _ = kind
    db = database()
    view = db.call.typed(call).add(
        {"state": "talking", "created": "2026-03-01T10:00:00Z", "caller": {"city": "Ostrava"}}
    )
    assert entity(view)._data["created"] == "2026-03-01T10:00:00+00:00"
    assert entity(view)._data["caller"] == {"city": "Ostrava", "zip": ""}
    assert view.state is State.TALKING and view.kind == "in"


def test_an_untyped_collection_stores_a_model_instance_as_its_model_does(kind: tuple[type, type]) -> None:
    call, address = kind
    db = database()
    added = db.call.add(new_call(call, address))
    assert isinstance(added, Entity) and added.created == "2026-03-01T08:30:00+00:00"


# -- validation -----------------------------------------------------------------------------------


def test_a_value_outside_the_choices_is_refused_and_nothing_is_kept(kind: tuple[type, type]) -> None:
    call, address = kind
    db = database()
    calls: Collection[Any] = db.call.typed(call)
    view = calls.add(new_call(call, address))
    stored = entity(view)
    before, version = dict(stored._data), stored._version
    for name, value in (("state", "ringing"), ("kind", "sideways"), ("priority", 3), ("created", "tomorrow")):
        with pytest.raises(SchemaError) as refused:
            setattr(view, name, value)
        assert refused.value.field == name
    with pytest.raises(SchemaError) as refused:
        stored.state = "ringing"  # the schema's choices hold for untyped writes too
    assert refused.value.field == "state"
    with pytest.raises(SchemaError):
        view.caller.city = 7
    assert stored._data == before and stored._version == version
    with pytest.raises(SchemaError):
        calls.add({"state": "ringing", "created": "2026-03-01", "caller": {"city": "x"}})
    assert len(calls) == 1


@pydantic.dataclasses.dataclass
class _Unused:  # a pydantic dataclass is a dataclass: typed() reads it as one
    a: int


class Limited(pydantic.BaseModel):
    name: str
    score: int = pydantic.Field(default=0, ge=0)

    @pydantic.field_validator("name")
    @classmethod
    def no_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank")
        return value.strip()


class MLimited(msgspec.Struct):
    name: str
    score: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("blank")


@attrs.define
class ALimited:
    name: str = attrs.field(validator=attrs.validators.instance_of(str), converter=str.strip)
    score: int = attrs.field(default=0, validator=attrs.validators.ge(0))


@pytest.mark.parametrize("model", [Limited, MLimited, ALimited])
def test_the_library_validates_adds_and_writes_and_nothing_refused_is_kept(model: type) -> None:
    db = database()
    limited: Collection[Any] = db.item.typed(model)
    with pytest.raises(SchemaError) as refused:
        limited.add({"name": "a", "score": -1})
    assert refused.value.field == "score"
    assert len(limited) == 0
    view = limited.add({"name": "a", "score": 1})
    stored = entity(view)
    before, version = dict(stored._data), stored._version
    with pytest.raises(SchemaError) as refused:
        view.score = -5
    assert refused.value.field == "score"
    assert stored._data == before and stored._version == version
    view.score = 4
    assert stored._data["score"] == 4


def test_validators_may_change_the_value_stored() -> None:
    db = database()
    view = db.item.typed(Limited).add(Limited(name="  padded "))
    view.name = "  again  "
    assert entity(view)._data["name"] == "again"
    with pytest.raises(SchemaError) as refused:
        view.name = "   "
    assert refused.value.field == "name" and "blank" in str(refused.value)


class Aliased(pydantic.BaseModel):
    name: str = pydantic.Field(alias="Name")
    size: int = pydantic.Field(default=0, validation_alias="Size")


def test_pydantic_fields_with_aliases_are_stored_by_their_names() -> None:
    view = database().item.typed(Aliased).add(Aliased(Name="a", Size=2))
    view.size = 3
    assert entity(view)._data == {"name": "a", "size": 3}
    assert view.name == "a"


class Renamed(msgspec.Struct, rename="camel"):
    full_name: str
    call_count: Annotated[int, msgspec.Meta(ge=0)] = 0


def test_msgspec_fields_of_a_renamed_struct_are_stored_by_their_names() -> None:
    view = database().item.typed(Renamed).add(Renamed("a"))
    view.call_count = 2
    assert entity(view)._data == {"full_name": "a", "call_count": 2}
    with pytest.raises(SchemaError) as refused:
        view.call_count = -1
    assert refused.value.field == "call_count"


def test_a_msgspec_instance_is_validated_when_added() -> None:
    # msgspec does not check types when it makes an instance: add() does.
    with pytest.raises(SchemaError) as refused:
        database().item.typed(MLimited).add(MLimited(name="a", score=-1))
    assert refused.value.field == "score"


# -- frozen models ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DFrozen:
    state: str


class PFrozen(pydantic.BaseModel, frozen=True):
    state: str


class MFrozen(msgspec.Struct, frozen=True):
    state: str


@attrs.frozen
class AFrozen:
    state: str


@pytest.mark.parametrize("model", [DFrozen, PFrozen, MFrozen, AFrozen])
def test_views_of_a_frozen_model_are_read_only(model: type) -> None:
    view = database().item.typed(model).add(model(state="new"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.state = "other"
    assert view.state == "new"


# -- pydantic and msgspec views stand in for the class ---------------------------------------------


def test_a_pydantic_view_answers_the_librarys_own_members_from_what_it_shows() -> None:
    view = database().call.typed(PCall).add(new_call(PCall, PAddress))
    view.caller.city = "Brno"
    dumped = view.model_dump(mode="json", exclude={"uuid"})
    assert dumped["caller"] == {"city": "Brno", "zip": ""} and dumped["state"] == "waiting"
    assert view == new_call(PCall, PAddress, caller=PAddress(city="Brno"), uuid=view.uuid)


def test_a_msgspec_view_converts_to_a_struct() -> None:
    view = database().call.typed(MCall).add(new_call(MCall, MAddress))
    plain = view._brainless_snapshot()
    assert (
        type(plain) is MCall and msgspec.json.decode(msgspec.json.encode(plain))["caller"]["city"] == "Praha"
    )


# -- one nullability rule -------------------------------------------------------------------------


@dataclasses.dataclass
class Agent:
    name: str
    team: str | None
    level: int = 0
    mood: Literal["calm", "busy"] = "calm"


def test_the_declaration_decides_whichever_came_first() -> None:
    typed_first = database().agent
    typed_first.typed(Agent)
    typed_first.add(name="a", team="x", level=1, mood="busy")
    added_first = database().agent
    added_first.add(name="a", team="x", level=1, mood="busy")
    added_first.typed(Agent)
    assert typed_first.schema == added_first.schema
    assert added_first.schema is not None
    assert not added_first.schema.fields["name"].nullable  # declared str: None is refused
    assert added_first.schema.fields["team"].nullable
    with pytest.raises(SchemaError):
        next(iter(added_first._entities.values())).name = None


def test_a_field_inferred_from_none_takes_the_declared_type() -> None:
    typed_first = database().agent
    typed_first.typed(Agent)
    typed_first.add(name="a", team=None)
    added_first = database().agent
    added_first.add(name="a", team=None)  # team: any type, as far as one None tells
    added_first.typed(Agent)
    assert typed_first.schema == added_first.schema
    assert added_first.schema is not None and added_first.schema.fields["team"].type == "str"


def test_a_declaration_the_entities_held_do_not_fit_is_refused_and_changes_nothing() -> None:
    agents = database().agent
    agents.add(name=None, team="x", level=1, mood="calm")
    before = agents.schema
    with pytest.raises(SchemaError) as refused:
        agents.typed(Agent)
    assert refused.value.field == "name"
    assert agents.schema == before


def test_an_inferred_field_accepts_none_until_declared() -> None:
    agents = database().agent
    added = agents.add(name="a", team="x", level=1, mood="calm")
    added.name = None
    added.name = "a"
    agents.typed(Agent)
    with pytest.raises(SchemaError):
        added.name = None


# -- laws ------------------------------------------------------------------------------------------

AWARE = st.datetimes(
    min_value=dt.datetime(1900, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5, minutes=-30))]),
)


@given(AWARE)
def test_an_aware_datetime_reads_back_as_the_same_moment(moment: dt.datetime) -> None:
    kind = field_type(dt.datetime, "f")
    assert kind.from_json(kind.to_json(moment, "f")) == moment


@given(AWARE, AWARE)
def test_stored_aware_datetimes_sort_in_time_order(first: dt.datetime, second: dt.datetime) -> None:
    kind = field_type(dt.datetime, "f")
    one, two = kind.to_json(first, "f"), kind.to_json(second, "f")
    assert (one < two) == (first < second) and (one == two) == (first == second)


@given(st.lists(st.sampled_from(list(State))), st.dictionaries(st.text(), st.uuids()))
def test_lists_and_dicts_convert_item_by_item_and_back(states: list[State], refs: dict[str, Any]) -> None:
    listed = field_type(list[State], "f")
    mapped = field_type(dict[str, uuids.UUID], "f")
    assert listed.from_json(listed.to_json(states, "f")) == states
    assert mapped.from_json(mapped.to_json(refs, "f")) == refs


@dataclasses.dataclass
class Team:
    name: str
    lead: DAddress | None = None
    offices: list[DAddress] = dataclasses.field(default_factory=list)
    by_code: dict[str, DAddress] = dataclasses.field(default_factory=dict)


def test_optional_nested_models_and_collections_of_them() -> None:
    view = database().team.typed(Team).add(Team("a", offices=[DAddress("Praha")]))
    stored = entity(view)
    assert view.lead is None
    view.lead = DAddress("Brno")
    assert stored._data["lead"] == {"city": "Brno", "zip": ""}
    view.lead.zip = "60200"
    assert view.lead == DAddress("Brno", "60200")
    view.lead = None
    assert stored._data["lead"] is None
    assert view.offices == [DAddress("Praha")]  # a converted copy
    view.offices = [*view.offices, DAddress("Ostrava")]
    view.by_code = {"ova": DAddress("Ostrava")}
    assert stored._data["offices"][1] == {"city": "Ostrava", "zip": ""}
    assert view.by_code["ova"].city == "Ostrava"
    with pytest.raises(SchemaError) as refused:
        view.offices = [{"zip": "1"}]  # a nested object lacking a required field
    assert refused.value.field == "offices"


CALLS = st.builds(
    DCall,
    state=st.sampled_from(list(State)),
    created=st.datetimes(timezones=st.just(dt.timezone.utc)),
    caller=st.builds(DAddress, city=st.text(), zip=st.text()),
    kind=st.sampled_from(["in", "out"]),
    priority=st.sampled_from(list(Priority)),
    day=st.none() | st.dates(),
    ref=st.none() | st.uuids(),
    tags=st.lists(st.text()),
    history=st.lists(st.datetimes()),
    extras=st.dictionaries(st.text(), st.integers(-(2**53), 2**53)),
    note=st.none() | st.text(),
)


@given(CALLS)
def test_what_is_added_reads_back_equal(made: DCall) -> None:
    view = database().call.typed(DCall).add(made)
    made.uuid = view.uuid
    assert view == made
