"""The merge of entity versions is a join: commutative, associative, idempotent, and deletes absorb; a value
re-serialized by a JavaScript client is the same value."""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainlessdb.core.clock import Stamp
from brainlessdb.core.codec import decode_value, encode_entity
from brainlessdb.core.merge import (
    Extras,
    Record,
    dominates,
    field_wins,
    js_form,
    merge_records,
    merge_stored,
    same_js_value,
)
from brainlessdb.core.stamps import (
    MAX_OVERRIDES,
    Stamps,
    compact,
    field_stamps,
    pack,
    pack_fields,
    restamp,
    unpack_fields,
    unpacked,
)
from brainlessdb.core.values import MISSING
from tests.core.sync_fakes import unpacked_members


def merge_into(data: dict[str, Any], stamps: dict[str, Any], incoming: Record) -> dict[str, Any]:
    """The fields a merge of ``incoming`` changed (``merge_stored`` without the other answers)."""
    return merge_stored(data, stamps, incoming)[0]


_canonical = msgspec.json.Encoder(order="sorted")

FIELDS = ("a", "b", "c", "d")

# A small stamp space, so that equal stamps (with different values) happen often.
stamps = st.tuples(st.integers(min_value=1, max_value=3), st.sampled_from(("n1", "n2")))

# Values that Python's == confuses although JSON tells them apart, in classes of "equal" values.
CONFUSABLE = (
    (False, 0, 0.0, -0.0),
    (True, 1, 1.0),
    ([0], [False], [0.0]),
    ({"k": 1}, {"k": 1.0}, {"k": True}),
)
scalars = st.one_of(
    st.none(),
    st.sampled_from([value for group in CONFUSABLE for value in group]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=2), children, max_size=3),
    ),
    max_leaves=6,
)
values = json_values


@st.composite
def families(draw: st.DrawFn, size: int, *, live: bool = False) -> list[Record]:
    """``size`` versions of one entity, built so that a field often holds different values under one stamp.

    Each field has a stamp shared by many of its writes and a class of values that are == but not the
    same, the hardest case for a deterministic tie-break.
    """
    shared = {name: draw(stamps) for name in FIELDS}
    group = {name: draw(st.sampled_from(CONFUSABLE)) for name in FIELDS}
    family = []
    for _ in range(size):
        if not live and draw(st.integers(min_value=0, max_value=3)) == 0:
            family.append(Record(deleted=draw(stamps)))
            continue
        record = Record()
        for name in FIELDS:
            kind = draw(st.sampled_from(("tie", "absent", "any")))
            if kind == "absent":
                continue
            if kind == "tie":
                record.stamps[name] = shared[name]
            else:
                record.stamps[name] = draw(stamps)
            record.data[name] = draw(st.one_of(st.sampled_from(group[name]), values))
        expiry = draw(expiries)
        if expiry is not None:
            record.extras = Extras(expiry=expiry)
        family.append(record)
    return family


@st.composite
def live_records(draw: st.DrawFn) -> Record:
    """One live version with independently drawn fields."""
    chosen = draw(st.dictionaries(st.sampled_from(FIELDS), st.tuples(stamps, values), max_size=len(FIELDS)))
    return Record(
        data={name: value for name, (_, value) in chosen.items()},
        stamps={name: stamp for name, (stamp, _) in chosen.items()},
    )


# Expiries (core.expiry) from small spaces too: two versions often set one under one stamp, or none.
expiries = st.one_of(st.none(), st.tuples(st.sampled_from((None, 1000, 2000)), stamps))

deleted_records = stamps.map(lambda stamp: Record(deleted=stamp))
records = st.one_of(live_records(), deleted_records)


def canon(record: Record) -> tuple[Stamp | None, list[tuple[str, Stamp]], bytes, Any]:
    """A record as a comparable value that tells ``1``, ``1.0`` and ``True`` apart (with its expiry)."""
    assert set(record.data) == set(record.stamps)
    expiry = None if record.extras is None else record.extras.expiry
    return record.deleted, sorted(record.stamps.items()), _canonical.encode(record.data), expiry


def same_value(left: Any, right: Any) -> bool:
    return _canonical.encode(left) == _canonical.encode(right)


# Laws


@given(families(2))
def test_merge_records_is_commutative(family: list[Record]) -> None:
    a, b = family
    assert canon(merge_records(a, b)) == canon(merge_records(b, a))


@given(families(3))
def test_merge_records_is_associative(family: list[Record]) -> None:
    a, b, c = family
    assert canon(merge_records(a, merge_records(b, c))) == canon(merge_records(merge_records(a, b), c))


@given(records)
def test_merge_records_is_idempotent(a: Record) -> None:
    assert canon(merge_records(a, a)) == canon(a)


@given(records, records)
def test_merge_of_independent_versions_is_commutative(a: Record, b: Record) -> None:
    assert canon(merge_records(a, b)) == canon(merge_records(b, a))


@given(families(2))
def test_merge_records_leaves_its_inputs_unchanged(family: list[Record]) -> None:
    a, b = family
    before = canon(a), canon(b)
    merge_records(a, b)
    assert (canon(a), canon(b)) == before


@given(families(2))
def test_merge_result_is_an_upper_bound_of_both_inputs(family: list[Record]) -> None:
    a, b = family
    merged = merge_records(a, b)
    assert canon(merge_records(merged, a)) == canon(merged)
    assert canon(merge_records(merged, b)) == canon(merged)


@given(records, deleted_records)
def test_a_deleted_record_absorbs_everything(a: Record, tombstone: Record) -> None:
    for merged in (merge_records(a, tombstone), merge_records(tombstone, a)):
        assert merged.is_deleted
        assert merged.data == {}
        assert merged.stamps == {}
        assert merged.deleted == max(s for s in (a.deleted, tombstone.deleted) if s is not None)


@settings(max_examples=200)
@given(families(2, live=True))
def test_merge_into_agrees_with_merge_records_and_reports_exactly_the_changed_fields(
    family: list[Record],
) -> None:
    local, incoming = family
    data = dict(local.data)
    field_stamps = dict(local.stamps)
    changed, _, extras = merge_stored(data, field_stamps, incoming, local.extras)
    expected = merge_records(local, incoming)
    assert canon(Record(data=data, stamps=field_stamps, extras=extras)) == canon(expected)
    really_changed = {
        name
        for name, value in expected.data.items()
        if name not in local.data or not same_value(local.data[name], value)
    }
    assert set(changed) == really_changed
    for name, old in changed.items():
        if name in local.data:
            assert same_value(old, local.data[name])
        else:
            assert old is MISSING


@settings(max_examples=200)
@given(families(2))
def test_dominates_iff_merging_local_into_remote_changes_remote(family: list[Record]) -> None:
    local, remote = family
    changes_remote = canon(merge_records(local, remote)) != canon(remote)
    assert dominates(local, remote) is changes_remote


# Examples


def test_concurrent_edits_of_different_fields_both_survive() -> None:
    base = Record(data={"state": "idle", "queue": 1}, stamps={"state": (10, "a"), "queue": (10, "a")})
    left = Record(data={**base.data, "state": "ringing"}, stamps={**base.stamps, "state": (20, "a")})
    right = Record(data={**base.data, "queue": 2}, stamps={**base.stamps, "queue": (15, "b")})
    merged = merge_records(left, right)
    assert merged.data == {"state": "ringing", "queue": 2}
    assert merged.stamps == {"state": (20, "a"), "queue": (15, "b")}


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ((10, "z"), (11, "a")),  # the clock value decides first
        ((10, "a"), (10, "b")),  # then the node name
    ],
)
def test_the_greater_stamp_wins_a_field_in_either_order(older: Stamp, newer: Stamp) -> None:
    old = Record(data={"state": "old"}, stamps={"state": older})
    new = Record(data={"state": "new"}, stamps={"state": newer})
    assert merge_records(old, new).data == {"state": "new"}
    assert merge_records(new, old).data == {"state": "new"}
    assert merge_records(old, new).stamps == {"state": newer}


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("x", "y"),
        (1, True),
        (0, False),
        (1, 1.0),
        (0.0, -0.0),
        ([1], [True]),
        ({"k": 1}, {"k": 1.0}),
        (None, "null"),
    ],
)
def test_a_tie_on_the_stamp_picks_the_same_winner_in_either_order(left: Any, right: Any) -> None:
    stamp = (7, "a")
    one = Record(data={"f": left}, stamps={"f": stamp})
    two = Record(data={"f": right}, stamps={"f": stamp})
    first, second = merge_records(one, two), merge_records(two, one)
    assert same_value(first.data["f"], second.data["f"])
    assert field_wins(stamp, left, stamp, right) != field_wins(stamp, right, stamp, left)


def test_a_delete_beats_a_later_update() -> None:
    deleted = Record(deleted=(5, "a"))
    update = Record(data={"state": "back"}, stamps={"state": (9, "b")})
    for merged in (merge_records(deleted, update), merge_records(update, deleted)):
        assert merged.is_deleted
        assert merged.deleted == (5, "a")
        assert merged.data == {}


def test_the_later_of_two_deletes_is_kept() -> None:
    merged = merge_records(Record(deleted=(5, "a")), Record(deleted=(3, "b")))
    assert merged.deleted == (5, "a")


def test_merge_into_reports_a_new_field_as_missing_before() -> None:
    data: dict[str, Any] = {"a": 1}
    field_stamps: dict[str, Stamp] = {"a": (1, "n")}
    changed = merge_into(data, field_stamps, Record(data={"b": 2}, stamps={"b": (1, "n")}))
    assert changed == {"b": MISSING}
    assert data == {"a": 1, "b": 2}


def test_merge_into_ignores_an_older_value() -> None:
    data: dict[str, Any] = {"a": 1}
    field_stamps: dict[str, Stamp] = {"a": (5, "n")}
    assert merge_into(data, field_stamps, Record(data={"a": 2}, stamps={"a": (4, "n")})) == {}
    assert data == {"a": 1}
    assert field_stamps == {"a": (5, "n")}


def test_merge_into_takes_a_newer_stamp_of_the_same_value_without_reporting_a_change() -> None:
    data: dict[str, Any] = {"a": 1}
    field_stamps: dict[str, Stamp] = {"a": (5, "n")}
    assert merge_into(data, field_stamps, Record(data={"a": 1}, stamps={"a": (6, "n")})) == {}
    assert field_stamps == {"a": (6, "n")}


def test_merge_into_reports_a_change_of_type_as_a_change() -> None:
    data: dict[str, Any] = {"a": 1, "b": [0]}
    field_stamps: dict[str, Stamp] = {"a": (5, "n"), "b": (5, "n")}
    incoming = Record(data={"a": True, "b": [False]}, stamps={"a": (6, "n"), "b": (6, "n")})
    assert merge_into(data, field_stamps, incoming) == {"a": 1, "b": [0]}
    assert data == {"a": True, "b": [False]}


def test_dominates_is_false_for_the_same_version_and_true_for_a_newer_one() -> None:
    remote = Record(data={"a": 1}, stamps={"a": (5, "n")})
    assert not dominates(Record(data={"a": 1}, stamps={"a": (5, "n")}), remote)
    assert not dominates(Record(data={"a": 0}, stamps={"a": (4, "n")}), remote)
    assert dominates(Record(data={"a": 2}, stamps={"a": (6, "n")}), remote)
    assert dominates(Record(deleted=(1, "n")), remote)


def test_max_stamp_is_the_newest_field_stamp_or_the_delete_stamp() -> None:
    assert Record().max_stamp() is None
    assert Record(data={"a": 1, "b": 2}, stamps={"a": (3, "n"), "b": (4, "m")}).max_stamp() == (4, "m")
    assert Record(deleted=(2, "n")).max_stamp() == (2, "n")


def test_a_record_with_one_shared_stamp_is_the_record_with_that_stamp_per_field() -> None:
    shared = Record(data={"a": 1, "b": 2}, shared=(7, "n"))
    per_field = Record(data={"a": 1, "b": 2}, stamps={"a": (7, "n"), "b": (7, "n")})
    assert shared == per_field
    assert shared.compact_stamps == (7, "n")  # what an entity holds: the stamp, no dict
    assert shared.max_stamp() == shared.first_stamp() == (7, "n")
    assert shared.stamps == per_field.stamps  # made when asked (a merge), the same
    assert Record(shared=(7, "n")).max_stamp() is None  # no field, no stamp
    assert Record(shared=(7, "n")).stamps == {}


def test_first_stamp_is_the_stamp_of_the_first_field() -> None:
    record = Record(data={"a": 1, "b": 2}, stamps={"a": (3, "m"), "b": (4, "n")})
    assert record.first_stamp() == (3, "m")
    assert Record().first_stamp() is None


@given(families(3, live=True))
def test_merging_into_a_record_with_a_shared_stamp_is_merging_into_its_per_field_stamps(
    family: list[Record],
) -> None:
    base, incoming, _ = family
    stamp = max(base.stamps.values(), default=(1, "n1"))
    shared = Record(data=dict(base.data), shared=stamp)
    spelled = Record(data=dict(base.data), stamps=dict.fromkeys(base.data, stamp))
    assert canon(merge_records(shared, incoming)) == canon(merge_records(spelled, incoming))
    assert dominates(shared, incoming) == dominates(spelled, incoming)


# Numbers as JavaScript writes them: a client that parses and re-serializes a value changes nothing

# What ``JSON.stringify(JSON.parse(text))`` gives for each float (checked against Node in tests/interop).
RESPELLED = [
    (1.0, 1),
    (-0.0, 0),
    (0.0, 0),
    (-3.0, -3),
    (1e16, 10_000_000_000_000_000),
    (1.5e17, 150_000_000_000_000_000),
    (2.0**60, 1_152_921_504_606_847_000),  # JavaScript prints the shortest digits, padded with zeros
    (1e21, 1e21),  # from 1e21 on JavaScript writes an exponent: read back as a float
    (0.1, 0.1),
    (1.5, 1.5),
    ([1.0, {"k": -0.0}], [1, {"k": 0}]),
    ({"b": 2.0, "a": "1.0"}, {"b": 2, "a": "1.0"}),
    (True, True),
    ("2.0e3", "2.0e3"),
]


@pytest.mark.parametrize(("value", "respelled"), RESPELLED, ids=repr)
def test_js_form_spells_numbers_as_javascript_writes_them(value: Any, respelled: Any) -> None:
    assert same_value(js_form(value), respelled)
    assert same_js_value(value, respelled)


@pytest.mark.parametrize(
    ("left", "right"),
    [(1, True), (0, False), (1, 2), (1, "1"), ([1], [1, 1]), ({"k": 1}, {"k": True}), (None, 0), (0.1, 0)],
)
def test_values_javascript_tells_apart_are_not_the_same(left: Any, right: Any) -> None:
    assert not same_js_value(left, right)


@given(values, stamps)
def test_a_respelled_value_never_wins_over_the_value_it_respells(value: Any, stamp: Stamp) -> None:
    respelled = js_form(value)
    assert same_js_value(value, respelled)
    assert not field_wins(stamp, respelled, stamp, value)
    if not same_value(value, respelled):
        assert field_wins(stamp, value, stamp, respelled)


@settings(max_examples=200)
@given(families(2, live=True))
def test_a_respelled_version_changes_nothing_where_it_is_merged(family: list[Record]) -> None:
    local, _ = family
    respelled = Record(data=js_form(local.data), stamps=dict(local.stamps), extras=local.extras)
    data, field_stamps = dict(local.data), dict(local.stamps)
    assert merge_into(data, field_stamps, respelled) == {}
    assert canon(Record(data=data, stamps=field_stamps, extras=local.extras)) == canon(local)
    # And the other way round: a node holding the respelled version takes the original spelling back.
    assert canon(merge_records(respelled, local)) == canon(local)


# -- the stamps an entity holds ----------------------------------------------------------------------

MANY_FIELDS = tuple(f"f{i}" for i in range(MAX_OVERRIDES + 4))
held_stamps = st.tuples(st.integers(min_value=1, max_value=40), st.sampled_from(("n1", "n2")))


@settings(max_examples=300)
@given(
    st.dictionaries(st.sampled_from(MANY_FIELDS), held_stamps, min_size=1),
    st.lists(st.tuples(st.integers(min_value=0), held_stamps), max_size=30),
)
def test_the_compact_stamps_of_an_entity_are_its_stamps_one_per_field(
    initial: dict[str, Stamp], writes: list[tuple[int, Stamp]]
) -> None:
    """Whatever form an entity holds its stamps in (one stamp, ``FieldStamps``, a dict), after any writes
    they are each field's stamp, and they are stored and read back as such."""
    data = dict.fromkeys(initial, 0)
    model = dict(initial)
    held = compact(dict(initial))
    assert field_stamps(held, data) == model
    for index, stamp in writes:
        name = list(data)[index % len(data)]
        held = written(held, data, name, stamp)
        model[name] = stamp
        assert field_stamps(held, data) == model
        if isinstance(held, tuple):
            assert len(held) == 2 or len(held) <= 2 * MAX_OVERRIDES + 1  # a small tuple, else a dict
        decoded = decode_value(encode_entity(data, held), time_ns=0)
        assert decoded.stamps == model
        assert field_stamps(decoded.compact_stamps, data) == model
        assert decoded.max_stamp() == max(model.values())
    assert field_stamps(compact(dict(model)), data) == model


def written(held: Stamps, data: dict[str, Any], name: str, stamp: Stamp) -> Stamps:
    """``held`` once field ``name`` of ``data`` is written at ``stamp``, as a collection makes it."""
    changed = restamp(held, name, stamp)
    if changed is None:
        changed = field_stamps(held, data)
        changed[name] = stamp
    return changed


def test_an_entity_changed_once_holds_its_stamps_packed_in_one_integer() -> None:
    """``FieldStamps`` as an entity holds them: one negative integer, read back as the tuple."""
    held = restamp((5, "n"), "b", (7, "n"))
    assert type(held) is int and held < 0
    assert unpacked_members(held) == ((5, "n"), "b", (7, "n"))
    assert sys.getsizeof(held) < sys.getsizeof(unpack_fields(held))  # the tuple alone, its stamps apart
    again = restamp(held, "b", (8, "n"))
    assert unpacked_members(again) == ((5, "n"), "b", (8, "n"))  # replaced
    other = restamp(again, "c", (9, "n"))
    assert unpacked_members(other) == ((5, "n"), "b", (8, "n"), "c", (9, "n"))
    assert field_stamps(other, ["a", "b", "c"]) == {"a": (5, "n"), "b": (8, "n"), "c": (9, "n")}
    # An entity of one field, changed: its stamps name every field, which compact packs back.
    one = restamp(compact({"a": (5, "n")}), "a", (7, "n"))
    assert one is not None and field_stamps(one, ["a"]) == {"a": (7, "n")}
    assert compact(field_stamps(one, ["a"])) == pack((7, "n"))
    majority = compact({"a": (5, "n"), "b": (7, "n"), "c": (7, "n")})
    assert unpacked_members(majority) == ((7, "n"), "a", (5, "n"))
    assert unpacked(compact({"a": (5, "n"), "b": (5, "n")})) == (5, "n")


@given(
    st.tuples(st.integers(0, 2**63 - 1), st.sampled_from(["n1", "prague-1", "brno-1"])),
    st.lists(
        st.tuples(
            st.sampled_from(list(MANY_FIELDS)),
            st.tuples(st.integers(0, 2**63 - 1), st.sampled_from(["n1", "prague-1", "brno-1"])),
        ),
        min_size=1,
        max_size=MAX_OVERRIDES,
        unique_by=lambda pair: pair[0],
    ),
)
def test_field_stamps_packed_in_one_integer_read_back_whole(
    base: Stamp, others: list[tuple[str, Stamp]]
) -> None:
    """Every stamp the stored format takes (clock values up to ``2**63 - 1``) packs and unpacks exactly."""
    stamps = (pack(base), *(member for name, stamp in others for member in (name, pack(stamp))))
    packed = pack_fields(stamps)
    assert type(packed) is int and packed < 0
    assert unpack_fields(packed) == stamps
    names = [name for name, _ in others]
    assert field_stamps(packed, ["zz", *names]) == {"zz": base, **dict(others)}
