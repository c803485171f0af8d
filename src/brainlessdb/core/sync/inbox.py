"""Inbox: what the bucket holds, merged into a collection's memory.

Every entry of a load, of the watch, or of a conflicting write comes through ``apply()``. The rules it
keeps: a local change not yet stored is never overwritten (entries are merged field by field, see
``core.merge``); a delete wins (the uuid is remembered as a tombstone, any later version of it is
ignored, and deleted again in the bucket if a foreign writer put it back); a node's own writes coming
back (same or older revision) change nothing. A full replay (``begin_resync``/``end_resync``) also drops
what the bucket no longer holds.

Whatever another client writes, every node ends with the same, whether it was running or loads the
bucket later: a plain JSON object is the entity's complete state at the time NATS stored it (checked
against the schema in full; an optional field it lacks takes its default); an entry that cannot be used
(bad JSON, a value that does not fit the schema, a required field missing) is set aside as a dead letter
on every node, and a node that holds a version of the entity writes it back over it. A node that finds
the bucket behind its own version after a merge (a field it lacks, an older stamp) writes the merge back.
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from brainlessdb.core.clock import HybridLogicalClock, Stamp
from brainlessdb.core.codec import ForeignRecord, decode_delete, decode_value
from brainlessdb.core.entity import Entity, set_slot
from brainlessdb.core.evolution import upgrade_record
from brainlessdb.core.expiry import SKEW_MS, is_due
from brainlessdb.core.merge import Extras, Record, merge_stored
from brainlessdb.core.names import RESERVED_PREFIX
from brainlessdb.core.schema import Schema
from brainlessdb.core.stamps import compact, field_stamps
from brainlessdb.core.sync.outbox import Outbox
from brainlessdb.core.sync.tombstones import Tombstone, Tombstones
from brainlessdb.core.table import EntityTable
from brainlessdb.core.values import MISSING
from brainlessdb.errors import DecodeError, SchemaError
from brainlessdb.events import DeleteReason, Origin
from brainlessdb.storage.base import Entry, Op

DEAD_LETTERS_KEPT: Final = 1000

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry of the bucket that could not be used, kept aside with the reason."""

    key: str
    revision: int
    value: bytes
    reason: str


class Inbox:
    """Applies the entries of one collection's bucket to its table."""

    def __init__(
        self,
        table: EntityTable,
        outbox: Outbox,
        tombstones: Tombstones,
        clock: HybridLogicalClock,
        wake: Callable[[], None],
        reserved: Callable[[Entry], None] = lambda entry: None,
    ) -> None:
        self._table = table
        self._reserved = reserved  # where entries under reserved keys (the schema's) go
        self._outbox = outbox
        self._tombstones = tombstones
        self._clock = clock
        self._wake = wake
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTERS_KEPT)
        self.dead_letter_count = 0
        self.last_revision = 0
        self._resync_seen: set[str] | None = None
        # The required fields of ``_required_of``, the schema last checked against (see ``_fits_schema``).
        self._required_of: Schema | None = None
        self._required: frozenset[str] = frozenset()
        self._own: dict[str, bytes] = {}  # this node's update_if writes in flight, by uuid

    def apply(self, entry: Entry, origin: Origin = "remote") -> None:
        """Merge one entry of the bucket (from a load, the watcher, or a conflict) into memory.

        ``origin`` is what listeners are told: ``"local"`` for this node's own won ``update_if``.
        """
        # Every entry of a load and every echo of this node's own writes comes through here: the key's
        # entity and tombstone are looked up once, and an own write is recognised before any decoding.
        revision = entry.revision
        if revision > self.last_revision:
            self.last_revision = revision
        uuid = entry.key
        if self._resync_seen is not None:
            self._resync_seen.add(uuid)
        entity = self._table.entities.get(uuid)
        if entity is None and uuid.startswith(RESERVED_PREFIX):
            self._reserved(entry)
            return
        tomb = self._tombstones.get(uuid)
        try:
            if entry.op is Op.PUT:
                if entity is not None and tomb is None:
                    # A put this node has seen already (an older revision), or its own write coming back
                    # before its acknowledgement (the same bytes): it tells the revision, nothing new.
                    known = entity._revision
                    if known is not None and revision <= known:
                        return
                    if self._outbox.sent_value(uuid) == entry.value:
                        set_slot(entity, "_revision", revision)
                        return
                record = decode_value(entry.value, time_ns=entry.time_ns)
                if self._own and self._own.get(uuid) == entry.value:
                    origin = "local"  # this node's update_if, come back before its acknowledgement
            else:
                record = decode_delete(entry.value, time_ns=entry.time_ns)
        except DecodeError as exc:
            self._set_aside(entry, str(exc), entity, tomb)
            return
        newest = record.max_stamp()
        if newest is not None:
            self._clock.observe(newest[0])
        if tomb is not None:
            self._apply_to_tombstone(tomb, entry, record)
            return
        if record.deleted is not None:
            self.drop(uuid, record.deleted, revision, entry.op)
            return
        schema = self._table.schema
        if schema is not None and schema.retired:
            record = upgrade_record(schema, record)  # written before an evolution: read under its names
        if not self._fits_schema(entry, record, entity):
            return
        if entity is None:
            if record.extras is not None and record.extras.expiry is not None and self._due(record):
                self._expired_unseen(uuid, revision)
                return
            self._create(uuid, record, revision, origin)
            return
        if entity._revision is not None and revision <= entity._revision:
            return
        if entity._extras is not None and self._due(entity):
            # Its deadline passed here before this version came (an extension too late): the delete wins.
            self.expire(uuid)
            tomb = self._tombstones.get(uuid)
            if tomb is not None:
                self._apply_to_tombstone(tomb, entry, record)
            return
        self._merge(entity, record, revision, origin)

    def apply_copy(self, uuid: str, entry: Entry) -> None:
        """Merge another location's version of ``uuid`` (its key ``_<peer>.<uuid>`` here) into memory.

        Such a copy is read only: it never moves the revision of the entity's own key and is never written
        over (see ``storage.nats.buckets``). A version merges as any other, and a dead letter is only set
        aside. A delete drops the entity, and is written over this location's own version of it if there
        is one (once: a delete is final), so that it outlives the other location's marker.
        """
        if entry.revision > self.last_revision:
            self.last_revision = entry.revision
        if self._resync_seen is not None:
            self._resync_seen.add(uuid)
        self._outbox.copied.add(uuid)
        try:
            if entry.op is Op.PUT:
                record = decode_value(entry.value, time_ns=entry.time_ns)
            else:
                record = decode_delete(entry.value, time_ns=entry.time_ns)
        except DecodeError as exc:
            self._dead_letter(entry, str(exc))
            return
        newest = record.max_stamp()
        if newest is not None:
            self._clock.observe(newest[0])
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            if record.deleted is not None and record.deleted > tomb.stamp:
                tomb.stamp = record.deleted
            return
        entity = self._table.entities.get(uuid)
        if record.deleted is not None:
            own = None if entity is None else entity._revision
            self.drop(uuid, record.deleted, own, entry.op)
            if own is not None:
                # This location stored a version of its own: the delete is written over it, once, so that
                # the delete outlives the other location's marker (removed after its retention there).
                self._tombstones.add(uuid, record.deleted, own, pending=True)
                self._wake()
            return
        schema = self._table.schema
        if schema is not None and schema.retired:
            record = upgrade_record(schema, record)
        if not self._fits_schema(entry, record, entity, write_over=False):
            return
        if entity is None:
            self._create(uuid, record, None)
            return
        extras = entity._extras
        changed, _, merged = merge_into(entity, record, extras)
        if merged is not extras:
            set_slot(entity, "_extras", merged)
            self._table.track_expiry(entity)
        self._table.reindex(entity, changed)
        if changed:
            changes = changes_of(entity, changed)
            self._table.emit_change(entity, changes, "remote")

    def expect_own(self, uuid: str, value: bytes | None) -> None:
        """``value`` is a write of ``uuid`` this node made outside the outbox (``update_if``), in flight:
        if the watch brings it before its acknowledgement, it is told as a local change. None: no more."""
        if value is None:
            self._own.pop(uuid, None)
        else:
            self._own[uuid] = value

    def _apply_to_tombstone(self, tomb: Tombstone, entry: Entry, record: Record) -> None:
        if tomb.revision is not None and entry.revision <= tomb.revision:
            return
        tomb.revision = entry.revision
        if record.deleted is not None:
            self._outbox.marker_stored(entry.key)
            if record.deleted > tomb.stamp:
                tomb.stamp = record.deleted
        else:
            # Someone put the deleted uuid back (a foreign writer, or a write that raced the delete): the
            # delete is written over it, also when a write of the key is in flight (a delete expecting an
            # older revision cannot be stored now); the outcome of that write wakes the flusher then.
            tomb.pending = True
            if not self._outbox.is_inflight(entry.key):
                self._wake()

    def _fits_schema(
        self, entry: Entry, record: Record, entity: Entity | None, *, write_over: bool = True
    ) -> bool:
        """Check ``record`` against the schema (and complete another client's object); False if set aside
        (and, with ``write_over``, this node's version written over it)."""
        schema = self._table.schema
        if schema is None:
            return True
        data = record.data
        try:
            if type(record) is not ForeignRecord:
                # A version of the stored format (every entry of a load): one type check per field, and
                # every required field present. Holding as many fields as the schema and none it does not
                # know, it holds them all (no lookup per field: the common case).
                if schema.check_stored_version(data):
                    return True
                if self._required_of is not schema:
                    self._required_of = schema
                    self._required = frozenset(name for name, spec in schema.fields.items() if spec.required)
                if data.keys() >= self._required:
                    return True
                name = next(name for name in schema.fields if name in self._required and name not in data)
                raise SchemaError(f"missing required field {name!r}", field=name)
            # Another client's object is the entity's complete state: checked in full, and an optional
            # field it lacks takes its default (at the object's stamp, as its fields do).
            schema.check_stored(data)
            for name, spec in schema.fields.items():
                if name not in data:
                    if spec.required:
                        raise SchemaError(f"missing required field {name!r}", field=name)
                    data[name] = copy.deepcopy(spec.default)
        except SchemaError as exc:
            if write_over:
                self._set_aside(entry, f"does not fit the schema: {exc}", entity, None)
            else:
                self._dead_letter(entry, f"does not fit the schema: {exc}")
            return False
        return True

    def _set_aside(self, entry: Entry, reason: str, entity: Entity | None, tomb: Tombstone | None) -> None:
        """``entry`` cannot be used: a dead letter; this node's version of the entity is written over it.

        Every node sets the entry aside alike, and a node that holds the entity (or its delete) writes that
        back on the entry's revision, so a node that loads the bucket later finds the same as the others.
        """
        self._dead_letter(entry, reason)
        revision = entry.revision
        if tomb is not None:
            if tomb.revision is None or revision > tomb.revision:
                tomb.revision = revision
                tomb.pending = True
                if not self._outbox.is_inflight(entry.key):
                    self._wake()
        elif entity is not None and (entity._revision is None or revision > entity._revision):
            self._outbox.overwrite(entry.key, revision)
            if not self._outbox.is_dirty(entry.key):
                self._outbox.local_change(entity)
            self._wake()

    def _create(self, uuid: str, record: Record, revision: int | None, origin: Origin = "remote") -> None:
        table = self._table
        entity = table.new_entity(uuid, record.data, record.compact_stamps, revision, record.extras)
        table.insert(entity)
        if table.listeners:
            changes = {name: (MISSING, value) for name, value in record.data.items()}
            table.emit_change(entity, changes, origin, created=True)

    def _merge(self, entity: Entity, record: Record, revision: int, origin: Origin = "remote") -> None:
        extras = entity._extras
        changed, ahead, merged = merge_into(entity, record, extras)
        if merged is not extras:
            set_slot(entity, "_extras", merged)
            self._table.track_expiry(entity)
        set_slot(entity, "_revision", revision)
        self._table.reindex(entity, changed)
        uuid = entity._uuid
        if ahead:
            if not self._outbox.is_dirty(uuid):
                # The bucket lacks what this node holds (another client wrote over the merge, or a node
                # that did not know a field): the merge is written back, on this revision.
                self._outbox.local_change(entity)
                self._wake()
        elif self._outbox.is_dirty(uuid):
            # What is stored already holds everything this node has: nothing left to write.
            self._outbox.settle(entity)
        if changed:
            changes = changes_of(entity, changed)
            self._table.emit_change(entity, changes, origin)
        if merged is not None and merged.expiry is not None and self._due(entity):
            self.expire(uuid)  # the merged version's deadline has passed (it came too late to extend it)

    def drop(self, uuid: str, stamp: Stamp, revision: int | None, op: Op = Op.DELETE) -> None:
        """``uuid`` was deleted at ``stamp`` (its marker is stored): forget it, remember the delete.

        ``op`` is how the bucket told it (a delete, or a purge: a key emptied by the server or an
        operator); listeners are told an entity past its deadline expired, whatever the bucket said.
        """
        self._tombstones.add(uuid, stamp, revision, pending=False)
        self._outbox.forget(uuid)
        entity = self._table.remove(uuid)
        if entity is not None:
            self._table.emit_delete(uuid, entity, "remote", self._reason(entity, op))

    # -- expiry ----------------------------------------------------------------------------------

    def expire(self, uuid: str) -> None:
        """The deadline of ``uuid`` passed: forget it, remember its delete, tell the listeners it expired.

        Every node does this by its own clock, and its delete wins as any delete does. The delete is written
        to the bucket by this node unless the server removes the entity itself (per-message TTL, see
        ``core.expiry.ExpiryMode``) and the bucket already holds the version that carries it (nothing of the
        entity is pending here). Told as a remote delete: no node's call made it.
        """
        entity = self._table.remove(uuid)
        if entity is None:
            return
        outbox = self._outbox
        unwritten = outbox.is_dirty(uuid) or outbox.is_inflight(uuid)
        stored = entity._revision is not None or outbox.is_inflight(uuid) or uuid in outbox.copied
        write = stored and (self._table.expiry.server is not True or unwritten)
        outbox.forget(uuid)
        self._tombstones.add(uuid, self._clock.tick(), entity._revision, pending=write)
        if write:
            self._wake()
        self._table.emit_delete(uuid, entity, "remote", "expired")

    def _expired_unseen(self, uuid: str, revision: int) -> None:
        """The bucket holds a version of ``uuid`` past its deadline, which this node never held: the delete
        is remembered, and written unless the server removes it."""
        self._table.expiry.used = True
        write = self._table.expiry.server is not True
        self._tombstones.add(uuid, self._clock.tick(), revision, pending=write)
        if write:
            self._wake()

    def _due(self, version: Record | Entity) -> bool:
        extras = version.extras if isinstance(version, Record) else version._extras
        return extras is not None and is_due(extras.expiry, self._clock.now_ms())

    def _reason(self, entity: Entity, op: Op) -> DeleteReason:
        """Why ``entity`` was removed, when the bucket tells it with ``op``: an entity at its deadline (the
        clocks of nodes and server differ by a little) expired; else a purge is a purge, and a delete a
        delete."""
        extras = entity._extras
        if extras is not None and is_due(extras.expiry, self._clock.now_ms() + SKEW_MS):
            return "expired"
        return "purged" if op is Op.PURGE else "deleted"

    def restore(self, uuid: str, value: bytes, deleted: bool) -> None:
        """Take back a pending change found in the journal after a crash: merge it in, to be written again."""
        record = decode_delete(value, time_ns=0) if deleted else decode_value(value, time_ns=0)
        table = self._table
        if record.deleted is not None:
            entity = table.remove(uuid)
            if entity is not None:
                self._outbox.local_delete(entity, record.deleted)
            elif uuid not in self._tombstones:
                self._tombstones.add(uuid, record.deleted, None, pending=True)
            return
        if uuid in self._tombstones:
            return  # deleted meanwhile: the delete wins
        entity = table.entities.get(uuid)
        if entity is None:
            entity = table.new_entity(uuid, record.data, record.compact_stamps, None, record.extras)
            table.insert(entity)
        else:
            changed, _, extras = merge_into(entity, record, entity._extras)
            set_slot(entity, "_extras", extras)
            table.track_expiry(entity)
            table.reindex(entity, changed)
        self._outbox.local_change(entity)

    # -- full replays ----------------------------------------------------------------------------

    def begin_resync(self) -> None:
        """A full replay of the bucket starts: note every key it holds."""
        self._resync_seen = set()

    def end_resync(self) -> list[str]:
        """The replay is complete: drop what was stored once but is gone now (deleted, marker purged).

        Entities never stored yet (created here, not yet acknowledged) are kept, and so is anything with a
        write in flight. Returns the dropped uuids.
        """
        seen, self._resync_seen = self._resync_seen, None
        if seen is None:
            return []
        gone = [
            uuid
            for uuid, entity in self._table.entities.items()
            if entity._revision is not None and uuid not in seen and not self._outbox.is_inflight(uuid)
        ]
        for uuid in gone:
            self.drop(uuid, self._clock.tick(), None)
        return gone

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        self.dead_letter_count += 1
        self.dead_letters.append(DeadLetter(entry.key, entry.revision, entry.value, reason))
        logger.warning(
            "%s: entry %s at revision %d set aside: %s", self._table.name, entry.key, entry.revision, reason
        )

    def clear(self) -> None:
        self.last_revision = 0

    def __repr__(self) -> str:
        return (
            f"<Inbox {self._table.name}: applied up to revision {self.last_revision}, "
            f"{self.dead_letter_count} dead letters>"
        )


def merge_into(
    entity: Entity, record: Record, extras: Extras | None
) -> tuple[dict[str, Any], bool, Extras | None]:
    """``merge_stored`` of ``record`` into ``entity`` (whose extras are ``extras``): its stamps are merged
    one per field, then held compact again (see ``stamps.Stamps``)."""
    data = entity._data
    stamps = field_stamps(entity._stamps, data)
    try:
        return merge_stored(data, stamps, record, extras)
    finally:
        set_slot(entity, "_stamps", compact(stamps))
        set_slot(entity, "_row", entity._layout.row(data))


def changes_of(entity: Entity, changed: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The changes of ``entity`` for its listeners: field → (old, new), the old values being ``changed``."""
    get, row = entity._layout.get, entity._row
    return {name: (old, get(row, name)) for name, old in changed.items()}
