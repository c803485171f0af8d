"""SyncState: a collection's side of syncing — what to write, what NATS acknowledged, what others wrote.

This is the sans-I/O state machine between a collection and its bucket. ``take_writes()`` hands the
shell the compare-and-set writes to do; ``written()``, ``failed()`` and ``conflicted()`` report their
outcomes; ``apply()`` merges an entry read from the bucket (by a load, the watcher, or a conflict). The
rules it keeps:

- an entity stays dirty until a write of its latest version is acknowledged; a change made while a write
  is in flight makes it dirty again, so it is written once more, never lost and never written twice;
- a local change that is not yet stored is never overwritten: entries are merged field by field
  (``sync.merge``), and a write that conflicts is merged with what is stored and retried;
- a delete wins: the uuid is remembered as a tombstone, and any later version of it is ignored (and
  deleted again in the bucket if a foreign writer put it back);
- a node's own writes coming back through the watcher (same or older revision) change nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from brainlessdb.core.clock import Stamp, wall_ms
from brainlessdb.core.codec import decode_delete, decode_value, encode_entity, encode_tombstone
from brainlessdb.core.entity import Entity, new_entity
from brainlessdb.core.merge import Record, field_stamps, merge_into
from brainlessdb.core.schema import Schema
from brainlessdb.core.values import MISSING
from brainlessdb.errors import DecodeError, EncodeError, SchemaError
from brainlessdb.storage.base import Entry, Op, Write

if TYPE_CHECKING:
    from brainlessdb.core.collection import Collection

FOREIGN_NODE: Final = ""
DEAD_LETTERS_KEPT: Final = 1000
SCHEMA_KEY: Final = "(schema)"

logger = logging.getLogger(__name__)

# Entities route attribute assignment to their fields; their own slots are set directly.
_set_slot = object.__setattr__


@dataclass(slots=True)
class PendingWrite(Write):
    """A write for the shell: store ``value`` at ``key`` if its last revision is still the expected one.

    A storage ``Write`` itself (handed to ``Storage.write`` as it is), plus the entity version it holds.
    """

    version: int = 0


@dataclass(slots=True)
class Tombstone:
    """A deleted uuid: when it was deleted, the last revision seen, and whether the marker is stored."""

    stamp: Stamp
    revision: int | None
    written: bool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry of the bucket that could not be used, kept aside with the reason."""

    key: str
    revision: int
    value: bytes
    reason: str


class SyncState:
    """The sync state of one collection."""

    def __init__(self, collection: Collection[Any]) -> None:
        self._collection = collection
        self._dirty: dict[str, Entity] = {}
        self._inflight: dict[str, int] = {}
        self._sent: dict[str, bytes] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self.errors: dict[str, BaseException] = {}
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTERS_KEPT)
        self.dead_letter_count = 0
        self.last_revision = 0
        self.schema_pending = False
        self.schema_revision: int | None = None
        self._rejected: set[str] = set()
        self._resync_seen: set[str] | None = None

    # -- local changes ---------------------------------------------------------------------------

    def local_change(self, entity: Entity) -> None:
        _set_slot(entity, "_version", entity._version + 1)
        self._dirty[entity._uuid] = entity

    def local_delete(self, entity: Entity, stamp: Stamp) -> None:
        uuid = entity._uuid
        self._dirty.pop(uuid, None)
        self.errors.pop(uuid, None)
        stored = entity._revision is not None or uuid in self._inflight
        self._tombstones[uuid] = Tombstone(stamp, entity._revision, written=not stored)

    def schema_changed(self) -> None:
        self.schema_pending = True

    def schema_stored(self, schema: Schema, revision: int) -> None:
        """The schema was stored at ``revision`` (still pending if it changed meanwhile)."""
        self.schema_revision = revision
        self.errors.pop(SCHEMA_KEY, None)
        if self._collection.schema == schema:
            self.schema_pending = False

    def schema_failed(self, error: BaseException) -> None:
        """Storing the schema failed for now; it is retried with the next flush."""
        self.errors[SCHEMA_KEY] = error

    def schema_rejected(self, stored: Schema, revision: int, error: SchemaError) -> None:
        """Another node stored an incompatible schema first: adopt it, and hold back what does not fit.

        Entities that do not fit the stored schema stay in memory, are never written, and are reported
        by every flush; everything that fits is written as usual.
        """
        logger.error("%s", error)
        self._collection.adopt_schema(stored)
        self.schema_revision = revision
        self.schema_pending = False
        self.errors.pop(SCHEMA_KEY, None)
        for uuid, entity in self._dirty.items():
            if not self._fits(stored, uuid, entity):
                self._rejected.add(uuid)

    def _fits(self, schema: Schema, uuid: str, entity: Entity) -> bool:
        try:
            schema.check_stored(entity._data)
        except SchemaError as exc:
            self.errors[uuid] = SchemaError(
                f"{self._collection.name}/{uuid} does not fit the stored schema: {exc}", field=exc.field
            )
            return False
        return True

    def is_deleted(self, uuid: str) -> bool:
        return uuid in self._tombstones

    def pending_count(self) -> int:
        """Entities and deletes not yet acknowledged by NATS."""
        return len(self._dirty) + sum(1 for tomb in self._tombstones.values() if not tomb.written)

    def has_pending(self) -> bool:
        return self.schema_pending or self.pending_count() > 0

    def pending_keys(self) -> list[str]:
        """The uuids of the entities and deletes not yet acknowledged by NATS."""
        unwritten = [uuid for uuid, tomb in self._tombstones.items() if not tomb.written]
        return [*self._dirty, *unwritten]

    def clear(self) -> None:
        self._dirty.clear()
        self._inflight.clear()
        self._sent.clear()
        self._tombstones.clear()
        self._rejected.clear()
        self.errors.clear()
        self.last_revision = 0

    # -- writing ---------------------------------------------------------------------------------

    def take_writes(self) -> list[PendingWrite]:
        """The writes to do now: every dirty entity and unwritten delete that is not already in flight."""
        writes: list[PendingWrite] = []
        inflight, sent, rejected = self._inflight, self._sent, self._rejected
        for uuid, entity in self._dirty.items():
            if uuid in inflight:
                continue
            if rejected and uuid in rejected:
                schema = self._collection.schema
                if schema is None or not self._fits(schema, uuid, entity):
                    continue
                rejected.discard(uuid)
                self.errors.pop(uuid, None)
            try:
                # Checked already: add(), assignments and tracked containers check what they take.
                value = encode_entity(entity._data, entity._stamps, checked=True)
            except EncodeError as exc:
                self.errors[uuid] = exc
                continue
            revision, version = entity._revision, entity._version
            inflight[uuid] = version
            sent[uuid] = value
            writes.append(PendingWrite(uuid, value, 0 if revision is None else revision, False, version))
        for uuid, tomb in self._tombstones.items():
            if tomb.written or uuid in inflight:
                continue
            inflight[uuid] = 0
            expected = 0 if tomb.revision is None else tomb.revision
            writes.append(PendingWrite(uuid, encode_tombstone(tomb.stamp), expected, delete=True))
        return writes

    def written(self, write: PendingWrite, revision: int) -> None:
        """NATS stored ``write`` at ``revision``."""
        uuid = write.key
        self._inflight.pop(uuid, None)
        self._sent.pop(uuid, None)
        if self.errors:
            self.errors.pop(uuid, None)
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            tomb.revision = max(tomb.revision or 0, revision)
            # A create acknowledged after the entity was deleted: the marker must now be written over it.
            tomb.written = write.delete
            return
        entity = self._collection.entities.get(uuid)
        if entity is None:
            return
        # Straight to the slots (as everywhere here): Entity.__setattr__ is the path of field changes.
        if entity._revision is None or revision > entity._revision:
            _set_slot(entity, "_revision", revision)
        if write.version > entity._written:
            _set_slot(entity, "_written", write.version)
        if entity._written == entity._version:
            self._dirty.pop(uuid, None)

    def failed(self, write: PendingWrite, error: BaseException) -> None:
        """``write`` failed; it stays pending and is retried by a later flush."""
        self._inflight.pop(write.key, None)
        self._sent.pop(write.key, None)
        self.errors[write.key] = error

    def conflicted(self, write: PendingWrite, current: Entry | None) -> None:
        """``write`` found another revision; ``current`` is what the bucket holds now."""
        uuid = write.key
        self._inflight.pop(uuid, None)
        self._sent.pop(uuid, None)
        if current is not None:
            letters = self.dead_letter_count
            self.apply(current)
            if self.dead_letter_count != letters:
                # What the key holds now cannot be used: write this node's version over it, or the write
                # would meet the same revision again and again.
                self._overwrite(uuid, current.revision)
            return
        # The key holds nothing although this node saw it stored: it was deleted and its marker purged.
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            tomb.written = True
            return
        entity = self._collection.entities.get(uuid)
        if entity is not None and entity._revision is not None:
            self._drop(uuid, entity, Tombstone(self._collection._host.clock.tick(), None, written=True))

    def _overwrite(self, uuid: str, revision: int) -> None:
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            tomb.revision = max(tomb.revision or 0, revision)
            return
        entity = self._collection.entities.get(uuid)
        if entity is not None:
            _set_slot(entity, "_revision", max(entity._revision or 0, revision))

    # -- the journal: pending changes kept on local disk ------------------------------------------

    def pending_value(self, uuid: str) -> tuple[bytes, bool] | None:
        """The encoded pending version of ``uuid`` and whether it is a delete (None if nothing pending)."""
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            return None if tomb.written else (encode_tombstone(tomb.stamp), True)
        entity = self._dirty.get(uuid)
        if entity is None:
            return None
        try:
            return encode_entity(entity._data, entity._stamps), False
        except EncodeError:
            return None

    def settled(self, uuids: Iterable[str]) -> list[str]:
        """Those of ``uuids`` that have nothing pending any more."""
        tombstones = self._tombstones
        return [
            uuid
            for uuid in uuids
            if uuid not in self._dirty and (uuid not in tombstones or tombstones[uuid].written)
        ]

    def restore(self, uuid: str, value: bytes, deleted: bool) -> None:
        """Take back a pending change found in the journal after a crash: merge it in, to be written again."""
        record = decode_delete(value, time_ns=0) if deleted else decode_value(value, time_ns=0)
        collection = self._collection
        entity = collection.entities.get(uuid)
        if record.deleted is not None:
            if entity is not None:
                del collection.entities[uuid]
                collection.indexes.on_remove(uuid, entity._data)
                self.local_delete(entity, record.deleted)
            elif uuid not in self._tombstones:
                self._tombstones[uuid] = Tombstone(record.deleted, None, written=False)
            return
        if uuid in self._tombstones:
            return  # deleted meanwhile: the delete wins
        if entity is None:
            entity = new_entity(collection, uuid, record.data, record.compact_stamps)
            collection.entities[uuid] = entity
            collection.indexes.on_add(uuid, record.data)
        else:
            changed = merge_into(entity._data, _own_stamps(entity), record)
            for name, old in changed.items():
                collection.indexes.on_change(uuid, name, old, entity._data[name])
        self.local_change(entity)

    # -- delete markers past their retention, and full resyncs -----------------------------------

    def expired_tombstones(self, before_ms: int) -> list[tuple[str, int | None]]:
        """Written deletes older than ``before_ms`` (wall-clock ms), with their last known revision."""
        return [
            (uuid, tomb.revision)
            for uuid, tomb in self._tombstones.items()
            if tomb.written and wall_ms(tomb.stamp[0]) < before_ms
        ]

    def delete_again(self, uuid: str, revision: int) -> None:
        """Write the delete of ``uuid`` once more, over the older version the bucket holds at ``revision``."""
        tomb = self._tombstones.get(uuid)
        if tomb is not None and uuid not in self._inflight:
            tomb.revision = revision
            tomb.written = False

    def forget_tombstone(self, uuid: str) -> None:
        """Forget a delete whose marker was removed from the bucket."""
        tomb = self._tombstones.get(uuid)
        if tomb is not None and tomb.written:
            del self._tombstones[uuid]

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
            for uuid, entity in self._collection.entities.items()
            if entity._revision is not None and uuid not in seen and uuid not in self._inflight
        ]
        for uuid in gone:
            entity = self._collection.entities[uuid]
            self._drop(uuid, entity, Tombstone(self._collection._host.clock.tick(), None, written=True))
        return gone

    # -- applying what the bucket holds ----------------------------------------------------------

    def apply(self, entry: Entry) -> None:
        """Merge one entry of the bucket (from a load, the watcher, or a conflict) into memory."""
        # Every entry of a load and every echo of this node's own writes comes through here: the key's
        # entity and tombstone are looked up once, and an own write is recognised before any decoding.
        revision = entry.revision
        if revision > self.last_revision:
            self.last_revision = revision
        uuid = entry.key
        if self._resync_seen is not None:
            self._resync_seen.add(uuid)
        entity = self._collection.entities.get(uuid)
        tomb = self._tombstones.get(uuid)
        try:
            if entry.op is Op.PUT:
                if entity is not None and tomb is None:
                    # A put this node has seen already (an older revision), or its own write coming back
                    # before its acknowledgement (the same bytes): it tells the revision, nothing new.
                    known = entity._revision
                    if known is not None and revision <= known:
                        return
                    if self._sent.get(uuid) == entry.value:
                        _set_slot(entity, "_revision", revision)
                        return
                record = decode_value(entry.value, time_ns=entry.time_ns)
            else:
                record = decode_delete(entry.value, time_ns=entry.time_ns)
        except DecodeError as exc:
            self._dead_letter(entry, str(exc))
            return
        newest = record.max_stamp()
        if newest is not None:
            self._collection._host.clock.observe(newest[0])
        if tomb is not None:
            self._apply_to_tombstone(tomb, entry, record)
            return
        if record.deleted is not None:
            self._drop(uuid, entity, Tombstone(record.deleted, revision, written=True))
            return
        if not self._fits_schema(entry, record):
            return
        if entity is None:
            self._create(uuid, record, revision)
            return
        if entity._revision is not None and revision <= entity._revision:
            return
        self._merge(entity, record, revision)

    def _apply_to_tombstone(self, tomb: Tombstone, entry: Entry, record: Record) -> None:
        if tomb.revision is not None and entry.revision <= tomb.revision:
            return
        tomb.revision = entry.revision
        if record.deleted is not None:
            tomb.written = True
            if record.deleted > tomb.stamp:
                tomb.stamp = record.deleted
        elif self._inflight.get(entry.key) is None:
            # Someone put the deleted uuid back (a foreign writer, or a write that raced the delete).
            tomb.written = False
            self._collection._host.changed(self._collection)

    def _fits_schema(self, entry: Entry, record: Record) -> bool:
        schema = self._collection.schema
        if schema is None:
            return True
        try:
            # A foreign value is stamped all alike by the decoder: its first stamp tells.
            first = record.first_stamp()
            if first is not None and first[1] == FOREIGN_NODE:
                schema.check_stored(record.data)
            else:
                schema.check_stored_types(record.data)
        except SchemaError as exc:
            self._dead_letter(entry, f"does not fit the schema: {exc}")
            return False
        return True

    def _create(self, uuid: str, record: Record, revision: int) -> None:
        collection = self._collection
        entity = new_entity(collection, uuid, record.data, record.compact_stamps, revision)
        collection.entities[uuid] = entity
        collection.indexes.on_add(uuid, record.data)
        if collection.has_listeners:
            changes = {name: (MISSING, value) for name, value in record.data.items()}
            collection.emit_remote_change(entity, changes, created=True)

    def _merge(self, entity: Entity, record: Record, revision: int) -> None:
        uuid = entity._uuid
        stamps = _own_stamps(entity)
        changed = merge_into(entity._data, stamps, record)
        _set_slot(entity, "_revision", revision)
        indexes = self._collection.indexes
        for name, old in changed.items():
            indexes.on_change(uuid, name, old, entity._data[name])
        if uuid in self._dirty and uuid not in self._inflight and _same_stamps(stamps, record):
            # What is stored already holds everything this node has: nothing left to write.
            _set_slot(entity, "_written", entity._version)
            del self._dirty[uuid]
            self.errors.pop(uuid, None)
        if changed:
            changes = {name: (old, entity._data[name]) for name, old in changed.items()}
            self._collection.emit_remote_change(entity, changes, created=False)

    def _drop(self, uuid: str, entity: Entity | None, tomb: Tombstone) -> None:
        self._tombstones[uuid] = tomb
        self._dirty.pop(uuid, None)
        self.errors.pop(uuid, None)
        if entity is None:
            return
        collection = self._collection
        del collection.entities[uuid]
        collection.indexes.on_remove(uuid, entity._data)
        collection.emit_remote_delete(uuid, entity)

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        self.dead_letter_count += 1
        self.dead_letters.append(DeadLetter(entry.key, entry.revision, entry.value, reason))
        logger.warning(
            "%s: entry %s at revision %d set aside: %s",
            self._collection.name,
            entry.key,
            entry.revision,
            reason,
        )


def _own_stamps(entity: Entity) -> dict[str, Stamp]:
    """The entity's stamps one per field, held so from now on (a merge changes them in place)."""
    stamps = entity._stamps
    if isinstance(stamps, dict):
        return stamps
    stamps = field_stamps(stamps, entity._data)
    _set_slot(entity, "_stamps", stamps)
    return stamps


def _same_stamps(stamps: dict[str, Stamp], record: Record) -> bool:
    theirs = record.stamps
    return len(stamps) == len(theirs) and all(theirs.get(name) == stamp for name, stamp in stamps.items())
