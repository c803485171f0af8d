"""Schemas on their own: inferred from a first add, declared by a dataclass, checked, grown, stored."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from brainlessdb.core.field_types import annotation_type
from brainlessdb.core.models import declared_schema
from brainlessdb.core.schema import FIELD_TYPES, FieldSpec, Schema
from brainlessdb.errors import SchemaError

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
# Besides JSON values: what a caller may pass by mistake (NaN, infinity, lone surrogates, other types).
ANY_VALUES = st.recursive(
    JSON_SCALARS
    | st.sampled_from([math.nan, math.inf, -math.inf, "\ud800", b"bytes", (1, 2), {1, 2}, object()]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=3)
    ),
    max_leaves=8,
)
SPECS = st.builds(
    FieldSpec,
    type=st.sampled_from(FIELD_TYPES),
    required=st.booleans(),
    nullable=st.booleans(),
)


def declared(**fields: FieldSpec) -> Schema:
    return Schema(fields)


def outcome(call: typing.Callable[[], Any]) -> tuple[str, Any]:
    """What ``call()`` returns, or that it raised SchemaError (and for which field)."""
    try:
        return ("value", call())
    except SchemaError as exc:
        return ("refused", exc.field)


# -- inference from a first add -------------------------------------------------------------------


def test_a_first_add_types_every_field_by_its_value_all_required_and_nullable() -> None:
    schema = Schema.infer(
        {"s": "x", "i": 1, "f": 1.5, "b": True, "d": {"k": 1}, "l": [1], "n": None},
    )

    assert schema.field_types() == {
        "s": "str",
        "i": "int",
        "f": "float",
        "b": "bool",
        "d": "dict",
        "l": "list",
        "n": "any",
    }
    assert all(spec.required and spec.nullable for spec in schema.fields.values())
    assert list(schema.fields) == ["s", "i", "f", "b", "d", "l", "n"]


@pytest.mark.parametrize(
    ("name", "field_name"),
    [("_private", "_private"), ("a__b", "a__b"), ("uuid", "uuid"), ("", None), ("\ud800", None)],
)
def test_a_first_add_refuses_a_field_name_that_cannot_be_an_attribute(
    name: str, field_name: str | None
) -> None:
    with pytest.raises(SchemaError) as refused:
        Schema.infer({"ok": 1, name: 1})
    assert refused.value.field == field_name


@pytest.mark.parametrize(
    "value", [{1, 2}, object(), math.nan, math.inf, {"k": math.nan}, [b"x"], {1: "int key"}, "\ud800"]
)
def test_a_first_add_refuses_a_value_json_cannot_hold(value: Any) -> None:
    with pytest.raises(SchemaError) as refused:
        Schema.infer({"ok": 1, "bad": value})
    assert refused.value.field == "bad"


# -- the locked schema checks new entities and assignments ----------------------------------------


def test_a_new_entity_with_an_unknown_field_is_refused() -> None:
    schema = Schema.infer({"n": 1})
    with pytest.raises(SchemaError) as refused:
        schema.check_new({"n": 1, "extra": True})
    assert refused.value.field == "extra"


def test_a_new_entity_missing_a_required_field_is_refused_naming_its_type() -> None:
    schema = Schema.infer({"n": 1, "state": "new"})
    with pytest.raises(SchemaError) as refused:
        schema.check_new({"state": "new"})
    assert (refused.value.field, refused.value.expected) == ("n", "int")


@pytest.mark.parametrize(
    ("kind", "value"),
    [("int", "five"), ("int", True), ("int", 1.5), ("bool", 1), ("str", 5), ("dict", [1]), ("list", {})],
)
def test_a_value_of_another_type_is_refused_naming_the_expected_type(kind: str, value: Any) -> None:
    schema = declared(f=FieldSpec(kind))
    for check in (lambda: schema.check_new({"f": value}), lambda: schema.accept("f", value)):
        with pytest.raises(SchemaError) as refused:
            check()
        assert (refused.value.field, refused.value.expected) == ("f", kind)


def test_an_int_fits_a_float_field_and_anything_json_fits_an_any_field() -> None:
    schema = declared(f=FieldSpec("float"), a=FieldSpec("any"))
    assert schema.check_new({"f": 3, "a": {"x": [1, None]}}) == {"f": 3, "a": {"x": [1, None]}}
    assert schema.accept("a", "text") == "text"


def test_none_fits_only_a_nullable_field() -> None:
    schema = declared(maybe=FieldSpec("int", nullable=True), never=FieldSpec("int"))
    assert schema.accept("maybe", None) is None
    with pytest.raises(SchemaError) as refused:
        schema.accept("never", None)
    assert refused.value.field == "never"


def test_a_new_entity_gets_the_defaults_in_field_order_as_private_copies() -> None:
    schema = declared(
        state=FieldSpec("str"),
        tags=FieldSpec("list", required=False, default=["a"]),
        queue=FieldSpec("int", required=False, default=5),
    )
    first = schema.check_new({"state": "new"})
    first["tags"].append("b")
    second = schema.check_new({"queue": 1, "state": "x"})

    assert first == {"state": "new", "tags": ["a", "b"], "queue": 5}
    assert list(second) == ["state", "tags", "queue"]
    assert second == {"state": "x", "tags": ["a"], "queue": 1}
    assert schema.fields["tags"].default == ["a"]


def test_the_dicts_and_lists_of_a_new_entity_are_copies_of_what_was_given() -> None:
    schema = Schema.infer({"caller": {"city": "Prague"}, "tags": ["a"]})
    phones = ["1"]
    given_caller, given_tags = {"city": "Brno", "phones": phones}, ["b"]
    data = schema.check_new({"caller": given_caller, "tags": given_tags})
    given_caller["city"] = "changed"
    phones.append("2")
    given_tags.append("c")
    assert data == {"caller": {"city": "Brno", "phones": ["1"]}, "tags": ["b"]}


def test_an_assignment_stores_a_plain_copy_of_a_dict_or_list() -> None:
    class MyDict(dict[str, Any]):
        pass

    schema = Schema.infer({"caller": {"city": "Prague"}})
    given_value = MyDict(city="Brno", nested={"x": 1})
    stored = schema.accept("caller", given_value)
    assert stored == {"city": "Brno", "nested": {"x": 1}}
    assert type(stored) is dict and stored is not given_value
    assert stored["nested"] is not given_value["nested"]


def test_an_assignment_to_an_unknown_field_is_refused() -> None:
    with pytest.raises(SchemaError) as refused:
        Schema.infer({"n": 1}).accept("colour", "red")
    assert refused.value.field == "colour"


@pytest.mark.parametrize(
    ("name", "value"),
    [("f", math.nan), ("f", -math.inf), ("s", "\ud800"), ("a", {"k": math.nan}), ("a", [{1, 2}])],
)
def test_a_value_json_cannot_hold_is_refused_even_by_a_field_of_its_type(name: str, value: Any) -> None:
    schema = declared(a=FieldSpec("any"), f=FieldSpec("float"), s=FieldSpec("str"))
    with pytest.raises(SchemaError) as refused:
        schema.check_new({"a": 1, "f": 1.0, "s": "", name: value})
    assert refused.value.field == name
    with pytest.raises(SchemaError) as refused:
        schema.accept(name, value)
    assert refused.value.field == name


@given(spec=SPECS, value=ANY_VALUES)
def test_a_new_entity_and_an_assignment_accept_and_store_the_same(spec: FieldSpec, value: Any) -> None:
    """``check_new`` takes shortcuts for common types: it must still agree with ``accept``."""
    schema = declared(f=spec)
    assert outcome(lambda: schema.check_new({"f": value})["f"]) == outcome(lambda: schema.accept("f", value))


@given(spec=SPECS, value=JSON_VALUES)
def test_stored_data_is_refused_by_its_types_exactly_when_an_assignment_would_be(
    spec: FieldSpec, value: Any
) -> None:
    """For decoded JSON, the one-lookup check of loads and watches agrees with the full check.

    One case is left out: a null stored for a non-nullable field of type any (declared ``object``) passes
    the one-lookup check although an assignment of None is refused.
    """
    assume(not (value is None and spec.type == "any" and not spec.nullable))
    schema = declared(f=spec)
    decoded = json.loads(json.dumps(value))
    assert outcome(lambda: schema.check_stored_types({"f": decoded})) == outcome(
        lambda: schema.check_stored({"f": decoded})
    )


def test_stored_data_may_hold_a_field_another_node_added_but_not_an_invalid_name() -> None:
    schema = Schema.infer({"n": 1})
    schema.check_stored_types({"n": 2, "added_elsewhere": "x"})
    with pytest.raises(SchemaError) as unknown:
        schema.check_stored({"n": 2, "added_elsewhere": "x"})
    assert unknown.value.field == "added_elsewhere"
    with pytest.raises(SchemaError) as invalid:
        schema.check_stored_types({"n": 2, "_private": 1})
    assert invalid.value.field == "_private"


# -- growing a schema --------------------------------------------------------------------------------


def test_extending_by_the_same_schema_changes_nothing() -> None:
    schema = Schema.infer({"n": 1})
    assert schema.extend(Schema.infer({"n": 5})) is schema


def test_extending_adds_the_new_optional_fields_and_keeps_the_existing_ones() -> None:
    stored = declared(n=FieldSpec("int"), note=FieldSpec("str", required=False, default=""))
    newer = declared(
        n=FieldSpec("int", nullable=True),
        queue=FieldSpec("int", required=False, default=5),
        tags=FieldSpec("list", required=False, nullable=True, default=None),
    )
    grown = stored.extend(newer)
    assert list(grown.fields) == ["n", "note", "queue", "tags"]
    assert grown.fields["n"] == stored.fields["n"]
    assert grown.fields["note"] == stored.fields["note"]
    assert grown.fields["queue"] == newer.fields["queue"]
    assert grown.fields["tags"] == newer.fields["tags"]
    assert grown.check_new({"n": 1}) == {"n": 1, "note": "", "queue": 5, "tags": None}


def test_extending_with_a_new_required_field_is_refused() -> None:
    with pytest.raises(SchemaError) as refused:
        Schema.infer({"n": 1}).extend(declared(n=FieldSpec("int"), queue=FieldSpec("int")))
    assert refused.value.field == "queue"


def test_extending_with_another_type_for_a_field_is_refused() -> None:
    with pytest.raises(SchemaError) as refused:
        Schema.infer({"n": 1}).extend(declared(n=FieldSpec("str")))
    assert (refused.value.field, refused.value.expected) == ("n", "int")


def test_extending_with_any_for_a_typed_field_keeps_its_type() -> None:
    assert Schema.infer({"n": 1}).extend(declared(n=FieldSpec("any"))).field_types() == {"n": "int"}


def test_extending_without_a_required_stored_field_is_refused_without_an_optional_one_allowed() -> None:
    stored = declared(n=FieldSpec("int"), note=FieldSpec("str", required=False, default=""))
    with pytest.raises(SchemaError) as refused:
        stored.extend(declared(note=FieldSpec("str", required=False, default="")))
    assert refused.value.field == "n"
    assert stored.extend(declared(n=FieldSpec("int"))).field_types() == {"n": "int", "note": "str"}


# -- stored form -------------------------------------------------------------------------------------


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), unique=True, max_size=6))
    fields: dict[str, FieldSpec] = {}
    for name in names:
        spec = draw(SPECS)
        if not spec.required:
            spec = dataclasses.replace(spec, default=draw(JSON_VALUES))
        fields[name] = spec
    return Schema(fields)


@given(schema=schemas())
def test_a_schema_reads_back_from_its_stored_json_the_same_in_the_same_order(schema: Schema) -> None:
    stored = json.loads(json.dumps(schema.to_json()))
    again = Schema.from_json(stored)
    assert again == schema
    assert list(again.fields) == list(schema.fields)


def test_the_stored_form_names_its_format_and_leaves_out_the_default_of_a_required_field() -> None:
    schema = declared(n=FieldSpec("int"), note=FieldSpec("str", required=False, nullable=True, default="-"))
    assert schema.to_json() == {
        "v": 1,
        "fields": {
            "n": {"type": "int", "required": True, "nullable": False},
            "note": {"type": "str", "required": False, "nullable": True, "default": "-"},
        },
    }


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"fields": {}},
        {"v": 2, "fields": {}},
        {"v": 1},
        {"v": 1, "fields": []},
    ],
)
def test_an_unreadable_stored_schema_is_refused(raw: Any) -> None:
    with pytest.raises(SchemaError):
        Schema.from_json(raw)


@pytest.mark.parametrize("spec", ["int", {"type": "date"}, {"required": True}])
def test_an_unreadable_stored_field_is_refused_by_name(spec: Any) -> None:
    with pytest.raises(SchemaError) as refused:
        Schema.from_json({"v": 1, "fields": {"n": {"type": "int"}, "when": spec}})
    assert refused.value.field == "when"


# -- declared by a dataclass ---------------------------------------------------------------------------


@dataclass
class Call:
    state: str
    queue: Optional[int]  # noqa: UP045 - the typing spelling must work too
    note: str | None = None
    priority: int = 0
    tags: list[str] = field(default_factory=lambda: ["new"])
    caller: dict[str, Any] = field(default_factory=dict)
    computed: int = field(default=0, init=False)
    uuid: str | None = None


def test_a_dataclass_declares_types_nullability_and_defaults() -> None:
    schema = declared_schema(Call)
    assert schema.fields == {
        "state": FieldSpec("str", required=True, nullable=False),
        "queue": FieldSpec("int", required=True, nullable=True),
        "note": FieldSpec("str", required=False, nullable=True, default=None),
        "priority": FieldSpec("int", required=False, nullable=False, default=0),
        "tags": FieldSpec("list", required=False, nullable=False, default=["new"]),
        "caller": FieldSpec("dict", required=False, nullable=False, default={}),
    }


def test_a_dataclass_schema_leaves_out_the_uuid_and_fields_not_given_to_init() -> None:
    assert "uuid" not in declared_schema(Call).fields
    assert "computed" not in declared_schema(Call).fields


def test_only_a_dataclass_declares_a_schema() -> None:
    class Plain:
        state: str

    for wrong in (Plain, Call("new", 1), dict):
        with pytest.raises(TypeError):
            declared_schema(wrong)  # type: ignore[arg-type]


def test_a_dataclass_with_an_annotation_that_is_not_a_json_type_is_refused_by_field() -> None:
    @dataclass
    class Bad:
        state: str
        seen: set[str]

    with pytest.raises(SchemaError) as refused:
        declared_schema(Bad)
    assert refused.value.field == "seen"


def test_a_dataclass_with_a_default_json_cannot_hold_is_refused_by_field() -> None:
    @dataclass
    class Bad:
        state: str
        seen: list[Any] = field(default_factory=lambda: [{1, 2}])

    with pytest.raises(SchemaError) as refused:
        declared_schema(Bad)
    assert refused.value.field == "seen"


def test_a_dataclass_whose_annotations_cannot_be_resolved_is_a_schema_error() -> None:
    @dataclass
    class Unresolved:
        state: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(SchemaError):
        declared_schema(Unresolved)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, ("str", False)),
        (int, ("int", False)),
        (float, ("float", False)),
        (bool, ("bool", False)),
        (dict, ("dict", False)),
        (dict[str, int], ("dict", False)),
        (typing.Dict[str, int], ("dict", False)),  # noqa: UP006 - the typing spelling must work too
        (Mapping[str, int], ("dict", False)),
        (list, ("list", False)),
        (list[int], ("list", False)),
        (tuple[int, ...], ("list", False)),
        (Any, ("any", True)),
        (object, ("any", False)),
        (None, ("any", True)),
        (type(None), ("any", True)),
        (Optional[str], ("str", True)),  # noqa: UP045
        (int | None, ("int", True)),
        (Union[int, str], ("any", False)),  # noqa: UP007
        (Union[int, str, None], ("any", True)),  # noqa: UP007
        (Optional[list[int]], ("list", True)),  # noqa: UP045
    ],
)
def test_an_annotation_gives_a_schema_type_and_whether_none_fits(
    annotation: Any, expected: tuple[str, bool]
) -> None:
    assert annotation_type(annotation, "f") == expected


@pytest.mark.parametrize("annotation", [set[int], bytes, complex, type])
def test_an_annotation_of_no_json_type_is_refused_by_field(annotation: Any) -> None:
    with pytest.raises(SchemaError) as refused:
        annotation_type(annotation, "f")
    assert refused.value.field == "f"
