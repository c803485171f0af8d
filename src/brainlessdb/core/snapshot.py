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

The file and its format are ``core.snapshot_format``'s (its names are this module's too). Pure: no I/O
here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brainlessdb.core.clock import Stamp
from brainlessdb.core.codec import encode_entity, encode_tombstone
from brainlessdb.core.collection import Collection
from brainlessdb.core.entity import Entity, new_entity
from brainlessdb.core.rows import Layout, Row
from brainlessdb.core.snapshot_format import (
    MISSING_EXT,
    CollectionSnapshot,
    SnapshotDelete,
    SnapshotEntity,
    stored_version,
)
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
from brainlessdb.errors import EncodeError
from brainlessdb.storage.base import Entry, Op


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
                row = tuple(MISSING_EXT if value is MISSING else value for value in row)
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
