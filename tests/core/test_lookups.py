"""Lookup operators, the MISSING sentinel, freeze() and the validation of expected values."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.query.lookups import LOOKUP_SEP, LOOKUPS, check_lookup_value
from brainlessdb.core.values import MISSING, freeze
from brainlessdb.errors import QueryError

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, 1.5, -1.0, 2.0]),
    st.sampled_from(["", "a", "b", "ab", "A"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3),
    ),
    max_leaves=8,
)


def json_equal(a: Any, b: Any) -> bool:
    """Reference equality of JSON values: numbers by value, but a bool only equals the same bool."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


class TestMissing:
    def test_missing_repr_is_its_name(self) -> None:
        assert repr(MISSING) == "MISSING"

    def test_missing_survives_copy_and_pickle_as_the_same_object(self) -> None:
        assert copy.deepcopy(MISSING) is MISSING
        assert pickle.loads(pickle.dumps(MISSING)) is MISSING

    def test_missing_is_not_none(self) -> None:
        assert MISSING is not None
        assert MISSING != None  # noqa: E711 - the comparison itself is under test


def test_lookup_separator_is_double_underscore() -> None:
    assert LOOKUP_SEP == "__"


class TestFreeze:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            (1, 1.0),
            (0, -0.0),
            ({"a": 1, "b": [1, 2]}, {"b": [1.0, 2], "a": 1.0}),
            ([1, "x", None], [1.0, "x", None]),
            ((1, 2), [1, 2]),
            (float("nan"), float("nan")),
        ],
    )
    def test_equal_json_values_freeze_equal(self, a: Any, b: Any) -> None:
        assert freeze(a) == freeze(b)
        assert hash(freeze(a)) == hash(freeze(b))

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            (True, 1),
            (False, 0),
            ([True], [1]),
            ({"a": False}, {"a": 0}),
            ("1", 1),
            (None, "None"),
            ([1, 2], [2, 1]),
            ([], {}),
            ({"a": 1}, [["a", 1]]),
            ({"a": 1}, {"a": 1, "b": None}),
            ("d", {}),
        ],
    )
    def test_different_json_values_freeze_different(self, a: Any, b: Any) -> None:
        assert freeze(a) != freeze(b)

    def test_freeze_of_an_unhashable_foreign_object_falls_back_to_its_repr(self) -> None:
        class Odd:
            __hash__ = None  # type: ignore[assignment]

            def __repr__(self) -> str:
                return "<odd>"

        assert freeze(Odd()) == freeze(Odd())
        hash(freeze({"x": Odd()}))

    def test_freeze_of_a_hashable_foreign_object_is_the_object(self) -> None:
        value = frozenset({1})
        assert freeze(value) is value

    def test_freeze_of_a_dict_with_mixed_key_types_does_not_raise(self) -> None:
        assert freeze({1: "a", "1": "b"}) == freeze({"1": "b", 1: "a"})

    @given(json_values, json_values)
    def test_freeze_keys_are_equal_exactly_when_json_values_are_equal(self, a: Any, b: Any) -> None:
        assert (freeze(a) == freeze(b)) == json_equal(a, b)

    @given(json_values)
    def test_freeze_of_any_json_value_is_hashable(self, value: Any) -> None:
        assert hash(freeze(value)) == hash(freeze(copy.deepcopy(value)))


OBJ = {"city": "Prague", "zip": "11000"}

LOOKUP_TABLE: list[tuple[Any, str, Any, bool]] = [
    # exact
    ("waiting", "exact", "waiting", True),
    ("waiting", "exact", "ringing", False),
    (1, "exact", 1.0, True),
    (True, "exact", 1, False),
    (1, "exact", True, False),
    (False, "exact", False, True),
    (None, "exact", None, True),
    (MISSING, "exact", None, False),
    (OBJ, "exact", {"zip": "11000", "city": "Prague"}, True),
    (OBJ, "exact", {"city": "Prague"}, False),
    ([1, 2], "exact", [1, 2], True),
    ([1, 2], "exact", [2, 1], False),
    (float("nan"), "exact", float("nan"), True),
    # ne
    ("a", "ne", "b", True),
    ("a", "ne", "a", False),
    (MISSING, "ne", "a", True),
    (True, "ne", 1, True),
    # ordering
    (1, "lt", 2, True),
    (2, "lt", 2, False),
    (1.5, "lt", 2, True),
    (2, "lte", 2.0, True),
    (3, "gt", 2, True),
    (2, "gte", 2, True),
    ("a", "lt", "b", True),
    ("b", "gt", "abc", True),
    (None, "lt", 5, False),
    (MISSING, "lt", 5, False),
    (MISSING, "gte", "a", False),
    ("1", "lt", 5, False),
    (1, "lt", "5", False),
    (True, "lt", 5, False),
    (False, "gte", 0, False),
    (OBJ, "gt", 1, False),
    ([1], "lt", 2, False),
    # in
    ("a", "in", ["a", "b"], True),
    ("c", "in", ["a", "b"], False),
    (1, "in", (1.0, 2), True),
    (True, "in", [1, 2], False),
    (None, "in", [None], True),
    (MISSING, "in", [None], False),
    (OBJ, "in", [{"zip": "11000", "city": "Prague"}], True),
    ([1], "in", [[1], [2]], True),
    ("a", "in", frozenset({"a"}), True),
    ("a", "in", [], False),
    # contains
    ("Prague 1", "contains", "gue", True),
    ("Prague 1", "contains", "GUE", False),
    ("Prague", "contains", 1, False),
    (["a", "b"], "contains", "a", True),
    ([1, 2], "contains", 1.0, True),
    ([1, 2], "contains", True, False),
    ([{"a": 1}], "contains", {"a": 1}, True),
    (OBJ, "contains", "city", True),
    (OBJ, "contains", "street", False),
    (OBJ, "contains", ["unhashable"], False),
    (5, "contains", 5, False),
    (None, "contains", "a", False),
    (MISSING, "contains", "a", False),
    # icontains
    ("Prague", "icontains", "PRA", True),
    ("Straße", "icontains", "STRASSE", True),
    ("Prague", "icontains", "brno", False),
    (["Red", "Green"], "icontains", "red", True),
    (["Red", "Green"], "icontains", "re", False),
    ([1, "Red"], "icontains", "RED", True),
    (5, "icontains", "5", False),
    (MISSING, "icontains", "a", False),
    # startswith / endswith
    ("Prague", "startswith", "Pra", True),
    ("Prague", "startswith", "pra", False),
    ("Prague", "endswith", "gue", True),
    (["Prague"], "startswith", "Pra", False),
    (123, "endswith", "3", False),
    (MISSING, "startswith", "", False),
    # isnull
    (None, "isnull", True, True),
    (MISSING, "isnull", True, True),
    (0, "isnull", True, False),
    ("", "isnull", True, False),
    (None, "isnull", False, False),
    (MISSING, "isnull", False, False),
    (0, "isnull", False, True),
]


@pytest.mark.parametrize(("actual", "lookup", "expected", "result"), LOOKUP_TABLE)
def test_lookup_answers(actual: Any, lookup: str, expected: Any, result: bool) -> None:
    assert LOOKUPS[lookup](actual, expected) is result


def test_lookup_table_covers_every_registered_lookup() -> None:
    assert {row[1] for row in LOOKUP_TABLE} == set(LOOKUPS)


@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
@given(actual=st.one_of(json_values, st.just(MISSING)), expected=json_values)
def test_lookups_never_raise_on_json_values(lookup: str, actual: Any, expected: Any) -> None:
    if lookup == "in":
        expected = [expected]
    assert LOOKUPS[lookup](actual, expected) in (True, False)


INVALID_VALUES: list[tuple[str, Any]] = [
    ("in", "abc"),
    ("in", b"abc"),
    ("in", {"a": 1}),
    ("in", 5),
    ("in", None),
    ("isnull", 1),
    ("isnull", None),
    ("isnull", "yes"),
    ("lt", {"a": 1}),
    ("lte", [1]),
    ("gt", None),
    ("gte", True),
    ("startswith", ["a"]),
    ("endswith", 5),
    ("icontains", {"a": 1}),
    ("icontains", ["a"]),
    ("gtt", 5),
]


@pytest.mark.parametrize(("lookup", "value"), INVALID_VALUES)
def test_check_lookup_value_rejects_values_that_could_never_match(lookup: str, value: Any) -> None:
    with pytest.raises(QueryError) as raised:
        check_lookup_value(lookup, value, f"field__{lookup}")
    assert raised.value.key == f"field__{lookup}"


VALID_VALUES: list[tuple[str, Any]] = [
    ("exact", {"a": [1]}),
    ("exact", None),
    ("ne", [1]),
    ("in", [1, "a"]),
    ("in", ()),
    ("in", {1, 2}),
    ("in", frozenset()),
    ("in", iter([1])),
    ("isnull", True),
    ("isnull", False),
    ("lt", 1),
    ("lte", 1.5),
    ("gt", "b"),
    ("contains", {"a": 1}),
    ("contains", 1),
    ("icontains", "a"),
    ("startswith", ""),
    ("endswith", "z"),
]


@pytest.mark.parametrize(("lookup", "value"), VALID_VALUES)
def test_check_lookup_value_accepts_meaningful_values(lookup: str, value: Any) -> None:
    check_lookup_value(lookup, value, "field")


def test_query_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown lookup 'gtt'"):
        check_lookup_value("gtt", 5, "age__gtt")


def test_nan_compares_false_in_every_ordering_lookup() -> None:
    for lookup in ("lt", "lte", "gt", "gte"):
        assert not LOOKUPS[lookup](math.nan, 1)
