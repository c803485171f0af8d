"""Lazy equality indexes: answers equal a full scan, before and after every kind of change."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.query.filtering import compile_filter
from brainlessdb.core.query.index import IndexSet
from brainlessdb.core.query.plan import parse_criteria, resolve
from brainlessdb.core.rows import Layout, Row
from brainlessdb.core.values import MISSING

LAYOUT = Layout()
"""Where the rows the indexes are given hold each field."""

Store = dict[str, dict[str, Any]]


def source_of(store: Store) -> Any:
    def source() -> Iterable[tuple[str, Row]]:
        return [(uuid, LAYOUT.row(data)) for uuid, data in store.items()]

    return source


def failing_source() -> Iterable[tuple[str, Mapping[str, Any]]]:
    raise AssertionError("the index should not have been built")


def candidates(indexes: IndexSet, store: Store, **criteria: Any) -> set[str] | None:
    return indexes.candidates(parse_criteria(criteria, None), source_of(store))


@pytest.fixture
def store() -> Store:
    return {
        "u1": {"channel_id": "c1", "state": "waiting", "caller": {"city": "Prague", "zip": "1"}, "n": 1},
        "u2": {"channel_id": "c2", "state": "waiting", "caller": {"city": "Brno"}, "n": 1.0},
        "u3": {"channel_id": "c3", "state": "active", "caller": None, "n": True},
        "u4": {"channel_id": "c4", "state": "active"},
    }


class TestCandidates:
    def test_index_is_built_on_first_use_and_shown_in_repr(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        assert repr(indexes) == "<IndexSet []>"
        assert candidates(indexes, store, channel_id="c2") == {"u2"}
        assert candidates(indexes, store, caller__city="Prague") == {"u1"}
        assert indexes.paths == [("channel_id",), ("caller", "city")]
        assert repr(indexes) == "<IndexSet [channel_id, caller__city]>"

    def test_no_exact_or_in_condition_gives_none(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        assert candidates(indexes, store, n__gt=0, state__startswith="w") is None
        assert indexes.paths == []

    def test_exact_and_in_conditions_intersect(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        assert candidates(indexes, store, state="waiting", channel_id__in=["c2", "c3"]) == {"u2"}
        assert candidates(indexes, store, state="active", channel_id__in=["c2"]) == set()

    def test_other_conditions_are_left_to_the_caller(self, store: Store) -> None:
        assert candidates(IndexSet(LAYOUT), store, state="waiting", channel_id__ne="c1") == {"u1", "u2"}

    def test_numbers_match_across_int_and_float_but_not_bool(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        assert candidates(indexes, store, n=1) == {"u1", "u2"}
        assert candidates(indexes, store, n=True) == {"u3"}

    def test_dict_valued_field_is_indexed_by_value(self, store: Store) -> None:
        """Regression: the old version crashed with "unhashable" on a dict field."""
        indexes = IndexSet(LAYOUT)
        assert candidates(indexes, store, caller={"zip": "1", "city": "Prague"}) == {"u1"}
        assert candidates(indexes, store, caller__in=[{"city": "Brno"}, None]) == {"u2", "u3"}

    def test_missing_values_are_not_indexed_but_none_is(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        assert candidates(indexes, store, caller=None) == {"u3"}
        assert candidates(indexes, store, caller__city=None) == set()

    def test_first_gives_one_uuid_holding_the_value_or_none(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        assert indexes.first(("channel_id",), "c2", source_of(store)) == "u2"
        assert indexes.first(("channel_id",), "c2", failing_source) == "u2"  # built once
        assert indexes.first(("state",), "active", source_of(store)) in {"u3", "u4"}
        assert indexes.first(("n",), 1.0, source_of(store)) in {"u1", "u2"}
        assert indexes.first(("n",), True, source_of(store)) == "u3"
        assert indexes.first(("state",), "gone", source_of(store)) is None
        assert indexes.first(("caller",), {"city": "Brno"}, source_of(store)) == "u2"

    def test_uuid_condition_needs_no_index(self) -> None:
        indexes = IndexSet(LAYOUT)
        conditions = parse_criteria({"uuid": "u1"}, None)
        assert indexes.candidates(conditions, failing_source) == {"u1"}
        conditions = parse_criteria({"uuid__in": ["u1", "u9", 5]}, None)
        assert indexes.candidates(conditions, failing_source) == {"u1", "u9"}
        assert indexes.paths == []

    def test_an_index_is_built_only_once(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        candidates(indexes, store, state="active")
        conditions = parse_criteria({"state": "waiting"}, None)
        assert indexes.candidates(conditions, failing_source) == {"u1", "u2"}


class TestUpdates:
    def test_on_add_and_on_remove_keep_the_index_current(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        candidates(indexes, store, state="waiting")
        indexes.on_add("u5", LAYOUT.row({"state": "waiting"}))
        assert candidates(indexes, store, state="waiting") == {"u1", "u2", "u5"}
        indexes.on_remove("u1", LAYOUT.row(store["u1"]))
        indexes.on_remove("u2", LAYOUT.row(store["u2"]))
        assert candidates(indexes, store, state="waiting") == {"u5"}
        indexes.on_remove("u5", LAYOUT.row({"state": "waiting"}))
        assert candidates(indexes, store, state="waiting") == set()

    def test_on_change_moves_the_entity_in_nested_indexes(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        candidates(indexes, store, caller__city="Prague")
        indexes.on_change("u1", "caller", store["u1"]["caller"], {"city": "Brno"})
        assert candidates(indexes, store, caller__city="Brno") == {"u1", "u2"}
        assert candidates(indexes, store, caller__city="Prague") == set()

    def test_on_change_from_and_to_missing(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        candidates(indexes, store, caller__city="Brno")
        indexes.on_change("u4", "caller", MISSING, {"city": "Brno"})
        assert candidates(indexes, store, caller__city="Brno") == {"u2", "u4"}
        indexes.on_change("u2", "caller", {"city": "Brno"}, MISSING)
        assert candidates(indexes, store, caller__city="Brno") == {"u4"}

    def test_on_change_of_an_unindexed_field_changes_nothing(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        candidates(indexes, store, state="active")
        indexes.on_change("u1", "channel_id", "c1", "active")
        assert candidates(indexes, store, state="active") == {"u3", "u4"}

    def test_covers_names_the_top_level_fields_read_by_indexes(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        candidates(indexes, store, caller__city="Brno")
        assert indexes.covers("caller")
        assert not indexes.covers("state")

    def test_updates_before_any_index_are_ignored(self) -> None:
        indexes = IndexSet(LAYOUT)
        indexes.on_add("u1", LAYOUT.row({"a": 1}))
        indexes.on_change("u1", "a", 1, 2)
        indexes.on_remove("u1", LAYOUT.row({"a": 2}))
        assert indexes.paths == []

    def test_clear_drops_every_index(self, store: Store) -> None:
        indexes = IndexSet(LAYOUT)
        candidates(indexes, store, state="active")
        indexes.clear()
        assert indexes.paths == []
        assert not indexes.covers("state")
        assert candidates(indexes, {}, state="active") == set()


# Small alphabets, so that values collide and buckets hold several uuids.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(0, 2), st.sampled_from([1.0, 2.5]), st.sampled_from(["x", "y"])
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=2), st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2)
    ),
    max_leaves=4,
)
field_names = st.sampled_from(["a", "b", "c"])
entity_data = st.dictionaries(field_names, values, max_size=3)
uuids = st.sampled_from([f"u{number}" for number in range(8)])
PATHS = ["a", "b", "a__a", "a__b", "b__a__b", "uuid"]


def criteria(store: Store) -> st.SearchStrategy[dict[str, Any]]:
    """Criteria that mostly name a value some entity of ``store`` holds at that path, so most match."""
    present = [
        (path, value)
        for path in PATHS
        for uuid, data in store.items()
        if (value := resolve(uuid, data, path.split("__"))) is not MISSING
    ]
    anything = st.tuples(st.sampled_from(PATHS), values)
    pairs = st.one_of(st.sampled_from(present), anything) if present else anything

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for path, value in draw(st.lists(pairs, min_size=1, max_size=2, unique_by=lambda pair: pair[0])):
            if draw(st.booleans()):
                result[f"{path}__in"] = [value, *draw(st.lists(values, max_size=2))]
            else:
                result[path] = value
        return result

    return build()


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), uuids, entity_data),
        st.tuples(st.just("remove"), uuids, st.none()),
        st.tuples(st.just("change"), uuids, st.tuples(field_names, st.one_of(st.just(MISSING), values))),
    ),
    max_size=12,
)


def apply(indexes: IndexSet, store: Store, operation: tuple[str, str, Any]) -> None:
    kind, uuid, argument = operation
    if kind == "add":
        if uuid not in store:
            store[uuid] = copy.deepcopy(argument)
            indexes.on_add(uuid, LAYOUT.row(store[uuid]))
    elif kind == "remove":
        if uuid in store:
            indexes.on_remove(uuid, LAYOUT.row(store.pop(uuid)))
    elif uuid in store:
        field, new = argument
        data = store[uuid]
        old = data.get(field, MISSING)
        if new is MISSING:
            data.pop(field, None)
        else:
            data[field] = copy.deepcopy(new)
        indexes.on_change(uuid, field, old, new)


def assert_index_equals_scan(indexes: IndexSet, store: Store, query: dict[str, Any]) -> None:
    conditions = parse_criteria(query, None)
    matches = compile_filter(conditions)
    scan = {uuid for uuid, data in store.items() if matches(uuid, data)}
    found = indexes.candidates(conditions, source_of(store))
    assert found is not None
    assert {uuid for uuid in found if uuid in store and matches(uuid, store[uuid])} == scan
    # exact and in are the only conditions here, so the index alone already answers exactly.
    assert found & store.keys() == scan
    for key, value in query.items():
        if "__" not in key and key != "uuid":
            assert_first_equals_candidates(indexes, store, key, value)


def assert_first_equals_candidates(indexes: IndexSet, store: Store, field: str, value: Any) -> None:
    """first() gives the first uuid candidates() gives for the one condition, and only one that matches."""
    first = indexes.first((field,), value, source_of(store))
    conditions = parse_criteria({field: value}, None)
    found = indexes.candidates(conditions, source_of(store))
    assert found is not None
    assert first == next(iter(found), None)
    matches = compile_filter(conditions)
    assert (first is None) == (not any(matches(uuid, data) for uuid, data in store.items()))
    if first is not None:
        assert matches(first, store[first])


@given(initial=st.dictionaries(uuids, entity_data), before=operations, after=operations, data=st.data())
def test_index_answers_equal_a_full_scan_after_any_changes(
    initial: Store, before: list[tuple[str, str, Any]], after: list[tuple[str, str, Any]], data: st.DataObject
) -> None:
    store = copy.deepcopy(initial)
    indexes = IndexSet(LAYOUT)
    for operation in before:
        apply(indexes, store, operation)
    queries = data.draw(st.lists(criteria(store), min_size=1, max_size=3))
    for query in queries:
        assert_index_equals_scan(indexes, store, query)
    for operation in after:
        apply(indexes, store, operation)
        for query in queries:
            assert_index_equals_scan(indexes, store, query)
