"""Parsing criteria and order keys, compiled filters, and multi-key ordering."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from brainlessdb.core.query.filtering import compile_filter, select
from brainlessdb.core.query.lookups import LOOKUPS
from brainlessdb.core.query.ordering import order
from brainlessdb.core.query.plan import (
    Condition,
    OrderKey,
    Plan,
    parse_criteria,
    parse_order,
    plan_criteria,
    resolve,
)
from brainlessdb.core.tracked import TrackedDict
from brainlessdb.core.values import MISSING
from brainlessdb.errors import QueryError

FIELDS: Mapping[str, str] = {
    "state": "str",
    "priority": "int",
    "age": "int",
    "last_seen": "float",
    "active": "bool",
    "caller": "dict",
    "tags": "list",
    "extra": "any",
    "name": "str",
}

Entity = tuple[str, Any]

small_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-1, 2),
        st.sampled_from([1.0, 0.5, float("nan")]),
        st.sampled_from(["", "a", "A", "ab", "u1"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=2), st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2)
    ),
    max_leaves=5,
)


def matching(
    criteria: Mapping[str, Any], entities: Sequence[Entity], fields: Mapping[str, str] | None = None
) -> list[str]:
    predicate = compile_filter(parse_criteria(criteria, fields))
    return [uuid for uuid, data in entities if predicate(uuid, data)]


def ordered(entities: Sequence[Entity], *keys: str) -> list[str]:
    return [uuid for uuid, _ in order(entities, parse_order(keys, None), itemgetter(1), itemgetter(0))]


def field_reader(name: str) -> Callable[[Entity], Any]:
    """``order``'s optional ``field_of`` for the ``(uuid, data)`` pairs these tests sort."""
    return lambda item: item[1][name]


class TestResolve:
    def test_resolve_walks_nested_mappings(self) -> None:
        assert (
            resolve("u1", {"caller": {"address": {"city": "Brno"}}}, ("caller", "address", "city")) == "Brno"
        )

    def test_resolve_gives_missing_for_an_absent_key(self) -> None:
        assert resolve("u1", {"caller": {}}, ("caller", "city")) is MISSING

    def test_resolve_gives_missing_when_walking_into_a_non_mapping(self) -> None:
        assert resolve("u1", {"caller": "Brno"}, ("caller", "city")) is MISSING
        assert resolve("u1", {"caller": None}, ("caller", "city")) is MISSING
        assert resolve("u1", {"caller": ["city"]}, ("caller", "city")) is MISSING

    def test_resolve_keeps_a_present_none(self) -> None:
        assert resolve("u1", {"caller": {"city": None}}, ("caller", "city")) is None

    def test_resolve_uuid_gives_the_entity_uuid(self) -> None:
        assert resolve("u1", {}, ("uuid",)) == "u1"


class TestParseCriteria:
    def test_plain_key_is_an_exact_condition(self) -> None:
        assert parse_criteria({"state": "waiting"}, FIELDS) == (
            Condition("state", ("state",), "exact", "waiting"),
        )

    @pytest.mark.parametrize("fields", [FIELDS, None])
    def test_last_seen_lt_is_field_last_seen_with_lookup_lt(self, fields: Mapping[str, str] | None) -> None:
        """Regression: the first published version read this as a nested path and returned []."""
        (condition,) = parse_criteria({"last_seen__lt": 123.0}, fields)
        assert (condition.path, condition.lookup, condition.value) == (("last_seen",), "lt", 123.0)

    def test_last_seen_lt_filters_stale_entities(self) -> None:
        entities = [("old", {"last_seen": 100.0}), ("new", {"last_seen": 200.0}), ("none", {})]
        assert matching({"last_seen__lt": 123.0}, entities, FIELDS) == ["old"]

    def test_nested_key_is_a_path_with_exact(self) -> None:
        (condition,) = parse_criteria({"caller__city": "Prague"}, FIELDS)
        assert (condition.path, condition.lookup) == (("caller", "city"), "exact")

    def test_nested_key_with_trailing_lookup(self) -> None:
        (condition,) = parse_criteria({"extra__address__zip__startswith": "11"}, FIELDS)
        assert (condition.path, condition.lookup) == (("extra", "address", "zip"), "startswith")

    def test_only_the_last_segment_can_be_a_lookup(self) -> None:
        (condition,) = parse_criteria({"caller__in__exact": 1}, FIELDS)
        assert (condition.path, condition.lookup) == (("caller", "in"), "exact")

    def test_a_field_named_like_a_lookup_is_a_field(self) -> None:
        (condition,) = parse_criteria({"in": 1}, None)
        assert (condition.path, condition.lookup) == (("in",), "exact")

    def test_in_values_are_kept_as_a_tuple(self) -> None:
        (condition,) = parse_criteria({"state__in": (s for s in ["a", "b"])}, FIELDS)
        assert condition.value == ("a", "b")

    def test_uuid_is_accepted_without_being_a_schema_field(self) -> None:
        (condition,) = parse_criteria({"uuid__in": ["u1"]}, FIELDS)
        assert (condition.path, condition.lookup) == (("uuid",), "in")

    def test_without_schema_an_unknown_trailing_segment_is_a_nested_path(self) -> None:
        (condition,) = parse_criteria({"age__gtt": 5}, None)
        assert (condition.path, condition.lookup) == (("age", "gtt"), "exact")

    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            ("", 1, "empty part"),
            ("state____x", 1, "empty part"),
            ("__state", 1, "empty part"),
            ("state__", 1, "empty part"),
            ("nope", 1, "unknown field 'nope'"),
            ("nope__lt", 1, "unknown field 'nope'"),
            ("age__gtt", 5, "unknown lookup 'gtt'"),
            ("state__city", "x", "unknown lookup 'city'"),
            ("active__x__exact", True, "has no 'x'"),
            ("age__foo__lt", 5, "has no 'foo'"),
            ("tags__first", "a", "unknown lookup 'first'"),
            ("uuid__gtt", "x", "unknown lookup 'gtt'"),
            ("state__in", "waiting", "'in' needs"),
            ("caller__city__isnull", "yes", "'isnull' needs"),
            ("age__gt", [1], "compares numbers or strings"),
            ("state__startswith", 1, "needs a string"),
        ],
    )
    def test_invalid_criterion_raises_query_error(self, key: str, value: Any, message: str) -> None:
        with pytest.raises(QueryError, match=message) as raised:
            parse_criteria({key: value}, FIELDS)
        assert raised.value.key == key

    def test_filter_with_unknown_lookup_raises_query_error(self) -> None:
        with pytest.raises(QueryError, match="unknown lookup 'gtt'"):
            parse_criteria({"age__gtt": 5}, {"age": "int"})

    def test_unknown_types_in_the_schema_are_walkable(self) -> None:
        (condition,) = parse_criteria({"meta__x": 1}, {"meta": "future-type"})
        assert condition.path == ("meta", "x")


class TestCompileFilter:
    def test_no_conditions_match_everything(self) -> None:
        predicate = compile_filter(())
        assert predicate("u1", {}) is True

    def test_nested_none_matches_only_a_present_none(self) -> None:
        """Regression: the old version matched every entity for a__b=None."""
        entities = [
            ("none", {"a": {"b": None}}),
            ("value", {"a": {"b": 1}}),
            ("absent", {"a": {}}),
            ("scalar", {"a": 5}),
            ("no-a", {}),
        ]
        assert matching({"a__b": None}, entities) == ["none"]

    def test_nested_isnull_matches_none_or_missing(self) -> None:
        entities = [
            ("none", {"a": {"b": None}}),
            ("value", {"a": {"b": 1}}),
            ("absent", {"a": {}}),
            ("no-a", {}),
        ]
        assert matching({"a__b__isnull": True}, entities) == ["none", "absent", "no-a"]
        assert matching({"a__b__isnull": False}, entities) == ["value"]

    def test_filter_on_a_dict_valued_field_matches_by_value(self) -> None:
        entities = [("p", {"caller": {"city": "Prague", "zip": "1"}}), ("b", {"caller": {"city": "Brno"}})]
        assert matching({"caller": {"zip": "1", "city": "Prague"}}, entities, FIELDS) == ["p"]
        assert matching({"caller__in": [{"city": "Brno"}]}, entities, FIELDS) == ["b"]

    def test_exact_bool_does_not_match_numbers(self) -> None:
        entities = [("t", {"x": True}), ("one", {"x": 1}), ("float", {"x": 1.0})]
        assert matching({"x": True}, entities) == ["t"]
        assert matching({"x": 1}, entities) == ["one", "float"]

    def test_all_conditions_must_hold(self) -> None:
        entities = [
            ("a", {"state": "active", "priority": 5}),
            ("b", {"state": "active", "priority": 1}),
            ("c", {"state": "waiting", "priority": 5}),
        ]
        assert matching({"state": "active", "priority__gte": 5}, entities, FIELDS) == ["a"]
        criteria = {"state": "active", "priority__gte": 1, "uuid__ne": "b"}
        assert matching(criteria, entities, FIELDS) == ["a"]

    def test_uuid_criterion_compares_the_entity_uuid(self) -> None:
        entities: list[Entity] = [("u1", {}), ("u2", {})]
        assert matching({"uuid": "u2"}, entities) == ["u2"]
        assert matching({"uuid__startswith": "u"}, entities) == ["u1", "u2"]

    @given(
        entities=st.lists(st.dictionaries(st.sampled_from(["a", "b"]), small_json), max_size=6),
        lookup=st.sampled_from(sorted(LOOKUPS)),
        path=st.sampled_from([("a",), ("a", "b"), ("uuid",)]),
        expected=small_json,
        listed=st.lists(small_json, max_size=3),
    )
    def test_compiled_filter_agrees_with_condition_matches(
        self,
        entities: list[dict[str, Any]],
        lookup: str,
        path: tuple[str, ...],
        expected: Any,
        listed: list[Any],
    ) -> None:
        value = listed if lookup == "in" else expected
        key = "__".join((*path, lookup))
        try:
            (condition,) = parse_criteria({key: value}, None)
        except QueryError:
            assume(False)
            raise
        predicate = compile_filter([condition])
        for number, data in enumerate(entities):
            uuid = f"u{number}"
            assert predicate(uuid, data) == condition.matches(uuid, data)


class TestPlan:
    def test_one_exact_criterion_on_a_top_level_field_names_it_for_find(self) -> None:
        assert plan_criteria(["state"], FIELDS) == Plan(
            (("state", ("state",), "exact"),), "state", ("state",)
        )
        plan = plan_criteria(["state__exact"], FIELDS)
        assert (plan.exact_key, plan.exact_path) == ("state__exact", ("state",))

    @pytest.mark.parametrize(
        "keys", [["uuid"], ["caller__city"], ["state__ne"], ["state__in"], ["state", "priority"], []]
    )
    def test_other_plans_have_no_exact_key(self, keys: list[str]) -> None:
        plan = plan_criteria(keys, FIELDS)
        assert (plan.exact_key, plan.exact_path) == (None, ())


def selected(criteria: Mapping[str, Any], entities: Sequence[Entity]) -> list[str]:
    found = select(entities, parse_criteria(criteria, None), itemgetter(1), itemgetter(0))
    return [uuid for uuid, _ in found]


def scanned(criteria: Mapping[str, Any], entities: Sequence[Entity]) -> list[str]:
    conditions = parse_criteria(criteria, None)
    return [uuid for uuid, data in entities if all(c.matches(uuid, data) for c in conditions)]


# Values that repeat (so that the per-distinct-value answers are used), with 1, 1.0 and True, which are one
# dict key, and with None, containers and MISSING among them.
repeated_json = st.one_of(
    st.sampled_from(["", "a", "ab", "ba", "Ab", "u1", 1, 1.0, True, False, 0, None]), small_json
)


class TestSelect:
    def test_no_conditions_keep_every_item(self) -> None:
        entities: list[Entity] = [("u1", {}), ("u2", {})]
        assert select(entities, (), itemgetter(1), itemgetter(0)) == entities

    @pytest.mark.parametrize("distinct", [True, False])
    def test_regular_nested_data_is_read_and_tested(self, distinct: bool) -> None:
        cities = [f"{city} {n if distinct else ''}" for n, city in enumerate(["Prague", "Brno"] * 6)]
        entities = [(f"u{n}", {"caller": {"city": city}}) for n, city in enumerate(cities)]
        assert selected({"caller__city__startswith": "Pra"}, entities) == [f"u{n}" for n in range(0, 12, 2)]
        assert selected({"caller__city__endswith": "no "}, entities) == (
            [] if distinct else ["u1", "u3", "u5", "u7", "u9", "u11"]
        )
        assert selected({"caller__city": "Brno "}, entities) == (
            [] if distinct else ["u1", "u3", "u5", "u7", "u9", "u11"]
        )

    def test_irregular_data_falls_back_to_the_exact_walk(self) -> None:
        entities = [
            ("str", {"caller": {"city": "Prague"}}),
            ("none", {"caller": {"city": None}}),
            ("number", {"caller": {"city": 5}}),
            ("absent", {"caller": {}}),
            ("scalar", {"caller": "Prague"}),
            ("list", {"caller": ["city"]}),
            ("no-caller", {}),
            ("tracked", {"caller": TrackedDict(None, {"city": "Prague 2"})}),  # type: ignore[arg-type]
        ]
        assert selected({"caller__city__startswith": "Pra"}, entities) == ["str", "tracked"]
        assert selected({"caller__city__isnull": True}, entities) == [
            "none",
            "absent",
            "scalar",
            "list",
            "no-caller",
        ]
        assert selected({"caller__city__ne": "Prague"}, entities) == [u for u, _ in entities if u != "str"]

    def test_string_lookups_answer_by_distinct_value_exactly(self) -> None:
        # 1, 1.0 and True are one dict key: a string lookup fails all of them alike.
        values = ["ab", 1, True, 1.0, "ab", "b", None, "ab", "abc", 1, True, "b"] * 2
        entities = entities_with("x", values)
        assert selected({"x__startswith": "a"}, entities) == scanned({"x__startswith": "a"}, entities)
        assert selected({"x__startswith": "a"}, entities) == [f"u{n}" for n in (0, 4, 7, 8, 12, 16, 19, 20)]
        for criteria in (
            {"x__contains": "b"},
            {"x__icontains": "AB"},
            {"x__endswith": "b"},
            {"x__contains": 1},
        ):
            assert selected(criteria, entities) == scanned(criteria, entities)

    def test_exact_and_ne_on_none_and_bools_are_identities(self) -> None:
        entities = entities_with("x", [True, 1, 1.0, None, False, 0, "True"])
        assert selected({"x": True}, entities) == ["u0"]
        assert selected({"x__ne": False}, entities) == ["u0", "u1", "u2", "u3", "u5", "u6"]
        assert selected({"x": None}, entities) == ["u3"]

    def test_uuid_conditions_read_the_uuid(self) -> None:
        entities: list[Entity] = [("u1", {}), ("x2", {}), ("u3", {})]
        assert selected({"uuid__startswith": "u", "uuid__ne": "u3"}, entities) == ["u1"]

    @given(
        values=st.lists(
            st.tuples(st.one_of(st.just(MISSING), repeated_json), st.one_of(st.just(MISSING), repeated_json)),
            max_size=24,
        ),
        criteria=st.lists(
            st.tuples(
                st.sampled_from(["a", "a__a", "b__b", "uuid"]),
                st.sampled_from(sorted(LOOKUPS)),
                repeated_json,
                st.lists(repeated_json, max_size=3),
            ),
            min_size=1,
            max_size=3,
        ),
        nested=st.booleans(),
    )
    def test_select_equals_matching_every_item(
        self,
        values: list[tuple[Any, Any]],
        criteria: list[tuple[str, str, Any, list[Any]]],
        nested: bool,
    ) -> None:
        entities: list[Entity] = []
        for number, (a, b) in enumerate(values):
            if nested:  # regular nested data, read in C as long as no value is MISSING
                a, b = {"a": a, "b": b}, {"a": b, "b": a}
            data = {name: value for name, value in (("a", a), ("b", b)) if value is not MISSING}
            if nested:
                data = {
                    name: {k: v for k, v in value.items() if v is not MISSING} for name, value in data.items()
                }
            entities.append((f"u{number}", data))
        query = {}
        for path, lookup, expected, listed in criteria:
            query[f"{path}__{lookup}"] = listed if lookup == "in" else expected
        try:
            parse_criteria(query, None)
        except QueryError:
            assume(False)
        assert selected(query, entities) == scanned(query, entities)


class TestParseOrder:
    def test_order_keys_parse_direction_and_path(self) -> None:
        assert parse_order(["priority", "-created_at", "caller__name"], None) == (
            OrderKey("priority", ("priority",), False),
            OrderKey("-created_at", ("created_at",), True),
            OrderKey("caller__name", ("caller", "name"), False),
        )

    @pytest.mark.parametrize(
        ("key", "message"),
        [
            (5, "not a string"),
            (None, "not a string"),
            ("", "empty part"),
            ("-", "empty part"),
            ("caller____name", "empty part"),
            ("nope", "unknown field 'nope'"),
            ("-nope", "unknown field 'nope'"),
            ("priority__x", "has no 'x'"),
            ("-uuid__x", "has no 'x'"),
            ("priority__lt", "cannot use the lookup 'lt'"),
            ("caller__name__exact", "cannot use the lookup 'exact'"),
        ],
    )
    def test_invalid_order_key_raises_query_error(self, key: Any, message: str) -> None:
        with pytest.raises(QueryError, match=message):
            parse_order([key], FIELDS)

    def test_a_single_string_instead_of_a_sequence_is_a_type_error(self) -> None:
        with pytest.raises(TypeError):
            parse_order("priority", FIELDS)

    def test_uuid_is_a_valid_order_key(self) -> None:
        assert parse_order(["-uuid"], FIELDS) == (OrderKey("-uuid", ("uuid",), True, natural=True),)

    def test_scalar_fields_of_the_schema_sort_naturally(self) -> None:
        keys = ["state", "-priority", "last_seen", "active", "caller", "tags", "extra", "caller__x", "uuid"]
        natural = [key.natural for key in parse_order(keys, FIELDS)]
        assert natural == [True, True, True, True, False, False, False, False, True]
        assert [key.natural for key in parse_order(keys, None)] == [False] * 8 + [True]


def entities_with(field: str, values: list[Any]) -> list[Entity]:
    return [(f"u{number}", {field: value}) for number, value in enumerate(values)]


class TestOrder:
    def test_descending_strings_with_a_common_prefix(self) -> None:
        """Regression: the old version got order_by("-name") wrong."""
        entities = [("a", {"name": "a"}), ("ab", {"name": "ab"}), ("abc", {"name": "abc"})]
        assert ordered(entities, "-name") == ["abc", "ab", "a"]
        assert ordered(entities, "name") == ["a", "ab", "abc"]

    @pytest.mark.parametrize("descending", [False, True])
    def test_none_and_missing_sort_last_in_both_directions(self, descending: bool) -> None:
        entities = [("none", {"p": None}), ("two", {"p": 2}), ("missing", {}), ("one", {"p": 1})]
        key = "-p" if descending else "p"
        expected = ["two", "one"] if descending else ["one", "two"]
        assert ordered(entities, key) == [*expected, "none", "missing"]

    @pytest.mark.parametrize("key", ["p", "-p"])
    def test_order_is_stable(self, key: str) -> None:
        entities = entities_with("p", [1, 0, 1, 0, 1])
        expected = ["u0", "u2", "u4", "u1", "u3"] if key == "-p" else ["u1", "u3", "u0", "u2", "u4"]
        assert ordered(entities, key) == expected

    def test_multi_key_state_then_descending_priority(self) -> None:
        entities = [
            ("w1", {"state": "waiting", "priority": 1}),
            ("a5", {"state": "active", "priority": 5}),
            ("w9", {"state": "waiting", "priority": 9}),
            ("a1", {"state": "active", "priority": 1}),
            ("an", {"state": "active", "priority": None}),
            ("n3", {"state": None, "priority": 3}),
            ("a5b", {"state": "active", "priority": 5}),
        ]
        assert ordered(entities, "state", "-priority") == ["a5", "a5b", "a1", "an", "w9", "w1", "n3"]

    @pytest.mark.parametrize("key", ["x", "-x"])
    def test_mixed_types_rank_numbers_then_strings_then_others(self, key: str) -> None:
        entities = entities_with("x", [{"a": 1}, "b", 2, None, [1], 1.5, True, "a"])
        # u6 is True: a bool sorts as the number 1.
        ascending = ["u6", "u5", "u2", "u7", "u1", "u4", "u0"]
        expected = ascending if key == "x" else list(reversed(ascending))
        assert ordered(entities, key) == [*expected, "u3"]

    def test_bools_sort_as_numbers(self) -> None:
        assert ordered(entities_with("x", [True, 0.5, False, 2]), "x") == ["u2", "u1", "u0", "u3"]

    def test_nan_sorts_after_every_number(self) -> None:
        assert ordered(entities_with("x", [float("nan"), 3, "a", -1]), "x") == ["u3", "u1", "u0", "u2"]

    def test_order_by_nested_path(self) -> None:
        entities = [
            ("b", {"caller": {"name": "Bob"}}),
            ("x", {"caller": "x"}),
            ("a", {"caller": {"name": "Al"}}),
        ]
        assert ordered(entities, "caller__name") == ["a", "b", "x"]

    def test_order_by_uuid(self) -> None:
        assert ordered([("u2", {}), ("u1", {}), ("u3", {})], "-uuid") == ["u3", "u2", "u1"]

    def test_no_keys_keeps_the_order(self) -> None:
        assert ordered([("u2", {}), ("u1", {})]) == ["u2", "u1"]

    def test_order_leaves_the_given_sequence_unchanged(self) -> None:
        entities = [("u2", {"p": 2}), ("u1", {"p": None}), ("u3", {"p": 1})]
        given_order = list(entities)
        assert ordered(entities, "p") == ["u3", "u2", "u1"]
        assert ordered(tuple(entities), "-p") == ["u2", "u3", "u1"]
        assert entities == given_order

    def test_order_calls_data_of_once_per_item_and_key(self) -> None:
        calls: list[int] = []

        def data_of(item: int) -> Mapping[str, Any]:
            calls.append(item)
            return {"a": -item, "b": item % 2}

        assert order([1, 2, 3], parse_order(["b", "a"], None), data_of, str) == [2, 3, 1]
        assert sorted(calls) == [1, 1, 2, 2, 3, 3]

    @pytest.mark.parametrize("key", ["x", "-x"])
    @pytest.mark.parametrize(
        "values",
        [
            [2, 1, 3, 1],  # the plain sort
            [2, None, 1, 3],  # None makes the plain sort raise: the general one
            [2, "a", 1, {"k": 1}, [1], 1.5],  # values breaking the schema raise the same way
            [True, 2, False, 0.5],  # bools in an int field sort as numbers either way
            [None, None],
            [None],
            [],
        ],
    )
    def test_a_field_typed_by_the_schema_keeps_the_specified_order(self, key: str, values: list[Any]) -> None:
        entities = entities_with("x", values)
        keys = parse_order([key], {"x": "int"})
        assert keys[0].natural
        result = order(entities, keys, itemgetter(1), itemgetter(0))
        assert result == reference_order(entities, keys)
        assert order(entities, keys, itemgetter(1), itemgetter(0), field_reader) == result

    @given(
        kinds=st.tuples(*[st.sampled_from(["str", "int", "float", "bool"])] * 2),
        rows=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=14),
        keys=st.lists(st.sampled_from(["a", "-a", "b", "-b", "uuid", "-uuid"]), min_size=1, max_size=3),
    )
    def test_order_by_typed_fields_equals_the_reference_order(
        self, kinds: tuple[str, str], rows: list[tuple[int, int]], keys: list[str]
    ) -> None:
        """Values as the schema allows them (its kind, None or absent) sort as the reference does."""
        by_kind: dict[str, list[Any]] = {
            "str": ["", "a", "B", "ab", "b", "é", "a", "b"],
            "int": [-1, 0, 1, 2, 10, 1, 2, 0],
            "float": [-0.5, 0, 0.0, 1, 1.5, 1e300, 2, 1],
            "bool": [False, True, True, False, True, False, True, False],
        }
        entities: list[Entity] = []
        for number, picks in enumerate(rows):
            data = {}
            for name, kind, pick in zip(("a", "b"), kinds, picks, strict=True):
                if pick < 8:
                    data[name] = by_kind[kind][pick]
                elif pick == 8:
                    data[name] = None
            entities.append((f"u{number:02}", data))
        order_keys = parse_order(keys, dict(zip(("a", "b"), kinds, strict=True)))
        assert all(key.natural for key in order_keys)
        result = order(entities, order_keys, itemgetter(1), itemgetter(0))
        assert result == reference_order(entities, order_keys)
        assert order(entities, order_keys, itemgetter(1), itemgetter(0), field_reader) == result

    @given(
        values=st.lists(
            st.tuples(st.one_of(st.just(MISSING), small_json), st.one_of(st.just(MISSING), small_json)),
            max_size=12,
        ),
        keys=st.lists(
            st.sampled_from(["a", "-a", "b", "-b", "a__a", "-a__b", "uuid", "-uuid"]), min_size=1, max_size=3
        ),
    )
    def test_order_equals_a_reference_comparison_sort(
        self, values: list[tuple[Any, Any]], keys: list[str]
    ) -> None:
        entities: list[Entity] = []
        for number, (a, b) in enumerate(values):
            data = {name: value for name, value in (("a", a), ("b", b)) if value is not MISSING}
            entities.append((f"u{number:02}", data))
        order_keys = parse_order(keys, None)
        result = order(entities, order_keys, itemgetter(1), itemgetter(0))
        assert sorted(result) == sorted(entities)
        assert [uuid for uuid, _ in result] == [uuid for uuid, _ in reference_order(entities, order_keys)]


_canonical = msgspec.json.Encoder(order="sorted")


def reference_order(entities: list[Entity], keys: tuple[OrderKey, ...]) -> list[Entity]:
    """The specified order, by pairwise comparison: slow and obviously right."""

    def kind(value: Any) -> int:
        if isinstance(value, (int, float)):
            return 1 if value != value else 0
        return 2 if isinstance(value, str) else 3

    def compare_values(a: Any, b: Any) -> int:
        if kind(a) != kind(b):
            return kind(a) - kind(b)
        if kind(a) == 3:
            a, b = _canonical.encode(a), _canonical.encode(b)
        if kind(a) == 1:
            return 0
        return int(a > b) - int(a < b)

    def compare(x: Entity, y: Entity) -> int:
        for key in keys:
            a, b = resolve(*x, key.path), resolve(*y, key.path)
            a_absent, b_absent = a is None or a is MISSING, b is None or b is MISSING
            if a_absent or b_absent:
                if a_absent and b_absent:
                    continue
                return 1 if a_absent else -1
            result = compare_values(a, b)
            if result:
                return -result if key.descending else result
        return 0

    return sorted(entities, key=functools.cmp_to_key(compare))
