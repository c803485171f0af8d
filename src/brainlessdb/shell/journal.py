"""Journal: changes accepted in memory but not yet acknowledged by NATS, kept in a local SQLite file.

Optional (``Brainless(..., journal="node.journal")``). Every local change writes the entity's pending
version (or its delete, or the collection's schema) to the file before the call that made it returns;
an acknowledged write removes it again. After a crash (even ``kill -9``), the next ``start()`` with the
same file loads the buckets, merges the journal back in as pending changes, and flushes them.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed change survives the death of the
process (it is in the operating system's buffers), but not necessarily a power loss or a kernel crash.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from brainlessdb.core.collection import Collection
from brainlessdb.core.sync.schema_sync import decode_schema, encode_schema
from brainlessdb.errors import BrainlessError, StorageError

logger = logging.getLogger(__name__)

JOURNAL_SCHEMA_ROW: Final = ""  # the uuid column of a collection's schema row

_CREATE = """
CREATE TABLE IF NOT EXISTS pending (
    collection TEXT NOT NULL,
    uuid TEXT NOT NULL,
    value BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (collection, uuid)
)
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One pending change: an entity version, a delete, or (``uuid == ""``) a collection's schema."""

    collection: str
    uuid: str
    value: bytes
    deleted: bool


class Journal:
    """The pending changes of one node, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_CREATE)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the journal {self.path}: {exc}") from exc

    def record(self, collection: str, uuid: str, value: bytes, deleted: bool) -> None:
        """Keep the pending version of ``uuid`` (replacing an older one)."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?)", (collection, uuid, value, int(deleted))
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the journal {self.path}: {exc}") from exc

    def settle(self, collection: str, uuids: Iterable[str]) -> None:
        """Forget changes that NATS has acknowledged."""
        rows = [(collection, uuid) for uuid in uuids]
        if not rows:
            return
        try:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM pending WHERE collection = ? AND uuid = ?", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the journal {self.path}: {exc}") from exc

    def note(self, collection: Collection[Any], uuid: str | None) -> None:
        """Keep what is now pending for entity ``uuid`` (or the collection's schema, for None)."""
        if uuid is None:
            if collection.schema is not None:
                self.record(collection.name, JOURNAL_SCHEMA_ROW, encode_schema(collection.schema), False)
            return
        pending = collection.sync.outbox.pending_value(uuid)
        if pending is None:
            self.settle(collection.name, [uuid])
        else:
            self.record(collection.name, uuid, *pending)

    def settle_written(self, collection: Collection[Any], keys: list[str]) -> None:
        """After a flush round: forget what of ``keys`` (and the schema) has nothing pending any more."""
        settled = collection.sync.outbox.settled(keys)
        if not collection.sync.schema.pending:
            settled.append(JOURNAL_SCHEMA_ROW)
        self.settle(collection.name, settled)

    async def restore(self, open_collection: Callable[[str], Awaitable[Collection[Any]]]) -> None:
        """Merge every pending change back into its (loaded) collection, to be written again."""
        entries = self.entries()
        for entry in entries:
            try:
                collection = await open_collection(entry.collection)
                if entry.uuid == JOURNAL_SCHEMA_ROW:
                    collection.sync.schema.restore(decode_schema(entry.value))
                else:
                    collection.sync.inbox.restore(entry.uuid, entry.value, entry.deleted)
            except BrainlessError as exc:
                logger.error("journal entry %s/%s cannot be restored: %s", entry.collection, entry.uuid, exc)
        if entries:
            logger.info("restored %d pending change(s) from the journal %s", len(entries), self.path)

    def entries(self) -> list[JournalEntry]:
        """Every pending change, schemas first."""
        rows = self._db.execute(
            "SELECT collection, uuid, value, deleted FROM pending ORDER BY uuid != '', rowid"
        ).fetchall()
        return [JournalEntry(c, u, bytes(v), bool(d)) for c, u, v, d in rows]

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"
