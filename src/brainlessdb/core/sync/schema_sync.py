"""SchemaSync: the one place that decides what happens to a collection's schema as nodes share it.

A schema set here (by a first ``add()`` or by ``typed()``) is pending until it is stored. What is stored
wins where the two disagree, but a node never loses a field it declared: a stored schema that this
node's schema extends (more optional fields, the same types) is extended and written again; one it
cannot extend (a field of another type) is adopted, and this node's entities that do not fit it are held
back and reported (never written). The same rules apply to the schema another node stores (``seen``),
to a write that met another revision (``conflicted``), and to a schema found in the journal
(``restore``).
"""

from __future__ import annotations

import logging

from brainlessdb.core.codec import decode_json, encode_json
from brainlessdb.core.schema import Schema
from brainlessdb.core.sync.outbox import Outbox
from brainlessdb.core.table import EntityTable
from brainlessdb.errors import DecodeError, SchemaError
from brainlessdb.storage.base import Entry, Op

logger = logging.getLogger(__name__)


def encode_schema(schema: Schema) -> bytes:
    """The stored bytes of a schema."""
    return encode_json(schema.to_json())


def decode_schema(value: bytes) -> Schema:
    """A stored schema (``DecodeError`` or ``SchemaError`` if it cannot be read)."""
    return Schema.from_json(decode_json(value))


class SchemaSync:
    """Whether a collection's schema is stored, at which revision, and what to do with a stored one."""

    def __init__(self, table: EntityTable, outbox: Outbox) -> None:
        self._table = table
        self._outbox = outbox
        self.pending = False
        """True while this node's schema is not stored yet."""
        self.revision: int | None = None
        """The revision of the stored schema this node last saw."""
        self.error: BaseException | None = None
        """Why the last write of the schema failed (None once one succeeds)."""

    def changed(self) -> None:
        """The collection's schema changed here: it is to be stored."""
        self.pending = True

    def stored(self, schema: Schema, revision: int) -> None:
        """``schema`` was stored at ``revision`` (still pending if it changed meanwhile)."""
        self.revision = revision
        self.error = None
        if self._table.schema == schema:
            self.pending = False

    def failed(self, error: BaseException) -> None:
        """Storing the schema failed for now; it is retried with the next flush."""
        self.error = error

    def lost(self, revision: int | None = None) -> None:
        """The stored schema is gone (its key is empty, or holds the delete marker at ``revision``): it is
        to be stored again, over that revision."""
        self.revision = revision
        if self._table.schema is not None:
            self.pending = True

    def apply(self, entry: Entry) -> None:
        """The entry of the schema's key in the collection's bucket (read at attach, replayed, watched)."""
        if self.revision is not None and entry.revision <= self.revision:
            return  # seen already (read before the replay, then replayed)
        if entry.op is not Op.PUT:
            self.lost(entry.revision)
            return
        try:
            stored = decode_schema(entry.value)
        except (DecodeError, SchemaError) as exc:
            logger.error("unreadable schema of collection %r: %s", self._table.name, exc)
            return
        self.seen(stored, entry.revision)

    def seen(self, stored: Schema, revision: int) -> None:
        """Another node stored ``stored`` at ``revision`` (read from the bucket)."""
        local = self._table.schema
        if local is None or local == stored:
            self._table.adopt_schema(stored)
            self.stored(stored, revision)
            return
        try:
            grown = stored.extend(local)
        except SchemaError:
            # Resolved when this node's flush meets the stored schema: ``conflicted`` reports it then.
            return
        if grown == stored:
            self._table.adopt_schema(stored)
            self.stored(stored, revision)
        else:
            self.revision = revision

    def apply_copy(self, entry: Entry) -> bool:
        """Another location's schema (its copy in this bucket): taken in where it adds to this one, and then
        stored in this location's own key too (schemas only grow, so this ends). True when there is now
        something to store."""
        if entry.op is not Op.PUT:
            return False
        try:
            stored = decode_schema(entry.value)
        except (DecodeError, SchemaError) as exc:
            logger.error(
                "unreadable schema of collection %r from another location: %s", self._table.name, exc
            )
            return False
        local = self._table.schema
        if local is None:
            grown = stored
        else:
            try:
                grown = stored.extend(local)
            except SchemaError as exc:
                logger.error(
                    "collection %r: another location stored an incompatible schema: %s", self._table.name, exc
                )
                return False
            if grown == local:
                return False
        self._table.adopt_schema(grown)
        self.pending = True
        return True

    def conflicted(self, stored: Schema, revision: int) -> Schema | None:
        """Writing the schema met ``stored`` at ``revision``: the schema to write now, or None if done."""
        local = self._table.schema
        assert local is not None, "only a set schema is written"
        try:
            merged = stored.extend(local)
        except SchemaError as exc:
            message = f"collection {self._table.name!r}: another node stored an incompatible schema: {exc}"
            self._rejected(stored, revision, SchemaError(message, field=exc.field))
            return None
        self._table.adopt_schema(merged)
        self.revision = revision
        if merged == stored:
            self.stored(merged, revision)
            return None
        return merged

    def _rejected(self, stored: Schema, revision: int, error: SchemaError) -> None:
        """Another node stored an incompatible schema first: adopt it, and hold back what does not fit.

        Entities that do not fit the stored schema stay in memory, are never written, and are reported
        by every flush; everything that fits is written as usual.
        """
        logger.error("%s", error)
        self._table.adopt_schema(stored)
        self.revision = revision
        self.pending = False
        self.error = None
        self._outbox.hold(stored)

    def restore(self, schema: Schema) -> None:
        """A schema found in the journal after a crash: taken back unless one is known already."""
        if self._table.schema is None:
            self._table.adopt_schema(schema)
            self.pending = True

    def clear(self) -> None:
        self.error = None

    def __repr__(self) -> str:
        state = "pending" if self.pending else "stored"
        failed = f", failed: {self.error}" if self.error is not None else ""
        return f"<SchemaSync {self._table.name}: {state} at revision {self.revision}{failed}>"
