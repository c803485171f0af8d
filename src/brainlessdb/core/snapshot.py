"""Snapshots: a collection's memory as one local file, so that a restart replays only what changed since.

A snapshot holds, for one collection, what a full replay of its bucket up to ``revision`` would have put
in memory: each entity at the revision of its key (its row of fields, in the order the snapshot's
``fields`` names them, and their stamps; or, with extras, the stored version the outbox would write), and
the deletes remembered (their stamp and the revision of their
marker). Loading it and then applying the bucket's entries after ``revision`` ends in the same memory as a
full replay: an entity new to memory is made as the inbox makes one it never saw, anything else goes
through ``Inbox.apply`` as a replayed entry, and every merge is idempotent and guarded by revisions.

What the bucket does not hold yet is left out: an entity with a local change not acknowledged (dirty or in
flight) and a delete whose marker is unwritten are listed by uuid only (``refetch``), and the shell reads
their stored version from the bucket when it restores the snapshot (the journal, if one is kept, holds the
changes themselves). A snapshot taken during a full replay would hold what the replay may still drop, so
the shell never takes one then.

Whether a snapshot may be used is decided here too (``unusable``): it must be of this format, namespace,
collection and bucket (the same bucket, not one recreated under its name), of the schema version in force,
and recent enough that no delete marker written after it can have been removed since (the same rule as a
watch that resumes after an outage: younger than the delete retention, and the bucket still holding every
revision after it). Anything else is refused, and the caller replays the bucket in full.

The file is a magic tag, a CRC-32 of the content, its length, and the content (MessagePack): a truncated
or altered file is refused as corrupt before anything of it is used. Pure: no I/O here.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec

from brainlessdb.core.clock import Stamp
from brainlessdb.core.codec import encode_entity, encode_tombstone
from brainlessdb.core.collection import Collection
from brainlessdb.core.entity import Entity, new_entity
from brainlessdb.core.rows import Layout, Row
from brainlessdb.core.stamps import (
    NODE_BITS,
    NODE_MASK,
    PackedStamp,
    Stamps,
    compact,
    field_stamps,
    most_common,
    pack,
    packed_nodes,
    repacking,
    unpack,
)
from brainlessdb.core.values import MISSING
from brainlessdb.errors import DecodeError, EncodeError
from brainlessdb.storage.base import Entry, Op

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


@dataclass(frozen=True, slots=True)
class Expected:
    """What a snapshot must match to be used: the node's namespace, the collection and its bucket, what
    the bucket retains now, the schema in force, the clock, and how long delete markers are kept."""

    namespace: str
    collection: str
    bucket: str
    origin: str
    first_revision: int
    """The bucket's first retained revision (its last + 1 when it is empty)."""
    last_revision: int
    schema_version: int | None
    now_ms: int
    retention_ms: float


def _missing_of(code: int, data: memoryview) -> Any:
    if code != _MISSING_CODE:
        raise msgspec.ValidationError(f"unknown MessagePack extension type {code}")
    return MISSING


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CollectionSnapshot, ext_hook=_missing_of)
_MISSING_EXT: Final = msgspec.msgpack.Ext(_MISSING_CODE, b"")


def capture(
    collection: Collection[Any], *, namespace: str, bucket: str, origin: str, revision: int, now_ms: int
) -> CollectionSnapshot:
    """The snapshot of ``collection`` whose memory holds every entry of its bucket up to ``revision``."""
    sync = collection.sync
    outbox = sync.outbox
    layout = collection._table.layout
    entities: list[SnapshotEntity] = []
    refetch: list[str] = []
    for uuid, entity in collection.entities.items():
        if outbox.is_dirty(uuid) or outbox.is_inflight(uuid):
            refetch.append(uuid)
            continue
        known = entity._revision
        if known is None:
            continue  # made here and never stored (nor dirty: its add was undone by a failure)
        row = entity._row
        base, overrides = split_stamps(entity._stamps, layout, row)
        if entity._extras is None and type(base) is int and layout.count(row):
            if MISSING in row:
                row = tuple(_MISSING_EXT if value is MISSING else value for value in row)
            entities.append(SnapshotEntity(uuid, known, row, base >> NODE_BITS, base & NODE_MASK, overrides))
            continue
        try:
            value = encode_entity(layout.mapping(row), entity._stamps, entity._extras, checked=True)
        except EncodeError:
            refetch.append(uuid)
            continue
        entities.append(SnapshotEntity(uuid, known, value=value))
    deletes: list[SnapshotDelete] = []
    for uuid, tomb in sync.tombstones.items():
        if tomb.pending:
            refetch.append(uuid)
        elif tomb.revision is not None:
            # (A delete without a revision never reached the bucket: a replay would not know it either.)
            deletes.append(SnapshotDelete(uuid, tomb.stamp[0], tomb.stamp[1], tomb.revision))
    schema = collection.schema
    return CollectionSnapshot(
        namespace=namespace,
        collection=collection.name,
        bucket=bucket,
        origin=origin,
        revision=revision,
        captured_ms=now_ms,
        schema_version=None if schema is None else schema.version,
        fields=list(layout.names),
        nodes=packed_nodes(),
        entities=entities,
        deletes=deletes,
        refetch=refetch,
    )


def split_stamps(
    stamps: Stamps, layout: Layout, row: Row
) -> tuple[PackedStamp | Stamp, dict[str, Stamp] | None]:
    """An entity's stamps (its fields in ``row``, of ``layout``) as the stamp most fields have (packed,
    unless it cannot be) and those of the other fields (None if none)."""
    if type(stamps) is int and stamps >= 0:
        return stamps, None  # one stamp shared by every field (added or loaded, unchanged)
    if type(stamps) is tuple and len(stamps) == 2:
        return pack(stamps), None
    per_field = field_stamps(stamps, layout.present(row))
    base = most_common(per_field)
    return pack(base), {name: stamp for name, stamp in per_field.items() if stamp != base} or None


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


def unusable(snapshot: CollectionSnapshot, expected: Expected) -> str | None:
    """Why ``snapshot`` cannot stand for a replay of the bucket up to its revision, or None if it can."""
    if snapshot.namespace != expected.namespace:
        return f"it is of namespace {snapshot.namespace!r}"
    if snapshot.collection != expected.collection or snapshot.bucket != expected.bucket:
        return f"it is of collection {snapshot.collection!r} (bucket {snapshot.bucket!r})"
    if snapshot.origin != expected.origin or snapshot.revision > expected.last_revision:
        return "the bucket was recreated since it was taken"
    if snapshot.schema_version != expected.schema_version:
        return f"it is of schema version {snapshot.schema_version}, not {expected.schema_version}"
    age_ms = expected.now_ms - snapshot.captured_ms
    if age_ms > expected.retention_ms:
        # Delete markers written after it may have been removed since (see ``Housekeeper``).
        return f"it is {age_ms / 1000:.0f}s old, older than the delete retention"
    if expected.first_revision > snapshot.revision + 1:
        return (
            f"the bucket no longer holds the revisions after it (its first is {expected.first_revision}, "
            f"the snapshot's {snapshot.revision})"
        )
    return None


def restore(collection: Collection[Any], snapshot: CollectionSnapshot) -> None:
    """Put what ``snapshot`` holds into the memory of ``collection``, as its replay would.

    An entity new to memory, with plain fields (the common case), is made at once from its row and stamps,
    as the inbox makes one it has never seen: the snapshot was taken under this schema version, so its
    fields fit. Anything else (a version with extras, or one of a uuid memory holds already) goes through
    the inbox as an entry of the bucket at its revision, and each delete as its marker: schema checks,
    expiry and listeners see what they see in a replay.
    """
    sync = collection.sync
    inbox, tombstones = sync.inbox, sync.tombstones
    table = collection._table
    owner, layout, entities = table.owner, table.layout, table.entities
    reorder = _reordering(layout, snapshot.fields)
    indexes = repacking(snapshot.nodes)  # each node's index in this process
    apply = inbox.apply
    put, delete = Op.PUT, Op.DELETE
    # What memory held before (entities added before start(), an attach tried again): merged, not made.
    held = bool(entities) or len(tombstones) > 0
    tell = bool(table.listeners)
    newest = -1  # the greatest clock value of any stamp
    last = inbox.last_revision
    made: dict[str, Entity] = {}
    for item in snapshot.entities:
        uuid, revision, row, hlc, node = item.uuid, item.revision, item.row, item.hlc, item.node
        if (
            row is None
            or hlc is None
            or node is None
            or indexes is None
            or node >= len(indexes)
            or (held and (uuid in entities or uuid in tombstones))
        ):
            apply(Entry(uuid, revision, stored_version(item, snapshot), put, 0))
            continue
        if reorder is not None:
            row = reorder(row)
        base = hlc << NODE_BITS | indexes[node]  # packed as ``stamps.pack`` packs it here
        overrides = item.overrides
        stamps: Stamps = base
        if overrides is not None:
            # In the form an entity holds them (as a replay's decoding makes it).
            stamps = compact({**dict.fromkeys(layout.present(row), unpack(base)), **overrides})
            hlc = max(hlc, *(stamp[0] for stamp in overrides.values()))
        if hlc > newest:
            newest = hlc
        entity = new_entity(owner, uuid, row, stamps, revision, None)
        if revision > last:
            last = revision
        if tell:
            table.insert(entity)
            changes = {name: (MISSING, value) for name, value in layout.items(row)}
            table.emit_change(entity, changes, "remote", created=True)
        else:
            made[uuid] = entity
    table.insert_all(made)
    if newest >= 0:
        collection._host.clock.observe(newest)
    if last > inbox.last_revision:
        inbox.last_revision = last
    for gone in snapshot.deletes:
        apply(Entry(gone.uuid, gone.revision, encode_tombstone((gone.hlc, gone.node)), delete, 0))


def _reordering(layout: Layout, fields: list[str]) -> Callable[[Row], Row] | None:
    """What makes a row of the snapshot (its fields in the order of ``fields``) a row of ``layout``: None
    when it is one already (the layout names ``fields`` first, in order, as a layout grown from the same
    schema does; the layout takes the names it lacks)."""
    positions = [layout.position(name) for name in fields]
    if positions == list(range(len(fields))):
        return None

    def reorder(row: Row) -> Row:
        values = [MISSING] * len(layout)
        for position, value in zip(positions, row, strict=False):
            values[position] = value
        return tuple(values)

    return reorder


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
        if value is not MISSING and value is not _MISSING_EXT
    }
    stamps = {**dict.fromkeys(data, base), **(item.overrides or {})}
    return encode_entity(data, compact(stamps), checked=True)
