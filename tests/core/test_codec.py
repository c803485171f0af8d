"""Stored values (format v2, v1 still read): versions round-trip, foreign values are accepted, bad bytes
fail cleanly, and every number of the format is exact in an IEEE double."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainlessdb.core.clock import HybridLogicalClock, Stamp, hlc_from_ms
from brainlessdb.core.codec import (
    FOREIGN_NODE,
    MAX_HLC,
    ForeignRecord,
    _decode_generic,
    decode_delete,
    decode_value,
    encode_entity,
    encode_record,
    encode_tombstone,
    wire_stamp,
)
from brainlessdb.core.merge import Record
from brainlessdb.core.stamps import MAX_OVERRIDES, field_stamps, unpacked
from brainlessdb.errors import DecodeError, EncodeError
from tests.core.sync_fakes import unpacked_members

_canonical = msgspec.json.Encoder(order="sorted")
_plain = msgspec.json.Encoder()

TIME_NS = 1_795_000_000_123_456_789
TIME_HLC = hlc_from_ms(TIME_NS // 1_000_000)

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        int64,
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=10,
)
stamps = st.tuples(st.integers(min_value=0, max_value=2**63 - 1), st.text(max_size=10))


@st.composite
def live_records(draw: st.DrawFn) -> Record:
    """A live version whose fields share a few stamps, so the base stamp and its overrides both occur."""
    shared = draw(st.lists(stamps, min_size=1, max_size=3))
    names = draw(st.lists(st.text(max_size=8), min_size=1, max_size=6, unique=True))
    return Record(
        data={name: draw(json_values) for name in names},
        stamps={name: draw(st.sampled_from(shared)) for name in names},
    )


def canon(record: Record) -> tuple[Stamp | None, list[tuple[str, Stamp]], bytes]:
    """A record as a comparable value that tells ``1``, ``1.0`` and ``True`` apart."""
    return record.deleted, sorted(record.stamps.items()), _canonical.encode(record.data)


def assert_valid(record: Any) -> None:
    """What every successful decode returns: a deleted version, or a live one with a stamp per field."""
    assert isinstance(record, Record)
    if record.deleted is not None:
        assert record.data == {}
        assert record.stamps == {}
        found = [record.deleted]
    else:
        assert isinstance(record.data, dict)
        assert set(record.data) == set(record.stamps)
        found = list(record.stamps.values())
    for stamp in found:
        assert isinstance(stamp, tuple)
        assert len(stamp) == 2
        assert type(stamp[0]) is int
        assert isinstance(stamp[1], str)


# Round trips


@settings(max_examples=200)
@given(live_records())
def test_a_live_record_round_trips(record: Record) -> None:
    decoded = decode_value(encode_record(record), time_ns=TIME_NS)
    assert canon(decoded) == canon(record)
    assert list(decoded.data) == list(record.data)


@given(stamps)
def test_a_tombstone_round_trips(stamp: Stamp) -> None:
    assert decode_delete(encode_tombstone(stamp), time_ns=TIME_NS) == Record(deleted=stamp)


@given(stamps)
def test_a_deleted_record_is_stored_as_its_tombstone(stamp: Stamp) -> None:
    encoded = encode_record(Record(deleted=stamp))
    assert encoded == encode_tombstone(stamp)
    assert decode_value(encoded, time_ns=TIME_NS) == Record(deleted=stamp)


def test_a_record_with_one_stamp_per_field_stores_no_overrides() -> None:
    record = Record(data={"a": 1, "b": 2}, stamps={"a": (5, "n"), "b": (5, "n")})
    assert encode_record(record) == b'{"_v":2,"d":{"a":1,"b":2},"s":[0,5,"n"]}'


def test_a_tuple_is_stored_as_a_json_array() -> None:
    record = Record(data={"point": (1, 2)}, stamps={"point": (5, "n")})
    assert decode_value(encode_record(record), time_ns=TIME_NS).data == {"point": [1, 2]}


# The documented format (docs/format.md) must not drift


PRAGUE = "prague-1"
BRNO = "brno-1"
T0_MS = 1_795_000_000_000  # 2026-11-18 11:06:40 UTC
T0 = hlc_from_ms(T0_MS)
DOCUMENTED_RECORD = Record(
    data={"channel_id": "chan-1", "state": "ringing", "agent_id": 7},
    stamps={"channel_id": (T0, PRAGUE), "state": (T0, PRAGUE), "agent_id": (hlc_from_ms(T0_MS + 240), BRNO)},
)


def test_the_documented_value_of_a_new_entity_is_byte_exact() -> None:
    record = Record(
        data={"channel_id": "chan-1", "state": "ringing", "agent_id": None},
        stamps=dict.fromkeys(("channel_id", "state", "agent_id"), (T0, PRAGUE)),
    )
    assert encode_record(record) == (
        b'{"_v":2,"d":{"channel_id":"chan-1","state":"ringing","agent_id":null},'
        b'"s":[1795000000000,0,"prague-1"]}'
    )


def test_the_documented_value_with_field_stamps_is_byte_exact_and_decodes_back() -> None:
    stored = (
        b'{"_v":2,"d":{"channel_id":"chan-1","state":"ringing","agent_id":7},'
        b'"s":[1795000000000,0,"prague-1"],"t":{"agent_id":[1795000000240,0,"brno-1"]}}'
    )
    assert encode_record(DOCUMENTED_RECORD) == stored
    assert canon(decode_value(stored, time_ns=TIME_NS)) == canon(DOCUMENTED_RECORD)


def test_the_documented_counter_is_the_low_bits_of_the_clock_value() -> None:
    record = Record(data={"state": "answered"}, shared=(hlc_from_ms(T0_MS + 250) + 3, PRAGUE))
    assert encode_record(record) == b'{"_v":2,"d":{"state":"answered"},"s":[1795000000250,3,"prague-1"]}'


def test_the_documented_tombstone_is_byte_exact() -> None:
    assert encode_tombstone((hlc_from_ms(T0_MS + 900), BRNO)) == b'{"_v":2,"x":[1795000000900,0,"brno-1"]}'


# Format v1, as the previous version wrote it: still read


def test_the_documented_v1_value_decodes_as_before() -> None:
    stored = (
        b'{"_v":1,"d":{"channel_id":"chan-1","state":"ringing","agent_id":7},'
        b'"s":[117637120000000000,"prague-1"],"t":{"agent_id":[117637120015728640,"brno-1"]}}'
    )
    assert canon(decode_value(stored, time_ns=TIME_NS)) == canon(DOCUMENTED_RECORD)
    assert canon(_decode_generic(stored, TIME_NS)) == canon(DOCUMENTED_RECORD)


def test_the_documented_v1_tombstone_decodes_as_before() -> None:
    body = b'{"_v":1,"x":[117637120058982400,"brno-1"]}'
    expected = Record(deleted=(hlc_from_ms(T0_MS + 900), BRNO))
    assert decode_delete(body, time_ns=TIME_NS) == expected
    assert decode_value(body, time_ns=TIME_NS) == expected


def encode_v1(record: Record) -> bytes:
    """A version as format v1 stored it (``docs/format.md``, "Format v1"): stamps ``[hlc, node]``."""
    if record.deleted is not None:
        return _plain.encode({"_v": 1, "x": list(record.deleted)})
    base = max(record.stamps.values())
    overrides = {name: list(stamp) for name, stamp in record.stamps.items() if stamp != base}
    envelope: dict[str, Any] = {"_v": 1, "d": record.data, "s": list(base)}
    if overrides:
        envelope["t"] = overrides
    return _plain.encode(envelope)


@settings(max_examples=200)
@given(live_records())
def test_a_v1_value_decodes_to_the_version_it_stored(record: Record) -> None:
    value = encode_v1(record)
    for decoded in (decode_value(value, time_ns=TIME_NS), _decode_generic(value, TIME_NS)):
        assert canon(decoded) == canon(record)
        assert list(decoded.data) == list(record.data)


@given(stamps)
def test_a_v1_delete_marker_decodes_to_its_delete(stamp: Stamp) -> None:
    body = encode_v1(Record(deleted=stamp))
    assert decode_delete(body, time_ns=TIME_NS) == Record(deleted=stamp)
    assert decode_value(body, time_ns=TIME_NS) == Record(deleted=stamp)


# Every number the format itself holds is exact in an IEEE double (what JavaScript keeps)


def format_numbers(obj: Any) -> list[Any]:
    """The numbers of a stored value outside the entity's data (``d``): the version and the stamps."""
    found: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return
        if isinstance(value, (int, float)):
            found.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk({key: value for key, value in obj.items() if key != "d"})
    return found


@settings(max_examples=200)
@given(st.one_of(live_records(), stamps.map(lambda stamp: Record(deleted=stamp))))
def test_every_number_of_the_format_is_an_integer_exact_in_a_double(record: Record) -> None:
    stored = msgspec.json.decode(encode_record(record))
    numbers = format_numbers(stored)
    assert numbers
    for number in numbers:
        assert type(number) is int
        assert 0 <= number <= 2**53 - 1
        assert float(number) == number


def test_the_greatest_v1_clock_value_read_is_written_again_as_v2() -> None:
    greatest = (MAX_HLC, "n")
    assert decode_value(encode_v1(Record(deleted=greatest)), time_ns=TIME_NS) == Record(deleted=greatest)
    assert decode_value(encode_tombstone(greatest), time_ns=TIME_NS) == Record(deleted=greatest)


@given(stamps)
def test_a_v2_stamp_is_milliseconds_counter_and_node(stamp: Stamp) -> None:
    stored = msgspec.json.decode(encode_tombstone(stamp))
    assert stored == {"_v": 2, "x": [stamp[0] >> 16, stamp[0] & 0xFFFF, stamp[1]]}
    assert stored["x"] == wire_stamp(stamp)


# Values written by other clients


def test_a_foreign_json_object_is_data_stamped_with_the_entry_time_and_no_node() -> None:
    record = decode_value(b'{"state": "idle", "queue": 3}', time_ns=TIME_NS)
    assert type(record) is ForeignRecord  # the entity's complete state (the inbox completes it)
    assert record == Record(
        data={"state": "idle", "queue": 3},
        stamps={"state": (TIME_HLC, FOREIGN_NODE), "queue": (TIME_HLC, FOREIGN_NODE)},
    )
    assert FOREIGN_NODE == ""


@given(st.dictionaries(st.text(max_size=6).filter(lambda name: name != "_v"), json_values, max_size=5))
def test_any_foreign_json_object_is_taken_as_the_entity_data(obj: dict[str, Any]) -> None:
    record = decode_value(_plain.encode(obj), time_ns=TIME_NS)
    assert _canonical.encode(record.data) == _canonical.encode(obj)
    assert set(record.stamps.values()) <= {(TIME_HLC, FOREIGN_NODE)}


def test_a_change_made_through_brainlessdb_in_the_same_millisecond_beats_a_foreign_write() -> None:
    foreign = decode_value(b'{"state": "idle"}', time_ns=TIME_NS).stamps["state"]
    clock = HybridLogicalClock("a", now_ms=lambda: TIME_NS // 1_000_000)
    assert clock.tick() > foreign


@pytest.mark.parametrize("body", [b"", b"garbage", b"{}", b'{"_v": 1}'])
def test_a_foreign_delete_marker_is_a_delete_stamped_with_its_time(body: bytes) -> None:
    assert decode_delete(body, time_ns=TIME_NS) == Record(deleted=(TIME_HLC, FOREIGN_NODE))


# Malformed values


DEEP = 100_000


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b'{"a": 1',
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b'{"_v": 3, "d": {"a": 1}, "s": [1, 0, "n"]}',
        b'{"_v": 2, "d": {"a": 1}, "s": [1, "n"]}',  # a v1 stamp in v2
        b'{"_v": 1, "d": {"a": 1}, "s": [1, 0, "n"]}',  # a v2 stamp in v1
        b'{"_v": 2, "d": {"a": 1}, "s": [1, 65536, "n"]}',  # the counter has 16 bits
        b'{"_v": 2, "d": {"a": 1}, "s": [1, -1, "n"]}',
        b'{"_v": 2, "d": {"a": 1}, "s": [-1, 0, "n"]}',
        b'{"_v": 2, "d": {"a": 1}, "s": [9007199254740992, 0, "n"]}',  # 2**53: not exact in a double
        b'{"_v": 2, "d": {"a": 1}, "s": [1.0, 0, "n"]}',
        b'{"_v": 2, "d": {"a": 1}, "s": [1, 0.0, "n"]}',
        b'{"_v": 2, "d": {"a": 1}, "s": [1, 0, 5]}',
        b'{"_v": 2, "d": {"a": 1}, "s": [true, 0, "n"]}',
        b'{"_v": 2, "d": {"a": 1}, "s": [1, 0, "n"], "t": {"a": [1, 0]}}',
        b'{"_v": 1, "d": {"a": 1}, "s": [-1, "n"]}',  # v1 clock values v2 could not store again
        b'{"_v": 1, "d": {"a": 1}, "s": [590295810358705651712, "n"]}',  # 2**69
        b'{"_v": 1, "d": {"a": 1}, "s": [1, "n"], "t": {"a": [-5, "n"]}}',
        b'{"_v": 2, "x": [1, "n"]}',
        b'{"_v": 2.0, "d": {"a": 1}, "s": [1, 0, "n"]}',
        b'{"_v": "1", "d": {"a": 1}, "s": [1, "n"]}',
        b'{"_v": true, "d": {"a": 1}, "s": [1, "n"]}',
        b'{"_v": 1.0, "d": {"a": 1}, "s": [1, "n"]}',
        b'{"_v": null}',
        b'{"_v": 1}',
        b'{"_v": 1, "d": [1], "s": [1, "n"]}',
        b'{"_v": 1, "d": {"a": 1}}',
        b'{"_v": 1, "d": {"a": 1}, "s": [1]}',
        b'{"_v": 1, "d": {"a": 1}, "s": [1, "n", 2]}',
        b'{"_v": 1, "d": {"a": 1}, "s": ["1", "n"]}',
        b'{"_v": 1, "d": {"a": 1}, "s": [true, "n"]}',
        b'{"_v": 1, "d": {"a": 1}, "s": [1.5, "n"]}',
        b'{"_v": 1, "d": {"a": 1}, "s": [1, 2]}',
        b'{"_v": 1, "d": {"a": 1}, "s": {"hlc": 1, "node": "n"}}',
        b'{"_v": 1, "d": {"a": 1}, "s": [1, "n"], "t": [[1, "n"]]}',
        b'{"_v": 1, "d": {"a": 1}, "s": [1, "n"], "t": {"a": [1]}}',
        b'{"_v": 1, "x": [1]}',
        b'{"_v": 1, "x": null}',
        b"[" * DEEP,
        b"[" * DEEP + b"]" * DEEP,
        b'{"a":' * DEEP,
        b'{"_v": 1, "d": {"a": ' + b"[" * DEEP + b"]" * DEEP + b'}, "s": [1, "n"]}',
    ],
    ids=lambda value: repr(value[:40]),
)
def test_a_malformed_value_raises_decode_error(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_value(value, time_ns=TIME_NS)


@pytest.mark.parametrize(
    "body",
    [
        b'{"_v": 1, "x": [1]}',
        b'{"_v": 1, "x": "soon"}',
        b'{"_v": 1, "x": [true, "n"]}',
        b'{"_v": 2, "x": [1, "n"]}',
        b'{"_v": 2, "x": [1, 65536, "n"]}',
        b'{"_v": 1, "x": [-1, "n"]}',
    ],
)
def test_a_delete_marker_with_a_malformed_stamp_raises_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_delete(body, time_ns=TIME_NS)


def test_a_deeply_nested_delete_marker_body_is_a_foreign_delete() -> None:
    body = b"[" * DEEP + b"]" * DEEP
    assert decode_delete(body, time_ns=TIME_NS) == Record(deleted=(TIME_HLC, FOREIGN_NODE))


def decodes_to_a_valid_record_or_decode_error(value: bytes, *, delete: bool) -> None:
    try:
        record = decode_delete(value, time_ns=TIME_NS) if delete else decode_value(value, time_ns=TIME_NS)
    except DecodeError:
        return
    assert_valid(record)
    if delete:
        assert record.is_deleted


@settings(max_examples=300)
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_give_a_valid_record_or_decode_error(value: bytes, delete: bool) -> None:
    decodes_to_a_valid_record_or_decode_error(value, delete=delete)


envelope_parts = st.one_of(
    json_values,
    stamps.map(list),
    stamps.map(wire_stamp),
    st.tuples(
        st.integers(min_value=-1, max_value=2**53), st.integers(min_value=-1, max_value=2**16), st.text()
    ).map(list),
    st.lists(st.one_of(int64, st.text()), max_size=3),
)
envelopes = st.fixed_dictionaries(
    {"_v": st.one_of(st.sampled_from([1, 2, 2, 2, 3, 0, True, 1.0, 2.0, "2", None]), json_values)},
    optional={
        "d": st.one_of(st.dictionaries(st.text(max_size=3), json_values, max_size=3), json_values),
        "s": envelope_parts,
        "t": st.one_of(st.dictionaries(st.text(max_size=3), envelope_parts, max_size=3), envelope_parts),
        "x": envelope_parts,
    },
)


@settings(max_examples=300)
@given(st.one_of(json_values, envelopes), st.booleans())
def test_random_json_gives_a_valid_record_or_decode_error(obj: Any, delete: bool) -> None:
    decodes_to_a_valid_record_or_decode_error(_plain.encode(obj), delete=delete)


def decoded_or_error(decode: Any, value: bytes) -> tuple[Any, ...]:
    try:
        record = decode(value)
    except DecodeError as exc:
        return ("error", str(exc))
    # The stamps one per field: the compact form may pick another base on a tie (both encode alike).
    return ("record", canon(record), list(record.data), field_stamps(record.compact_stamps, record.data))


@settings(max_examples=500)
@given(
    st.one_of(
        envelopes,
        json_values,
        live_records().map(encode_record),
        live_records().map(encode_v1),
        stamps.map(encode_tombstone),
    )
)
def test_the_typed_envelope_decodes_exactly_as_the_generic_path(obj: Any) -> None:
    """``decode_value`` decodes most values through a typed msgspec struct and falls back to the generic
    decoder for what the struct refuses: both must give the same record, or the same error."""
    value = obj if isinstance(obj, bytes) else _plain.encode(obj)
    fast = decoded_or_error(lambda v: decode_value(v, time_ns=TIME_NS), value)
    assert fast == decoded_or_error(lambda v: _decode_generic(v, TIME_NS), value)


def test_a_decoded_value_whose_fields_share_one_stamp_hands_that_stamp_to_the_entity() -> None:
    record = decode_value(b'{"_v":1,"d":{"a":1,"b":2},"s":[5,"n"]}', time_ns=TIME_NS)
    assert record.compact_stamps == (5, "n")
    foreign = decode_value(b'{"a": 1}', time_ns=TIME_NS)
    assert foreign.compact_stamps == (TIME_HLC, FOREIGN_NODE)
    overridden = decode_value(b'{"_v":1,"d":{"a":1,"b":2},"s":[5,"n"],"t":{"b":[6,"m"]}}', time_ns=TIME_NS)
    assert unpacked_members(overridden.compact_stamps) == ((5, "n"), "b", (6, "m"))  # FieldStamps: no dict
    assert overridden.stamps == {"a": (5, "n"), "b": (6, "m")}


def test_a_decoded_value_with_a_few_fields_stamped_apart_holds_them_in_a_tuple() -> None:
    data = {f"f{i}": i for i in range(MAX_OVERRIDES + 2)}
    few = {f"f{i}": [9, 0, "m"] for i in range(2)}
    record = decode_value(_plain.encode({"_v": 2, "d": data, "s": [5, 0, "n"], "t": few}), time_ns=TIME_NS)
    assert unpacked_members(record.held) == ((5 << 16, "n"), "f0", (9 << 16, "m"), "f1", (9 << 16, "m"))
    assert record.max_stamp() == (9 << 16, "m")
    # Overrides equal to the base are no overrides; names the data lacks are left out.
    same = {"f0": [5, 0, "n"], "zz": [9, 0, "m"]}
    assert decode_value(
        _plain.encode({"_v": 2, "d": data, "s": [5, 0, "n"], "t": same}), time_ns=TIME_NS
    ).compact_stamps == (5 << 16, "n")
    # Past MAX_OVERRIDES fields of their own, or with no field left on the base: a dict.
    many = {name: [9 + i, 0, "m"] for i, name in enumerate(list(data)[: MAX_OVERRIDES + 1])}
    record = decode_value(_plain.encode({"_v": 2, "d": data, "s": [5, 0, "n"], "t": many}), time_ns=TIME_NS)
    assert record.held is None and isinstance(record.compact_stamps, dict)
    every = {"f0": [9, 0, "m"]}
    record = decode_value(
        _plain.encode({"_v": 2, "d": {"f0": 1}, "s": [5, 0, "n"], "t": every}), time_ns=TIME_NS
    )
    assert unpacked(record.compact_stamps) == (9 << 16, "m")


@pytest.mark.parametrize(
    ("stamps", "base"),
    [
        ({"a": (1, "n"), "b": (1, "n"), "c": (2, "m")}, (1, "n")),  # the first field's stamp is most common
        ({"a": (2, "m"), "b": (1, "n"), "c": (1, "n")}, (1, "n")),  # it is not: counted
        ({"a": (2, "m"), "b": (1, "n")}, (2, "m")),  # a tie: the first field's
        ({"a": (3, "k"), "b": (2, "m"), "c": (1, "n"), "d": (1, "n")}, (1, "n")),
    ],
)
def test_the_base_stamp_is_the_one_most_fields_have(stamps: dict[str, Stamp], base: Stamp) -> None:
    data = dict.fromkeys(stamps, 0)
    stored = msgspec.json.decode(encode_entity(data, stamps))
    assert stored["s"] == wire_stamp(base)
    assert stored.get("t", {}) == {name: wire_stamp(stamp) for name, stamp in stamps.items() if stamp != base}


# Values that JSON cannot hold


class Point:
    pass


def deeply_nested_list() -> list[Any]:
    value: list[Any] = []
    for _ in range(DEEP):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        frozenset({1}),
        object(),
        Point(),
        b"bytes",
        datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        float("inf"),
        float("-inf"),
        float("nan"),
        [1, {2}],
        {"nested": {"deeper": {3}}},
        {1: "a key that is not a string"},
        "\ud800",
        pytest.param(deeply_nested_list(), id="deeply nested list"),
    ],
    ids=repr,
)
def test_a_value_json_cannot_hold_raises_encode_error(value: Any) -> None:
    with pytest.raises(EncodeError):
        encode_record(Record(data={"f": value}, stamps={"f": (1, "n")}))


def test_a_live_record_without_fields_raises_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_record(Record())
