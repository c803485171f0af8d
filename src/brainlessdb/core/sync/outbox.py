"""Outbox: a collection's local changes on their way to the bucket.

``take_writes()`` hands the shell the compare-and-set writes to do; ``written()`` and ``failed()`` report
their outcomes (a conflict goes through ``SyncState.conflicted``, which merges). The rules it keeps: an
entity stays dirty until a write of its latest version is acknowledged; a change made while a write is
in flight makes it dirty again, so it is written once more, never lost and never written twice. Entities
that do not fit the schema another node stored are held back (``hold``), reported, and never written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from brainlessdb.core.clock import HybridLogicalClock, Stamp
from brainlessdb.core.codec import decode_value, encode_entity, encode_tombstone
from brainlessdb.core.entity import Entity, set_slot
from brainlessdb.core.expiry import server_ttl
from brainlessdb.core.schema import Schema
from brainlessdb.core.sync.tombstones import Tombstones
from brainlessdb.core.table import EntityTable
from brainlessdb.errors import EncodeError, SchemaError
from brainlessdb.storage.base import Write


@dataclass(slots=True)
class PendingWrite(Write):
    """A write for the shell: store ``value`` at ``key`` if its last revision is still the expected one.

    A storage ``Write`` itself (handed to ``Storage.write`` as it is), plus the entity version it holds.
    """

    version: int = 0


class Outbox:
    """What of one collection is still to be written, what is in flight, and why writes failed."""

    def __init__(
        self, table: EntityTable, tombstones: Tombstones, clock: HybridLogicalClock | None = None
    ) -> None:
        self._table = table
        self._tombstones = tombstones
        self._clock = clock  # tells the time left to expiring entities (core.expiry)
        self._dirty: dict[str, Entity] = {}
        self._inflight: dict[str, int] = {}
        self._sent: dict[str, bytes] = {}
        self._held: set[str] = set()
        self.errors: dict[str, BaseException] = {}
        """Why the last write of each key failed (kept until a write of it succeeds)."""
        self.copied: set[str] = set()
        """Uuids another location holds a version of (its copy is in this bucket): deleting one is written
        here even if this location never stored it, or the copy would bring it back."""

    # -- local changes ---------------------------------------------------------------------------

    def local_change(self, entity: Entity) -> None:
        set_slot(entity, "_version", entity._version + 1)
        self._dirty[entity._uuid] = entity

    def local_delete(self, entity: Entity, stamp: Stamp) -> None:
        uuid = entity._uuid
        self.forget(uuid)
        stored = entity._revision is not None or uuid in self._inflight or uuid in self.copied
        self._tombstones.add(uuid, stamp, entity._revision, pending=stored)

    def forget(self, uuid: str) -> None:
        """Nothing of ``uuid`` is to be written any more (it was deleted)."""
        self._dirty.pop(uuid, None)
        self.errors.pop(uuid, None)

    def settle(self, entity: Entity) -> None:
        """The bucket holds everything ``entity`` has: nothing is left to write (unless in flight)."""
        uuid = entity._uuid
        if uuid in self._dirty and uuid not in self._inflight:
            set_slot(entity, "_written", entity._version)
            del self._dirty[uuid]
            self.errors.pop(uuid, None)

    def hold(self, schema: Schema) -> None:
        """Hold back the dirty entities that do not fit ``schema`` (stored by another node)."""
        for uuid, entity in self._dirty.items():
            if not self._fits(schema, entity):
                self._held.add(uuid)

    def _fits(self, schema: Schema, entity: Entity) -> bool:
        try:
            schema.check_stored(entity._data)
        except SchemaError as exc:
            self.errors[entity._uuid] = SchemaError(
                f"{self._table.name}/{entity._uuid} does not fit the stored schema: {exc}", field=exc.field
            )
            return False
        return True

    # -- writing ---------------------------------------------------------------------------------

    def take_writes(self) -> list[PendingWrite]:
        """The writes to do now: every dirty entity and unwritten delete that is not already in flight."""
        writes: list[PendingWrite] = []
        inflight, sent, held = self._inflight, self._sent, self._held
        for uuid, entity in self._dirty.items():
            if uuid in inflight:
                continue
            if held and uuid in held:
                schema = self._table.schema
                if schema is None or not self._fits(schema, entity):
                    continue
                held.discard(uuid)
                self.errors.pop(uuid, None)
            try:
                # Checked already: add(), assignments and tracked containers check what they take.
                value = encode_entity(entity._data, entity._stamps, entity._extras, checked=True)
            except EncodeError as exc:
                self.errors[uuid] = exc
                continue
            revision, version = entity._revision, entity._version
            inflight[uuid] = version
            sent[uuid] = value
            write = PendingWrite(uuid, value, 0 if revision is None else revision, version=version)
            extras = entity._extras
            if extras is not None and extras.expiry is not None:
                write.ttl = self._server_ttl(extras.expiry[0])
            writes.append(write)
        for uuid, tomb in self._tombstones.pending():
            if uuid in inflight:
                continue
            inflight[uuid] = 0
            expected = 0 if tomb.revision is None else tomb.revision
            write = PendingWrite(uuid, encode_tombstone(tomb.stamp), expected, delete=True)
            mode = self._table.expiry
            if mode.server is True:
                write.ttl = mode.marker_ttl  # the server removes the marker past its retention, too
            writes.append(write)
        return writes

    def _server_ttl(self, deadline: int | None) -> float | None:
        """The per-message TTL of a write of an entity due at ``deadline``, where the server removes expired
        entities: each such write carries it (one without would make the entity permanent in the bucket)."""
        if deadline is None or self._clock is None or self._table.expiry.server is not True:
            return None
        return server_ttl(deadline, self._clock.now_ms())

    def ttl_of(self, value: bytes) -> float | None:
        """The per-message TTL a write of ``value`` (an entity version written outside the outbox, such as
        a claim's) carries, as the outbox's own writes do (None: none)."""
        if self._table.expiry.server is not True:
            return None
        extras = decode_value(value, time_ns=0).extras
        if extras is None or extras.expiry is None:
            return None
        return self._server_ttl(extras.expiry[0])

    def written(self, write: PendingWrite, revision: int) -> None:
        """NATS stored ``write`` at ``revision``."""
        uuid = write.key
        self.release(write)
        if self.errors:
            self.errors.pop(uuid, None)
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            tomb.revision = max(tomb.revision or 0, revision)
            # A create acknowledged after the entity was deleted: the marker must now be written over it.
            tomb.pending = not write.delete
            return
        entity = self._table.entities.get(uuid)
        if entity is None:
            return
        if entity._revision is None or revision > entity._revision:
            set_slot(entity, "_revision", revision)
        if write.version > entity._written:
            set_slot(entity, "_written", write.version)
        if entity._written == entity._version:
            self._dirty.pop(uuid, None)

    def failed(self, write: PendingWrite, error: BaseException) -> None:
        """``write`` failed; what it held stays pending and is retried by a later flush.

        The error is kept only while something of the key is pending: a write failing after what it held
        was settled otherwise (a remote delete dropped the entity) reports nothing.
        """
        self.release(write)
        uuid = write.key
        if uuid in self._dirty or not self._tombstones.is_settled(uuid):
            self.errors[uuid] = error

    def marker_stored(self, uuid: str) -> None:
        """The delete marker of ``uuid`` is in the bucket (seen there, or found gone with its key)."""
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            tomb.pending = False
            self.errors.pop(uuid, None)

    def release(self, write: PendingWrite) -> None:
        """``write`` is no longer in flight (whatever its outcome)."""
        self._inflight.pop(write.key, None)
        self._sent.pop(write.key, None)

    def overwrite(self, uuid: str, revision: int) -> None:
        """Write this node's version over what the key holds at ``revision`` (which cannot be used)."""
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            tomb.revision = max(tomb.revision or 0, revision)
            return
        entity = self._table.entities.get(uuid)
        if entity is not None:
            set_slot(entity, "_revision", max(entity._revision or 0, revision))

    # -- questions -------------------------------------------------------------------------------

    def is_inflight(self, uuid: str) -> bool:
        return uuid in self._inflight

    def is_dirty(self, uuid: str) -> bool:
        return uuid in self._dirty

    def sent_value(self, uuid: str) -> bytes | None:
        """The bytes of the write of ``uuid`` in flight (None if none is)."""
        return self._sent.get(uuid)

    def pending_count(self) -> int:
        """Entities and deletes not yet acknowledged by NATS."""
        return len(self._dirty) + self._tombstones.pending_count()

    def pending_keys(self) -> list[str]:
        """The uuids of the entities and deletes not yet acknowledged by NATS."""
        return [*self._dirty, *(uuid for uuid, _ in self._tombstones.pending())]

    # -- the journal: pending changes kept on local disk ------------------------------------------

    def pending_value(self, uuid: str) -> tuple[bytes, bool] | None:
        """The encoded pending version of ``uuid`` and whether it is a delete (None if nothing pending)."""
        tomb = self._tombstones.get(uuid)
        if tomb is not None:
            return (encode_tombstone(tomb.stamp), True) if tomb.pending else None
        entity = self._dirty.get(uuid)
        if entity is None:
            return None
        try:
            return encode_entity(entity._data, entity._stamps, entity._extras), False
        except EncodeError:
            return None

    def settled(self, uuids: Iterable[str]) -> list[str]:
        """Those of ``uuids`` that have nothing pending any more."""
        tombstones = self._tombstones
        return [uuid for uuid in uuids if uuid not in self._dirty and tombstones.is_settled(uuid)]

    def clear(self) -> None:
        self._dirty.clear()
        self._inflight.clear()
        self._sent.clear()
        self._held.clear()
        self.errors.clear()

    def __repr__(self) -> str:
        return (
            f"<Outbox {self._table.name}: {len(self._dirty)} dirty, {len(self._inflight)} in flight, "
            f"{self._tombstones.pending_count()} deletes pending, {len(self.errors)} errors>"
        )
