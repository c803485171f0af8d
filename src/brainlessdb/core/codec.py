"""Stored values: an entity version to bytes and back (format v1, described in ``docs/format.md``).

A live entity is stored as one JSON object::

    {"_v": 1, "d": {"state": "ringing", "queue_id": 5}, "s": [113761850009190400, "prague-1"],
     "t": {"state": [113761850075709440, "brno-1"]}}

``d`` holds the fields, ``s`` the stamp shared by most of them and ``t`` the stamps of the fields whose
stamp differs from ``s`` (omitted when empty). A deleted entity is a KV delete marker whose body is
``{"_v": 1, "x": [hlc, node]}``. A JSON object without ``_v`` was written by another client: it is taken as
the entity's data, stamped with the time NATS stored it, and an empty node name (so any later change made
through brainlessdb wins over it).
"""

from __future__ import annotations

import math
from sys import intern
from typing import Any, Final

import msgspec

from brainlessdb.core.clock import Stamp, hlc_from_ms
from brainlessdb.core.merge import Record, Stamps
from brainlessdb.errors import DecodeError, EncodeError

FORMAT_VERSION: Final = 1
FOREIGN_NODE: Final = ""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode_record(record: Record) -> bytes:
    """The stored bytes of an entity version."""
    if record.deleted is not None:
        return encode_tombstone(record.deleted)
    return encode_entity(record.data, record.stamps)


def encode_entity(data: dict[str, Any], stamps: Stamps, *, checked: bool = False) -> bytes:
    """The stored bytes of a live entity: its fields and their stamps (one, or one per field).

    ``checked=True`` skips the walk that refuses what msgspec would store as something else (a set as an
    array, bytes as base64): for data known to be JSON already, as an entity's is (checked when it
    entered memory, or decoded from JSON).
    """
    if isinstance(stamps, dict):
        if not stamps:
            raise EncodeError("an entity version without stamps cannot be stored")
        base = next(iter(stamps.values()))
        overrides = {name: stamp for name, stamp in stamps.items() if stamp != base}
        if len(overrides) * 2 >= len(stamps):
            # The first field's stamp is not the majority's: count (rare; usually one stamp covers the
            # fields of the add or load and a few changed fields have their own).
            base = _most_common(stamps)
            overrides = {name: stamp for name, stamp in stamps.items() if stamp != base}
    else:
        if not data:
            raise EncodeError("an entity version without stamps cannot be stored")
        base, overrides = stamps, None
    envelope: dict[str, Any] = {"_v": FORMAT_VERSION, "d": data, "s": base}
    if overrides:
        envelope["t"] = overrides
    if not checked:
        try:
            _check_json(data)
        except RecursionError as exc:
            raise EncodeError("entity data is nested too deeply to store as JSON") from exc
    try:
        return _encoder.encode(envelope)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(f"cannot encode entity data as JSON: {exc}") from exc


def encode_tombstone(stamp: Stamp) -> bytes:
    """The body of the delete marker of an entity deleted at ``stamp``."""
    return _encoder.encode({"_v": FORMAT_VERSION, "x": stamp})


class _Envelope(msgspec.Struct, gc=False):
    """A stored value of format v1 as msgspec decodes it: field types checked in C, one object made.

    Absent members stay ``UNSET``, which a JSON ``null`` can never be, so ``"x": null`` is told apart from
    no ``x`` and fails as before. Not GC-tracked: it lives only while one value is decoded.
    """

    v: int = msgspec.field(name="_v")
    d: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    s: tuple[int, str] | msgspec.UnsetType = msgspec.UNSET
    t: dict[str, tuple[int, str]] | msgspec.UnsetType | None = msgspec.UNSET
    x: tuple[int, str] | msgspec.UnsetType = msgspec.UNSET


_envelope_decoder = msgspec.json.Decoder(_Envelope)


def decode_value(value: bytes, *, time_ns: int) -> Record:
    """The entity version stored in a KV value written at ``time_ns`` (nanoseconds since the epoch).

    The fast path decodes the envelope into a typed ``_Envelope``, so msgspec checks the version, the data
    and every stamp while parsing. Whatever it refuses — a foreign JSON object (no ``"_v"``), a value of
    another format version, or a malformed one — goes through ``_decode_generic``, which decides what it
    is exactly as the format says, so both paths accept and reject the same values.
    """
    try:
        envelope = _envelope_decoder.decode(value)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return _decode_generic(value, time_ns)
    if envelope.v != FORMAT_VERSION:
        raise DecodeError(f"unsupported format version {envelope.v!r}")
    if envelope.x is not msgspec.UNSET:
        hlc, node = envelope.x
        return Record(deleted=(hlc, intern(node)))
    data = envelope.d
    if data is msgspec.UNSET:
        raise DecodeError("missing entity data ('d')")
    if envelope.s is msgspec.UNSET:
        raise DecodeError("malformed stamp None")
    hlc, node = envelope.s
    # Interned: a handful of node names stand in thousands of stamps, one string each is enough.
    base = (hlc, intern(node))
    overrides = envelope.t
    if not overrides:
        # Every field has the base stamp: the record (and the entity made of it) holds that one stamp.
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
        return Record(data=obj, shared=(hlc_from_ms(time_ns // 1_000_000), FOREIGN_NODE))
    if not _is_current_version(obj["_v"]):
        raise DecodeError(f"unsupported format version {obj['_v']!r}")
    if "x" in obj:
        return Record(deleted=_stamp(obj["x"]))
    data = obj.get("d")
    if not isinstance(data, dict):
        raise DecodeError("missing entity data ('d')")
    base = _stamp(obj.get("s"))
    overrides = obj.get("t")
    if not overrides:
        return Record(data=data, shared=base)
    if not isinstance(overrides, dict):
        raise DecodeError("malformed field stamps ('t')")
    stamps = dict.fromkeys(data, base)
    for name, raw in overrides.items():
        if name in stamps:
            stamps[name] = _stamp(raw)
    return Record(data=data, stamps=stamps)


def decode_delete(value: bytes, *, time_ns: int) -> Record:
    """The deleted version behind a KV delete or purge marker (a foreign one has no body)."""
    if value:
        try:
            obj = _decoder.decode(value)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            obj = None
        if isinstance(obj, dict) and _is_current_version(obj.get("_v")) and "x" in obj:
            return Record(deleted=_stamp(obj["x"]))
    return Record(deleted=(hlc_from_ms(time_ns // 1_000_000), FOREIGN_NODE))


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


def _is_current_version(version: Any) -> bool:
    # ``type() is int``: JSON ``true`` and ``1.0`` are == 1 in Python but are not the version number.
    return type(version) is int and version == FORMAT_VERSION


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


def _stamp(raw: Any) -> Stamp:
    if type(raw) is list and len(raw) == 2 and type(raw[0]) is int and type(raw[1]) is str:
        # Interned: a handful of node names stand in thousands of stamps, one string each is enough.
        return (raw[0], intern(raw[1]))
    raise DecodeError(f"malformed stamp {raw!r}")


def _most_common(stamps: dict[str, Stamp]) -> Stamp:
    """The stamp most fields have (the first such in field order on a tie), to store as the base ``s``."""
    values = list(stamps.values())
    return max(dict.fromkeys(values), key=values.count)
