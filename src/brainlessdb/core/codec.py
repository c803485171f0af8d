"""Stored values: an entity version to bytes and back (format v2, described in ``docs/format.md``).

A live entity is stored as one JSON object::

    {"_v": 2, "d": {"state": "ringing", "queue_id": 5}, "s": [1795000000123, 0, "prague-1"],
     "t": {"state": [1795000001138, 2, "brno-1"]}}

``d`` holds the fields, ``s`` the stamp shared by most of them and ``t`` the stamps of the fields whose
stamp differs from ``s`` (omitted when empty). ``p`` holds the stamps of changes made inside dict fields
(``{"caller": {"/city": [ms, counter, node]}}``: a JSON Pointer below the field) and ``c`` the tallies of
counter fields (``{"attempts": {"prague-1~3fa9c2d1": [added, taken]}}``), each omitted when empty; ``e`` the
entity's expiry (``{"at": 1795003600000, "s": [ms, counter, node]}``: its deadline in Unix milliseconds, or
``null`` once removed, and the stamp of the change that set it; see ``core.expiry``), omitted if it never
had one. A stamp
is ``[ms, counter, node]``: every number is exact in an IEEE double, so a JavaScript client
(``JSON.parse``, ``JSON.stringify``) keeps it. In memory a stamp stays ``(ms << 16 | counter, node)`` (see
``core.clock``). A deleted entity is a KV delete marker whose body is ``{"_v": 2, "x": [ms, counter,
node]}``. Values of format v1 (stamps ``[hlc, node]``) are still read. A JSON object without ``_v`` was
written by another client: it is decoded as a ``ForeignRecord`` stamped with the time NATS stored it and
an empty node name (so any later change made through brainlessdb wins over it); the inbox takes it as the
entity's complete state (``core.sync.inbox``).
"""

from __future__ import annotations

import math
from sys import intern
from typing import Annotated, Any, Final

import msgspec

from brainlessdb.core import counters, nested
from brainlessdb.core.clock import COUNTER_BITS, Stamp, hlc_from_ms
from brainlessdb.core.expiry import Expiry
from brainlessdb.core.merge import Extras, Record
from brainlessdb.core.stamps import (
    MAX_OVERRIDES,
    Stamps,
    field_stamps,
    most_common,
    pack,
    unpack,
    unpack_fields,
    unpacked,
)
from brainlessdb.errors import DecodeError, EncodeError

FORMAT_VERSION: Final = 2
"""The format version this library writes."""
READ_VERSIONS: Final = frozenset({1, 2})
"""The format versions this library reads."""
FOREIGN_NODE: Final = ""
MAX_MS: Final = 2**53 - 1
"""The greatest millisecond value a v2 stamp holds: every number in the format is exact in a double."""
MAX_COUNTER: Final = (1 << COUNTER_BITS) - 1
MAX_HLC: Final = MAX_MS << COUNTER_BITS | MAX_COUNTER
"""The greatest packed clock value of a v1 stamp read: one that v2 can write again."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class ForeignRecord(Record):
    """A plain JSON object another client wrote (no ``_v``): the entity's complete state at its stamp.

    Every field it holds is stamped alike (``shared``: the time NATS stored it, no node name). The inbox
    checks it against the schema in full and completes it (see ``core.sync.inbox``).
    """

    __slots__ = ()


def encode_record(record: Record) -> bytes:
    """The stored bytes of an entity version."""
    if record.deleted is not None:
        return encode_tombstone(record.deleted)
    return encode_entity(record.data, record.stamps, record.extras)


def encode_entity(
    data: dict[str, Any], stamps: Stamps, extras: Extras | None = None, *, checked: bool = False
) -> bytes:
    """The stored bytes of a live entity: its fields, their stamps (one, or one per field), and the
    extras of its dict and counter fields.

    ``checked=True`` skips the walk that refuses what msgspec would store as something else (a set as an
    array, bytes as base64): for data known to be JSON already, as an entity's is (checked when it
    entered memory, or decoded from JSON).
    """
    if type(stamps) is int:
        stamps = unpack(stamps) if stamps >= 0 else unpack_fields(stamps)
    if type(stamps) is tuple and len(stamps) == 2:
        if not data:
            raise EncodeError("an entity version without stamps cannot be stored")
        base: Stamp = stamps
        overrides: dict[str, tuple[int, int, str]] | None = None
    else:
        base, overrides = _base_and_overrides(data, stamps)
    hlc, node = base
    envelope: dict[str, Any] = {
        "_v": FORMAT_VERSION,
        "d": data,
        "s": (hlc >> COUNTER_BITS, hlc & MAX_COUNTER, node),
    }
    if overrides:
        envelope["t"] = overrides
    if extras is not None:
        if extras.paths:
            envelope["p"] = {
                name: {nested.pointer(path): wire_stamp(stamp) for path, stamp in paths.items()}
                for name, paths in extras.paths.items()
            }
        if extras.counts:
            envelope["c"] = extras.counts
        if extras.expiry is not None:
            deadline, stamp = extras.expiry
            envelope["e"] = {"at": deadline, "s": wire_stamp(stamp)}
    if not checked:
        try:
            _check_json(data)
        except RecursionError as exc:
            raise EncodeError("entity data is nested too deeply to store as JSON") from exc
    try:
        return _encoder.encode(envelope)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(f"cannot encode entity data as JSON: {exc}") from exc


def _base_and_overrides(
    data: dict[str, Any], stamps: Stamps
) -> tuple[Stamp, dict[str, tuple[int, int, str]]]:
    """The base stamp ``s`` and the other fields' stamps ``t`` (as v2 stores them) of per-field stamps."""
    if type(stamps) is tuple and len(stamps) < 2 * len(data):
        # FieldStamps whose base a field has: stored as held (their base, then the others' stamps).
        base = unpacked(stamps[0])
        return base, {
            stamps[index]: (stamp[0] >> COUNTER_BITS, stamp[0] & MAX_COUNTER, stamp[1])
            for index in range(1, len(stamps), 2)
            if (stamp := unpacked(stamps[index + 1])) != base
        }
    per_field = stamps if isinstance(stamps, dict) else field_stamps(stamps, data)
    if not per_field:
        raise EncodeError("an entity version without stamps cannot be stored")
    base = next(iter(per_field.values()))
    # The stamps of the fields whose stamp is not the base's, as v2 stores them (one pass).
    overrides = {
        name: (stamp[0] >> COUNTER_BITS, stamp[0] & MAX_COUNTER, stamp[1])
        for name, stamp in per_field.items()
        if stamp != base
    }
    if len(overrides) * 2 >= len(per_field):
        # The first field's stamp is not the majority's: count (rare; usually one stamp covers the
        # fields of the add or load and a few changed fields have their own).
        base = most_common(per_field)
        overrides = {
            name: (stamp[0] >> COUNTER_BITS, stamp[0] & MAX_COUNTER, stamp[1])
            for name, stamp in per_field.items()
            if stamp != base
        }
    return base, overrides


def encode_tombstone(stamp: Stamp) -> bytes:
    """The body of the delete marker of an entity deleted at ``stamp``."""
    hlc, node = stamp
    return _encoder.encode({"_v": FORMAT_VERSION, "x": (hlc >> COUNTER_BITS, hlc & MAX_COUNTER, node)})


def wire_stamp(stamp: Stamp) -> list[Any]:
    """A stamp as format v2 stores it: ``[ms, counter, node]``."""
    hlc, node = stamp
    return [hlc >> COUNTER_BITS, hlc & MAX_COUNTER, node]


# -- decoding ----------------------------------------------------------------------------------------

_Ms = Annotated[int, msgspec.Meta(ge=0, le=MAX_MS)]
_Counter = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)]
_WireStamp = tuple[_Ms, _Counter, str]
# msgspec bounds fit an int64: a greater v1 clock value goes to the generic path, which checks ``MAX_HLC``.
_Hlc = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Total = Annotated[int, msgspec.Meta(ge=0, le=counters.LIMIT)]
_Paths = dict[str, dict[str, _WireStamp]]
_Counts = dict[str, dict[str, tuple[_Total, _Total]]]


class _ExpiryWire(msgspec.Struct, gc=False):
    """Member ``e`` of format v2: the entity's deadline (Unix ms, or null once removed) and its stamp."""

    at: _Ms | None
    s: _WireStamp


class _EnvelopeV2(msgspec.Struct, tag_field="_v", tag=2, gc=False):
    """A stored value of format v2 as msgspec decodes it: field types checked in C, one object made.

    Absent members stay ``UNSET``, which a JSON ``null`` can never be, so ``"x": null`` is told apart from
    no ``x`` and fails as before. Not GC-tracked: it lives only while one value is decoded.
    """

    d: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    s: _WireStamp | msgspec.UnsetType = msgspec.UNSET
    t: dict[str, _WireStamp] | msgspec.UnsetType | None = msgspec.UNSET
    x: _WireStamp | msgspec.UnsetType = msgspec.UNSET
    p: _Paths | msgspec.UnsetType | None = msgspec.UNSET
    c: _Counts | msgspec.UnsetType | None = msgspec.UNSET
    e: _ExpiryWire | msgspec.UnsetType | None = msgspec.UNSET


class _EnvelopeV1(msgspec.Struct, tag_field="_v", tag=1, gc=False):
    """A stored value of format v1 (stamps ``[hlc, node]``), still read.

    A clock value is read only if v2 can store it again (0 to ``MAX_HLC``; every clock makes such values):
    whatever this library reads, it can write.
    """

    d: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    s: tuple[_Hlc, str] | msgspec.UnsetType = msgspec.UNSET
    t: dict[str, tuple[_Hlc, str]] | msgspec.UnsetType | None = msgspec.UNSET
    x: tuple[_Hlc, str] | msgspec.UnsetType = msgspec.UNSET


_envelope_decoder = msgspec.json.Decoder(_EnvelopeV2 | _EnvelopeV1)


def decode_value(value: bytes, *, time_ns: int) -> Record:
    """The entity version stored in a KV value written at ``time_ns`` (nanoseconds since the epoch).

    The fast path decodes the envelope into a typed struct (one per format version, chosen by ``_v``), so
    msgspec checks the version, the data and every stamp while parsing. Whatever it refuses — a foreign
    JSON object (no ``"_v"``), a value of another format version, or a malformed one — goes through
    ``_decode_generic``, which decides what it is exactly as the format says, so both paths accept and
    reject the same values.
    """
    try:
        envelope = _envelope_decoder.decode(value)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return _decode_generic(value, time_ns)
    if type(envelope) is _EnvelopeV1:
        return _decode_v1(envelope)
    v2: _EnvelopeV2 = envelope  # type: ignore[assignment]  # the one other kind (no call to narrow it)
    x = v2.x
    if x is not msgspec.UNSET:
        ms, counter, node = x
        return Record(deleted=(ms << COUNTER_BITS | counter, intern(node)))
    data = v2.d
    if data is msgspec.UNSET:
        raise DecodeError("missing entity data ('d')")
    s = v2.s
    if s is msgspec.UNSET:
        raise DecodeError("malformed stamp None")
    ms, counter, node = s
    # Interned: a handful of node names stand in thousands of stamps, one string each is enough.
    base = (ms << COUNTER_BITS | counter, intern(node))
    overrides = v2.t
    # Every field has the base stamp (the record, and the entity made of it, holds that one stamp), or a
    # few have stamps of their own.
    record = _overridden(data, base, overrides) if overrides else Record(data=data, shared=base)
    if v2.p or v2.c:
        record.extras = _extras(record, v2.p or None, v2.c or None)
    e = v2.e
    if e is not None and e is not msgspec.UNSET:
        _set_expiry(record, (e.at, _wire(e.s)))
    return record


def _overridden(data: dict[str, Any], base: Stamp, overrides: dict[str, _WireStamp]) -> Record:
    """A version whose fields ``overrides`` names have stamps of their own (the others ``base``): held as
    ``FieldStamps`` while a field keeps the base and few differ from it, else as a dict."""
    pairs: list[Any] = []
    for name, (ms, counter, node) in overrides.items():
        if name in data:
            stamp = (ms << COUNTER_BITS | counter, intern(node))
            if stamp != base:
                pairs += (intern(name), stamp)
    if not pairs:
        return Record(data=data, shared=base)
    if len(pairs) < 2 * len(data) and len(pairs) <= 2 * MAX_OVERRIDES:
        for index in range(1, len(pairs), 2):
            pairs[index] = pack(pairs[index])
        return Record(data=data, held=(pack(base), *pairs))
    stamps = dict.fromkeys(data, base)
    for index in range(0, len(pairs), 2):
        stamps[pairs[index]] = pairs[index + 1]
    return Record(data=data, stamps=stamps)


def _set_expiry(record: Record, expiry: Expiry) -> None:
    extras = record.extras
    if extras is None:
        extras = record.extras = Extras()
    extras.expiry = expiry


def _extras(record: Record, raw_paths: Any, raw_counts: Any) -> Extras | None:
    """The extras of a decoded version (members ``p`` and ``c``, their types checked): what of them its
    fields can hold. Writes inside a field that its value no longer reflects, and tallies of a field that
    is not an integer, are left out (another client wrote over them)."""
    data = record.data
    extras = Extras()
    if raw_paths:
        stamps = record.stamps
        for name, entries in raw_paths.items():
            if name in data and isinstance(data[name], dict):
                paths = {nested.parse_pointer(text): _wire(raw) for text, raw in entries.items()}
                kept = nested.keep_consistent(data[name], stamps[name], paths)
                if kept:
                    extras.paths[name] = kept
    if raw_counts:
        for name, tallies in raw_counts.items():
            if name in data and counters.is_counter_value(data[name]) and tallies:
                extras.counts[name] = {
                    intern(writer): (added, taken) for writer, (added, taken) in tallies.items()
                }
    return extras or None


def _wire(raw: Any) -> Stamp:
    ms, counter, node = raw
    return (ms << COUNTER_BITS | counter, intern(node))


def _decode_v1(envelope: _EnvelopeV1) -> Record:
    if envelope.x is not msgspec.UNSET:
        hlc, node = envelope.x
        return Record(deleted=(hlc, intern(node)))
    data = envelope.d
    if data is msgspec.UNSET:
        raise DecodeError("missing entity data ('d')")
    if envelope.s is msgspec.UNSET:
        raise DecodeError("malformed stamp None")
    hlc, node = envelope.s
    base = (hlc, intern(node))
    overrides = envelope.t
    if not overrides:
        return Record(data=data, shared=base)
    stamps = dict.fromkeys(data, base)
    for name, (hlc, node) in overrides.items():
        if name in stamps:
            stamps[name] = (hlc, intern(node))
    return Record(data=data, stamps=stamps)


def _decode_generic(value: bytes, time_ns: int) -> Record:
    """``decode_value`` for what the typed envelope refused: foreign objects, other versions, bad values."""
    try:
        obj = _decoder.decode(value)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
    if "_v" not in obj:
        return ForeignRecord(data=obj, shared=foreign_stamp(time_ns))
    version = obj["_v"]
    if type(version) is not int or version not in READ_VERSIONS:
        # ``type() is int``: JSON ``true`` and ``1.0`` are == 1 in Python but are not a version number.
        raise DecodeError(f"unsupported format version {version!r}")
    if "x" in obj:
        return Record(deleted=_stamp(obj["x"], version))
    data = obj.get("d")
    if not isinstance(data, dict):
        raise DecodeError("missing entity data ('d')")
    base = _stamp(obj.get("s"), version)
    overrides = obj.get("t")
    if not overrides:
        record = Record(data=data, shared=base)
    else:
        if not isinstance(overrides, dict):
            raise DecodeError("malformed field stamps ('t')")
        stamps = dict.fromkeys(data, base)
        for name, raw in overrides.items():
            if name in stamps:
                stamps[name] = _stamp(raw, version)
        record = Record(data=data, stamps=stamps)
    if version == FORMAT_VERSION and (obj.get("p") or obj.get("c")):
        record.extras = _extras(record, _checked_paths(obj.get("p")), _checked_counts(obj.get("c")))
    if version == FORMAT_VERSION and obj.get("e") is not None:
        _set_expiry(record, _checked_expiry(obj["e"]))
    return record


def _checked_expiry(raw: Any) -> Expiry:
    """Member ``e`` as the generic decoder found it, checked as the typed path checks it."""
    if isinstance(raw, dict) and "at" in raw and "s" in raw:
        deadline = raw["at"]
        if deadline is None or (type(deadline) is int and 0 <= deadline <= MAX_MS):
            return deadline, _stamp(raw["s"], FORMAT_VERSION)
    raise DecodeError(f"malformed expiry {raw!r}")


def _checked_paths(raw: Any) -> dict[str, dict[str, Any]] | None:
    """Member ``p`` as the generic decoder found it, checked as the typed path checks it."""
    if not raw:
        return None
    if not isinstance(raw, dict) or not all(isinstance(entries, dict) for entries in raw.values()):
        raise DecodeError("malformed stamps inside fields ('p')")
    for entries in raw.values():
        for stamp in entries.values():
            _stamp(stamp, FORMAT_VERSION)
    return raw


def _checked_counts(raw: Any) -> dict[str, dict[str, tuple[int, int]]] | None:
    """Member ``c`` as the generic decoder found it, checked as the typed path checks it."""
    if not raw:
        return None
    if not isinstance(raw, dict) or not all(isinstance(tallies, dict) for tallies in raw.values()):
        raise DecodeError("malformed counter tallies ('c')")
    for tallies in raw.values():
        for tally in tallies.values():
            if not (
                type(tally) is list
                and len(tally) == 2
                and all(type(n) is int and 0 <= n <= counters.LIMIT for n in tally)
            ):
                raise DecodeError(f"malformed counter tally {tally!r}")
    return raw


def decode_delete(value: bytes, *, time_ns: int) -> Record:
    """The deleted version behind a KV delete or purge marker (a foreign one has no body)."""
    if value:
        try:
            obj = _decoder.decode(value)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            obj = None
        if isinstance(obj, dict) and "x" in obj:
            version = obj.get("_v")
            if type(version) is int and version in READ_VERSIONS:
                return Record(deleted=_stamp(obj["x"], version))
    return Record(deleted=foreign_stamp(time_ns))


def foreign_stamp(time_ns: int) -> Stamp:
    """The stamp of what another client wrote at ``time_ns``: that millisecond, counter 0, no node name."""
    return (hlc_from_ms(time_ns // 1_000_000), FOREIGN_NODE)


def encode_json(obj: Any) -> bytes:
    """Plain JSON bytes (schemas and other metadata)."""
    try:
        return _encoder.encode(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode as JSON: {exc}") from exc


def decode_json(value: bytes) -> Any:
    """Plain JSON from bytes."""
    try:
        return _decoder.decode(value)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc


_PLAIN: Final = frozenset({str, int, bool})


def _check_json(value: Any) -> None:
    """Raise ``EncodeError`` for a value that JSON cannot hold and msgspec would store as something else.

    msgspec writes sets as arrays, bytes as base64, datetimes as strings and infinities as ``null``: the
    value would come back changed. Tuples are arrays (the schema types them as lists).
    """
    if type(value) is dict:
        # The common case, an entity's fields, without a call per plain value or float.
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodeError(f"a JSON object key must be a string, not {type(key).__name__}")
            kind = type(item)
            if item is None or kind in _PLAIN:
                continue
            if kind is float:
                if not math.isfinite(item):
                    raise EncodeError(f"{item!r} cannot be stored as JSON")
                continue
            _check_json(item)
        return
    if value is None or isinstance(value, (str, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeError(f"{value!r} cannot be stored as JSON")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodeError(f"a JSON object key must be a string, not {type(key).__name__}")
            _check_json(item)
        return
    raise EncodeError(f"a {type(value).__name__} cannot be stored as JSON")


def _stamp(raw: Any, version: int) -> Stamp:
    """A stamp of format ``version`` as the generic decoder found it, checked as the typed path checks it."""
    if type(raw) is list:
        if version == FORMAT_VERSION:
            if len(raw) == 3:
                ms, counter, node = raw
                if (
                    type(ms) is int
                    and type(counter) is int
                    and type(node) is str
                    and 0 <= ms <= MAX_MS
                    and 0 <= counter <= MAX_COUNTER
                ):
                    # Interned: a handful of node names stand in thousands of stamps, one string each.
                    return (ms << COUNTER_BITS | counter, intern(node))
        elif len(raw) == 2 and type(raw[0]) is int and type(raw[1]) is str and 0 <= raw[0] <= MAX_HLC:
            return (raw[0], intern(raw[1]))
    raise DecodeError(f"malformed stamp {raw!r}")
