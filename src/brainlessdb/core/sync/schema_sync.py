"""SchemaSync: the one place that decides what happens to a collection's schema as nodes share it.

A schema set here (by a first ``add()`` or by ``typed()``) is pending until it is stored. What is stored
wins where the two disagree, but a node never loses a field it declared: a stored schema that this
node's schema extends (more optional fields, the same types) is extended and written again; one it
cannot extend (a field of another type) is adopted, and this node's entities that do not fit it are held
back and reported (never written). The same rules apply to the schema another node stores (``seen``),
to a write that met another revision (``conflicted``), and to a schema found in the journal
(``restore``).

An evolution (``core.evolution``) changes the schema's version, and versions decide first: a stored
schema of a later version than this node's is adopted (another node evolved it; the entities held here
take its names), keeping only the optional fields this node added and has not stored yet. This node's own
evolution is pending until stored (``evolving``): if another node stores a schema first, the step is made
again on that one, or refused (``refused``) when it no longer applies there; then the stored one stands.
"""

from __future__ import annotations

import dataclasses
import logging

from brainlessdb.core import models
from brainlessdb.core.codec import decode_json, encode_json
from brainlessdb.core.evolution import Evolution, evolve_schema, pending_part
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
        self.step: Evolution | None = None
        """This node's evolution of the schema while it is not stored yet."""
        self.refused: SchemaError | None = None
        """Why this node's last evolution was not stored after all: another node changed the schema first
        and the step no longer applies to what it stored."""

    @property
    def current(self) -> Schema | None:
        """The collection's schema now (None until it has one)."""
        return self._table.schema

    def changed(self) -> None:
        """The collection's schema changed here: it is to be stored."""
        self.pending = True

    def evolving(self, step: Evolution) -> None:
        """The collection's schema was just evolved here by ``step`` (``changed`` follows): until it is
        stored, a schema another node stores first gets the step made again on it."""
        self.step = step
        self.refused = None

    def stored(self, schema: Schema, revision: int) -> None:
        """``schema`` was stored at ``revision`` (still pending if it changed meanwhile)."""
        self.revision = revision
        self.error = None
        if self._table.schema == schema:
            self.pending = False
            self.step = None

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
        if self.step is not None or stored.version != local.version:
            if self._reconcile(stored, revision) is not None:
                # To be written over ``stored``: on its revision, with the next flush.
                self.revision = revision
                self.pending = True
            return
        try:
            grown = self._declared_over(stored, local).extend(local)
        except SchemaError:
            # Resolved when this node's flush meets the stored schema: ``conflicted`` reports it then.
            return
        if grown == stored:
            self._table.adopt_schema(stored)
            self.stored(stored, revision)
        else:
            self.revision = revision

    def apply_copy(self, entry: Entry) -> bool:
        """Another location's schema (its copy in this bucket): taken in where it adds to this one or is of a
        later version, and then stored in this location's own key too (schemas only grow and versions only
        rise, so this ends). True when there is now something to store."""
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
        elif self.step is not None and stored != local and stored.version >= local.version - 1:
            # Another location's schema of this node's base version or later: this node's step made on it.
            try:
                grown = evolve_schema(stored, pending_part(stored, self.step))
            except SchemaError as exc:
                logger.error("%s", self._refuse(stored, exc))
                grown = stored
                self._outbox.hold(stored)
        elif stored.version > local.version:
            grown = _regrow(stored, local) if self.pending else stored
        elif stored.version < local.version:
            return False  # this location's schema is the later one: the other location takes it
        else:
            try:
                grown = self._declared_over(stored, local).extend(local)
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
        if self.step is not None or stored.version != local.version:
            merged = self._reconcile(stored, revision)
            if merged is not None:
                self.revision = revision
            return merged
        try:
            merged = self._declared_over(stored, local).extend(local)
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

    def _declared_over(self, stored: Schema, local: Schema) -> Schema:
        """``stored`` with this node's declaration of the fields another node's ``add()`` inferred (see
        ``models.declare``: the declaration decides, whichever node came first)."""
        return models.declared_over(stored, local, (entity._data for entity in self._table.entities.values()))

    def _reconcile(self, stored: Schema, revision: int) -> Schema | None:
        """This node's schema and ``stored`` (at ``revision``) differ in version, or this node has an
        evolution to store: the schema to write over ``stored`` (adopted here), or None when ``stored``
        stands (adopted, and marked stored)."""
        local = self._table.schema
        assert local is not None, "reconciled only against a schema of this node's"
        if stored == local:
            self._table.adopt_schema(stored)
            self.stored(stored, revision)
            return None
        step = self.step
        if step is not None:
            # Another node stored a schema first: what of this node's step it lacks is made on it.
            try:
                evolved = evolve_schema(stored, pending_part(stored, step))
            except SchemaError as exc:
                error = self._refuse(stored, exc)
                self._rejected(stored, revision, error)
                return None
            self._table.adopt_schema(evolved)
            if evolved is stored:  # another node made the same step: it is stored
                self.stored(stored, revision)
                return None
            return evolved
        if stored.version > local.version:
            # Another node evolved the schema: adopted, with the optional fields this node added meanwhile.
            grown = _regrow(stored, local) if self.pending else stored
            self._table.adopt_schema(grown)
            if grown == stored:
                self.stored(stored, revision)
                return None
            return grown
        # The key holds an earlier version than this node's (put back, or written by a node that does not
        # know evolutions): this node's is written over it, with what it added.
        logger.warning(
            "collection %r: the stored schema is of version %d, this node's of version %d: storing it again",
            self._table.name,
            stored.version,
            local.version,
        )
        grown = _regrow(local, stored)
        self._table.adopt_schema(grown)
        return grown

    def _refuse(self, stored: Schema, exc: SchemaError) -> SchemaError:
        """This node's step does not apply to the schema another node stored first: it is dropped."""
        step = self.step
        assert step is not None
        self.step = None
        self.refused = SchemaError(
            f"collection {self._table.name!r}: another node changed the schema first (version "
            f"{stored.version}), and this evolution ({step.describe()}) does not apply to it: {exc}",
            field=exc.field,
        )
        return self.refused

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
        step = f", evolving: {self.step.describe()}" if self.step is not None else ""
        return f"<SchemaSync {self._table.name}: {state} at revision {self.revision}{failed}{step}>"


def _regrow(schema: Schema, other: Schema) -> Schema:
    """``schema`` with the optional fields of ``other`` it lacks (under ``schema``'s names; none that its
    history took out of use)."""
    fields = dict(schema.fields)
    for name, spec in other.fields.items():
        name = schema.renamed.get(name, name)
        if spec.required or name in fields or name in schema.retired:
            continue
        fields[name] = spec
    if len(fields) == len(schema.fields):
        return schema
    return dataclasses.replace(schema, fields=fields)
