"""Rows: an entity's values by position in its collection's layout read and change as a dict of its
fields would, and queries over rows answer as queries over dicts."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from hypothesis import assume, example, given
from hypothesis import strategies as st

from brainlessdb.core.query.filtering import compile_filter, select
from brainlessdb.core.query.lookups import LOOKUPS
from brainlessdb.core.query.ordering import order
from brainlessdb.core.query.plan import keys_on_rows, on_rows, parse_criteria, parse_order
from brainlessdb.core.rows import Layout
from brainlessdb.core.values import MISSING
from brainlessdb.errors import QueryError

NAMES = ["a", "b", "c", "d"]
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(["", "x", "xy", 0.5])),
    lambda children: st.one_of(
        st.lists(children, max_size=2), st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2)
    ),
    max_leaves=4,
)
records = st.dictionaries(st.sampled_from(NAMES), values)


def layout_seeing(*records: dict[str, Any]) -> Layout:
    layout = Layout()
    for record in records:
        layout.row(record)
    return layout


def test_a_layout_gives_each_name_a_position_for_good() -> None:
    layout = Layout(["state", "queue"])
    assert layout.position("queue") == 1
    assert layout.position("agent") == 2  # a new name: the next position
    assert layout.names == ["state", "queue", "agent"] and len(layout) == 3
    assert repr(layout) == "Layout(['state', 'queue', 'agent'])"


@given(st.lists(records, min_size=1, max_size=4))
def test_a_row_holds_what_its_dict_held(seen: list[dict[str, Any]]) -> None:
    """Whatever layouts grew to meanwhile, a row reads back as the dict it was made of."""
    layout = Layout()
    rows = [(record, layout.row(record)) for record in seen]
    for record, row in rows:
        assert layout.mapping(row) == record
        assert dict(layout.items(row)) == record
        assert layout.present(row) == [name for name in layout.names if name in record]
        assert layout.count(row) == len(record)
        for name in [*NAMES, "unknown"]:
            assert layout.holds(row, name) == (name in record)
            assert layout.get(row, name) == record.get(name, MISSING)


@given(records, st.sampled_from([*NAMES, "e"]), st.one_of(values, st.just(MISSING)))
def test_with_value_changes_one_field_as_a_dict_item_would(
    record: dict[str, Any], name: str, value: Any
) -> None:
    layout = layout_seeing({"e": 1}, record) if name == "e" else layout_seeing(record)
    row = layout.row(record)
    changed = layout.with_value(row, name, value)
    expected = dict(record)
    if value is MISSING:
        expected.pop(name, None)
    else:
        expected[name] = value
    assert layout.mapping(changed) == expected
    assert layout.mapping(row) == record  # rows are never changed in place


def test_a_row_made_before_the_layout_grew_reads_the_new_fields_as_missing() -> None:
    layout = Layout(["a"])
    old = layout.row({"a": 1})
    new = layout.row({"a": 2, "b": 3})
    assert (len(old), len(new)) == (1, 2)
    assert layout.get(old, "b") is MISSING and not layout.holds(old, "b")
    assert layout.mapping(layout.with_value(old, "b", 4)) == {"a": 1, "b": 4}


@given(
    st.lists(records, max_size=6),
    st.sampled_from(sorted(LOOKUPS)),
    st.sampled_from([("a",), ("b",), ("a", "b"), ("e",), ("uuid",)]),
    values,
    st.lists(values, max_size=3),
)
@example([{"a": "x"}, {"a": "y"}, {}, {"b": 1}], "exact", ("a",), "x", [])  # the commonest: a str
@example([{"a": "x"}, {"a": "y"}, {}], "ne", ("a",), "x", [])
@example([{"a": {"b": 1}}, {"a": 1}, {"e": 1}], "exact", ("a", "b"), 1, [])
def test_conditions_on_rows_select_what_they_select_on_dicts(
    seen: list[dict[str, Any]], lookup: str, path: tuple[str, ...], expected: Any, listed: list[Any]
) -> None:
    """``on_rows`` conditions over rows (some shorter than their layout) answer exactly as the conditions
    over the same entities as dicts, through ``select`` and ``compile_filter`` alike."""
    value = listed if lookup == "in" else expected
    try:
        conditions = parse_criteria({"__".join((*path, lookup)): value}, None)
    except QueryError:
        assume(False)
        raise
    layout = Layout()
    items = [(f"u{number}", record, layout.row(record)) for number, record in enumerate(seen)]
    on_row = on_rows(conditions, layout.position)
    by_dicts = select(items, conditions, itemgetter(1), itemgetter(0))
    by_rows = select(items, on_row, itemgetter(2), itemgetter(0))
    assert by_rows == by_dicts
    predicate = compile_filter(on_row)
    assert [item for item in items if predicate(item[0], item[2])] == by_dicts


@given(st.lists(records, max_size=8), st.sampled_from(["a", "-a", "b", "a__b", "-e", "uuid"]))
def test_keys_on_rows_order_what_they_order_on_dicts(seen: list[dict[str, Any]], key: str) -> None:
    layout = Layout()
    items = [(f"u{number}", record, layout.row(record)) for number, record in enumerate(seen)]
    keys = parse_order([key], None)
    by_dicts = order(items, keys, itemgetter(1), itemgetter(0))
    by_rows = order(items, keys_on_rows(keys, layout.position), itemgetter(2), itemgetter(0))
    assert by_rows == by_dicts


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b"]), st.one_of(st.none(), st.integers(-3, 3))), max_size=8
    ),
    st.sampled_from(["a", "-a", "b"]),
)
def test_a_natural_order_read_by_position_orders_as_by_name(seen: list[dict[str, Any]], key: str) -> None:
    """A key the schema types (a plain sort is tried first, reading each row at the field's position, as
    ``selection.field_reader`` does) orders as the same key over dicts, absent values and None included."""
    layout = Layout(["b"])
    items = [(f"u{number}", record, layout.row(record)) for number, record in enumerate(seen)]
    keys = parse_order([key], {"a": "int", "b": "int"})
    assert keys[0].natural

    def field_of(position: int) -> Any:
        return lambda item: item[2][position]

    by_dicts = order(items, keys, itemgetter(1), itemgetter(0))
    by_rows = order(items, keys_on_rows(keys, layout.position), itemgetter(2), itemgetter(0), field_of)
    assert by_rows == by_dicts


def test_a_dict_in_layout_order_or_not_makes_the_same_row() -> None:
    layout = Layout(["a", "b", "c"])
    assert layout.row({"a": 1, "b": 2, "c": 3}) == (1, 2, 3)  # every field, in order
    assert layout.row({"c": 3, "a": 1, "b": 2}) == (1, 2, 3)
    assert layout.row({"a": 1, "c": 3}) == (1, MISSING, 3)
    assert layout.row({"a": 1, "b": 2, "d": 4}) == (1, 2, MISSING, 4)  # the layout grew
    assert layout.row({"a": 1, "b": 2, "c": 3, "d": 4}) == (1, 2, 3, 4)
