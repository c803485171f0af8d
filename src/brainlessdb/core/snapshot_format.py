"""The snapshot file: what it holds (``CollectionSnapshot``), and its bytes and back.

The file is a magic tag (its last byte the format version), a CRC-32 of the content, its length, and the
content (MessagePack): a truncated or altered file is refused as corrupt before anything of it is used,
and a file of another format is refused, never guessed at. Rows are decoded in C with the whole file, as
the tuples entities hold; a field an entity lacks is a MessagePack extension in its row. ``core.snapshot``
takes a collection's memory into a snapshot and puts one back. Pure: no I/O here.
"""

from __future__ import annotations

import struct
import zlib
from typing import Annotated, Any, Final

import msgspec

from brainlessdb.core.codec import encode_entity
from brainlessdb.core.stamps import compact
from brainlessdb.core.values import MISSING
from brainlessdb.errors import DecodeError

FORMAT: Final = 2
"""The snapshot format this library writes and reads (another is refused, never guessed at). Format 1
held each entity's fields as a map."""
MAGIC: Final = b"BRLSNAP\x02"
_HEADER: Final = struct.Struct(">8sIQ")  # magic, CRC-32 of the content, length of the content


_MISSING_CODE: Final = 1
"""The MessagePack extension type standing for ``MISSING`` in a row: a field the entity does not have."""


_Hlc = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""A clock value as the stored format takes it (checked in C as the file is decoded)."""
_Index = Annotated[int, msgspec.Meta(ge=0)]


class SnapshotEntity(msgspec.Struct, array_like=True, gc=False):
    """One entity at the revision of its key: its row (see ``core.rows``; in the order of the snapshot's
    ``fields``), the stamp most of its fields have (its clock value ``hlc`` and the index of its node in
    the snapshot's ``nodes``) and the stamps of the others (``overrides``); or, for
    one with extras (stamps inside dict fields, counter tallies, an expiry) or fields MessagePack cannot
    hold, its stored version (``value``, format v2 bytes, see ``core.codec``) instead. Rows are decoded in
    C with the whole file, as the tuples an entity holds: the common case, and the one a restart of a
    million entities spends its time on."""

    uuid: str
    revision: int
    row: tuple[Any, ...] | None = None
    hlc: _Hlc | None = None
    node: _Index | None = None
    overrides: dict[str, tuple[int, str]] | None = None
    value: bytes | None = None


class SnapshotDelete(msgspec.Struct, array_like=True, gc=False):
    """One remembered delete whose marker is stored: its uuid, its stamp, the revision of its marker."""

    uuid: str
    hlc: int
    node: str
    revision: int


class CollectionSnapshot(msgspec.Struct, kw_only=True):
    """Everything of one collection's memory a restart needs, as of ``revision`` of its bucket."""

    format: int = FORMAT
    namespace: str
    collection: str
    bucket: str
    origin: str
    """The identity of the bucket (its stream's creation time on NATS): a bucket recreated under the same
    name has another one."""
    revision: int
    """Every entry of the bucket up to this revision is in the snapshot."""
    captured_ms: int
    """When the snapshot was taken (wall-clock Unix ms)."""
    schema_version: int | None
    fields: list[str]
    """The names of the fields by their position in the entities' rows."""
    nodes: list[str]
    """The node names of the entities' stamps (their ``node``), by index."""
    entities: list[SnapshotEntity]
    deletes: list[SnapshotDelete]
    refetch: list[str]
    """Keys whose stored version is not in the snapshot (a local change or delete was pending)."""


def _missing_of(code: int, data: memoryview) -> Any:
    if code != _MISSING_CODE:
        raise msgspec.ValidationError(f"unknown MessagePack extension type {code}")
    return MISSING


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CollectionSnapshot, ext_hook=_missing_of)
MISSING_EXT: Final = msgspec.msgpack.Ext(_MISSING_CODE, b"")
"""What a captured row holds where the entity lacks the field (decoded as ``MISSING``)."""


def encode(snapshot: CollectionSnapshot) -> bytes:
    """The bytes of a snapshot file."""
    try:
        content = _encoder.encode(snapshot)
    except (OverflowError, TypeError, ValueError):
        # A field MessagePack cannot hold (an integer beyond 64 bits): such entities as stored versions.
        snapshot.entities = [_as_stored(item, snapshot) for item in snapshot.entities]
        content = _encoder.encode(snapshot)
    return _HEADER.pack(MAGIC, zlib.crc32(content), len(content)) + content


def decode(data: bytes) -> CollectionSnapshot:
    """The snapshot in the bytes of a snapshot file; ``DecodeError`` if they are not one, intact."""
    if len(data) < _HEADER.size:
        raise DecodeError(f"a snapshot file of {len(data)} bytes is truncated")
    magic, crc, length = _HEADER.unpack_from(data)
    if magic[:7] != MAGIC[:7]:
        raise DecodeError("not a snapshot file")
    if magic != MAGIC:
        raise DecodeError(f"snapshot format {magic[7]} is not format {FORMAT}")
    content = memoryview(data)[_HEADER.size :]
    if len(content) != length:
        raise DecodeError(f"snapshot content is {len(content)} bytes, its header says {length}: truncated")
    if zlib.crc32(content) != crc:
        raise DecodeError("snapshot content does not match its checksum: corrupt")
    try:
        snapshot = _decoder.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"unreadable snapshot content: {exc}") from exc
    if snapshot.format != FORMAT:
        raise DecodeError(f"snapshot format {snapshot.format} is not format {FORMAT}")
    return snapshot


def _as_stored(item: SnapshotEntity, snapshot: CollectionSnapshot) -> SnapshotEntity:
    if item.row is None:
        return item
    try:
        _encoder.encode(item.row)
    except (OverflowError, TypeError, ValueError):
        return SnapshotEntity(item.uuid, item.revision, value=stored_version(item, snapshot))
    return item


def stored_version(item: SnapshotEntity, snapshot: CollectionSnapshot) -> bytes:
    """The stored version of ``item`` (a row of the snapshot's fields), as the bucket held it at its
    revision."""
    if item.value is not None:
        return item.value
    if item.row is None or item.hlc is None or item.node is None or item.node >= len(snapshot.nodes):
        return b""  # not a version: the inbox sets it aside, as a replay would such an entry
    base = (item.hlc, snapshot.nodes[item.node])
    fields = snapshot.fields
    # A row as captured marks a missing field with the extension, one decoded with ``MISSING``.
    data = {
        name: value
        for name, value in zip(fields, item.row, strict=False)
        if value is not MISSING and value is not MISSING_EXT
    }
    stamps = {**dict.fromkeys(data, base), **(item.overrides or {})}
    return encode_entity(data, compact(stamps), checked=True)
