"""SyncState: everything of one collection's syncing that is not I/O, in four parts the shell drives.

This is the sans-I/O side between a collection's table and its bucket:

- ``outbox``: local changes to write; ``take_writes()``, then ``written()`` or ``failed()``;
- ``inbox``: ``apply()`` for every entry of the bucket, dead letters, full replays;
- ``tombstones``: the deletes remembered, and when their markers may go;
- ``schema``: whether the schema is stored, and what to do with one another node stored (its entry,
  under the reserved key ``_schema`` of the collection's bucket, reaches it through the inbox).

``conflicted()`` spans two of them (a write met another revision: merge what is stored, then write
again), and the questions the shell asks of all of them together (``has_pending``, ``errors``...) are
here too. The shell changes this state only through these methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.expiry import ExpiryMode
from brainlessdb.core.names import SCHEMA_KEY, copied_key
from brainlessdb.core.sync.inbox import Inbox
from brainlessdb.core.sync.outbox import Outbox, PendingWrite
from brainlessdb.core.sync.schema_sync import SchemaSync
from brainlessdb.core.sync.tombstones import Tombstones
from brainlessdb.core.table import EntityTable
from brainlessdb.storage.base import Entry

logger = logging.getLogger(__name__)

SCHEMA_ERROR_KEY: Final = "(schema)"
"""The key under which ``errors()`` reports why the schema could not be stored (no uuid looks like it)."""


class SyncState:
    """The sync state of one collection."""

    def __init__(self, table: EntityTable, clock: HybridLogicalClock, wake: Callable[[], None]) -> None:
        self._table = table
        self._clock = clock
        self._wake = wake
        self.tombstones = Tombstones()
        self.outbox = Outbox(table, self.tombstones, clock)
        self.schema = SchemaSync(table, self.outbox)
        self.inbox = Inbox(table, self.outbox, self.tombstones, clock, wake, self._reserved)

    def _reserved(self, entry: Entry) -> None:
        """An entry of the bucket under a reserved key (``names.RESERVED_PREFIX``): the collection's schema,
        or another location's copy of one of its keys (``_<peer>.<key>``, see ``names.copied_key``)."""
        if entry.key == SCHEMA_KEY:
            self.schema.apply(entry)
            return
        copied = copied_key(entry.key)
        if copied is None:
            logger.debug("%s: reserved key %r ignored", self._table.name, entry.key)
        elif copied == SCHEMA_KEY:
            if self.schema.apply_copy(entry):
                self._wake()  # this location stores the grown schema in its own key too
        else:
            self.inbox.apply_copy(copied, entry)

    def conflicted(self, write: PendingWrite, current: Entry | None) -> None:
        """``write`` found another revision; ``current`` is what the bucket holds now."""
        uuid = write.key
        self.outbox.release(write)
        if current is not None:
            letters = self.inbox.dead_letter_count
            self.inbox.apply(current)
            if self.inbox.dead_letter_count != letters:
                # What the key holds now cannot be used: write this node's version over it, or the write
                # would meet the same revision again and again.
                self.outbox.overwrite(uuid, current.revision)
            return
        self.vanished(uuid)

    def vanished(self, uuid: str) -> None:
        """The bucket holds nothing for ``uuid``: if this node saw it stored, it was deleted and its marker
        purged, so memory drops it too (an entity created here and never written is kept)."""
        if uuid in self.tombstones:
            self.outbox.marker_stored(uuid)
            return
        entity = self._table.entities.get(uuid)
        if entity is not None and entity._revision is not None:
            self.inbox.drop(uuid, self._clock.tick(), None)

    @property
    def expiry(self) -> ExpiryMode:
        """Who removes this collection's expired entities from its bucket (the shell settles it)."""
        return self._table.expiry

    def next_deadline(self) -> int | None:
        """The earliest deadline of an entity held (Unix ms), None if none expires."""
        return self._table.deadlines.next_at()

    def expire_due(self) -> int:
        """Remove every entity whose deadline has passed by this node's clock (``Inbox.expire``); how many.

        Queries call it first, so that nothing past its deadline is ever returned, and the shell's timer
        calls it at each deadline (``shell.expiry``).
        """
        deadlines = self._table.deadlines
        next_at = deadlines.next_at()
        if next_at is None:
            return 0
        now_ms = self._clock.now_ms()
        if next_at > now_ms:
            return 0
        due = deadlines.due(now_ms)
        for uuid in due:
            self.inbox.expire(uuid)
        return len(due)

    def delete_again(self, uuid: str, revision: int) -> None:
        """Write the delete of ``uuid`` again, over an older version the bucket holds at ``revision``."""
        if not self.outbox.is_inflight(uuid):
            self.tombstones.delete_again(uuid, revision)

    # -- questions of the whole ------------------------------------------------------------------

    def is_deleted(self, uuid: str) -> bool:
        return uuid in self.tombstones

    def is_unwritten(self, uuid: str) -> bool:
        """True when this node made ``uuid`` and NATS never acknowledged a version of it (one known only
        from another location's copy has no version of its own to write)."""
        entity = self._table.entities.get(uuid)
        return entity is not None and entity._revision is None and self.outbox.is_dirty(uuid)

    def pending_count(self) -> int:
        """Entities and deletes not yet acknowledged by NATS."""
        return self.outbox.pending_count()

    def has_pending(self) -> bool:
        return self.schema.pending or self.outbox.pending_count() > 0

    def pending_keys(self) -> list[str]:
        """The uuids of what is not acknowledged yet, and ``SCHEMA_ERROR_KEY`` for a pending schema."""
        keys = self.outbox.pending_keys()
        return [*keys, SCHEMA_ERROR_KEY] if self.schema.pending else keys

    def errors(self) -> dict[str, BaseException]:
        """Why what is pending could not be written, by uuid (``SCHEMA_ERROR_KEY`` for the schema)."""
        errors = dict(self.outbox.errors)
        if self.schema.error is not None:
            errors[SCHEMA_ERROR_KEY] = self.schema.error
        return errors

    @property
    def dead_letter_count(self) -> int:
        return self.inbox.dead_letter_count

    def clear(self) -> None:
        """Forget everything (the collection's memory was cleared)."""
        self.outbox.clear()
        self.tombstones.clear()
        self.inbox.clear()
        self.schema.clear()

    def __repr__(self) -> str:
        return (
            f"<SyncState {self._table.name}: {self.outbox.pending_count()} pending "
            f"({len(self.tombstones)} tombstones), revision {self.inbox.last_revision}, "
            f"schema {'pending' if self.schema.pending else 'stored'}>"
        )
