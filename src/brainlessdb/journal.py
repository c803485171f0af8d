"""Journal: changes accepted in memory but not yet acknowledged by NATS, kept in a local SQLite file.

Optional (``Brainless(..., journal="node.journal")``). Every local change writes the entity's pending
version (or its delete, or the collection's schema) to the file before the call that made it returns;
an acknowledged write removes it again. After a crash (even ``kill -9``), the next ``start()`` with the
same file loads the buckets, merges the journal back in as pending changes, and flushes them.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed change survives the death of the
process (it is in the operating system's buffers), but not necessarily a power loss or a kernel crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from brainlessdb.errors import StorageError

SCHEMA_KEY = ""

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
