"""LocalChanges: the path of every change made on this node to one collection.

An ``add``, a field assignment (``entity.state = x``, ``entity["state"] = x``, a typed view's
``view.state = x``), a change inside a dict or list field, a delete, and a schema set by ``add()`` or
``typed()`` all come here. Each is checked against the schema (nothing partial is kept when it does not
fit), stamped by the clock, applied to the table (entities and indexes), handed to the sync state's
outbox, announced to the shell (``changed``: the journal and the flusher) and to local listeners. This
class is the ``EntityOwner`` of the collection's entities: they call it for every change.

What could never be stored is refused at the call, and nothing of it is kept: a change that would make an
entity's stored value larger than the storage takes (``SchemaError``, see ``sizes``), and any change once
the database has stopped (``NotStartedError``: it would never be written).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container
from typing import Any, Final, TypeVar

from brainlessdb.core import counters, nested, views
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.entity import Entity, FieldOwner, entity_class, new_entity, set_slot
from brainlessdb.core.expiry import check_seconds, deadline_after
from brainlessdb.core.merge import Extras
from brainlessdb.core.rows import Layout
from brainlessdb.core.schema import Schema, check_field_name
from brainlessdb.core.sizes import SHORT_TEXT, SizeGuard, Undo, encode_json
from brainlessdb.core.stamps import field_stamps, restamp
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.table import EntityTable
from brainlessdb.core.tracked import Path, untrack
from brainlessdb.core.values import MISSING, copy_json
from brainlessdb.errors import NotFoundError, NotStartedError, SchemaError

T = TypeVar("T")

Changed = Callable[[str | None], None]
"""Tells the shell that entity ``uuid`` (or the schema, for None) has a change waiting to be written."""

_NO_TYPES: Final[frozenset[type]] = frozenset()


class _EveryUuid:
    """Holds every uuid: what ``LocalChanges._large`` becomes once the database stopped."""

    def __contains__(self, uuid: object) -> bool:
        return True


_EVERY_UUID: Final = _EveryUuid()


class LocalChanges:
    """Makes this node's changes to one collection: checked, stamped, indexed, queued and announced."""

    def __init__(self, name: str, clock: HybridLogicalClock, changed: Changed) -> None:
        self.name = name
        self.layout = Layout()
        """Where each field's value sits in the entities' rows (see ``core.rows``)."""
        self.entity_class = entity_class(name, self, self.layout)
        self._clock = clock
        self._changed = changed
        self._nested_old: dict[tuple[str, str], Any] = {}
        self._undo: Undo | None = None  # a change in place to measure once made (close to the limit)
        self.stopped = False
        """Set by the shell when the database stops: every later change is refused."""
        # Set by ``attach``: the table and the sync state are built with this object as their owner.
        self._table: EntityTable
        self._sync: SyncState
        self._sizes: SizeGuard

    def attach(self, table: EntityTable, sync: SyncState) -> None:
        self._table = table
        self._sync = sync
        # The hot path of a field change reads these; the table and the sync state never rebind them.
        self._entities = table.entities
        self._indexes = table.indexes
        self._listeners = table.listeners
        self._outbox = sync.outbox
        self._sizes = SizeGuard(table, self._clock)
        # The uuids whose small changes are measured too: the hot path reads it (see ``stop``).
        self._large: Container[str] = self._sizes.large

    def limit_values(self, limit: int | None) -> None:
        """Refuse changes that would make an entity's stored value larger than ``limit`` bytes (None: no
        limit is known)."""
        self._sizes.set_limit(limit)

    def stop(self) -> None:
        """Refuse every change from now on (the database stopped: nothing more would be written)."""
        self.stopped = True
        # No change of a field takes the fast path any more: the slow one refuses it. So the fast path
        # pays nothing for this check.
        self._large = _EVERY_UUID

    def _refuse_stopped(self) -> None:
        raise NotStartedError(
            f"the database is stopped: {self.name} takes no more changes (they could never be written)"
        )

    # -- schema ----------------------------------------------------------------------------------

    def set_schema(self, schema: Schema) -> None:
        """Make ``schema`` the collection's, to be stored with the next flush."""
        if self.stopped:
            self._refuse_stopped()
        declared = self._table.declared_ttl
        if schema.ttl is None and declared is not None:
            schema = dataclasses.replace(schema, ttl=declared)  # ``ttl=`` declared before any schema
        self._table.adopt_schema(schema)
        self._sync.schema.changed()
        self._changed(None)

    # -- whole entities --------------------------------------------------------------------------

    def add(self, uuid: str, values: dict[str, Any]) -> Entity:
        """Add a new entity with ``values`` (checked here; the schema is inferred from a first add)."""
        if self.stopped:
            self._refuse_stopped()
        schema = self._table.schema
        if not values and (schema is None or not schema.fields):
            # A version without fields has no stamp to store: it could never be written.
            raise SchemaError("an entity needs at least one field")
        if schema is None:
            schema = Schema.infer(values)
            self.set_schema(schema)
        # Checked, in field order, and with private copies of dicts and lists: later changes through the
        # caller's own objects must not slip in untracked.
        values = schema.check_new(values)
        sizes = self._sizes
        if sizes.limit is not None:
            # Inline, as it runs for every add: the values that may be large, encoded at once (in C).
            pick = sizes.pick
            if schema is not sizes.schema or (
                pick is not None and len(encode_json(pick(values))) > sizes.room
            ):
                sizes.check_new(uuid, values)
        stamp = self._clock.tick()
        ttl = self._table.ttl
        row = self.layout.row(values)
        if ttl is None:
            entity = new_entity(self, uuid, row, stamp)
        else:
            # The collection's default expiry, set by the add itself (core.expiry).
            expiry = (deadline_after(self._clock.now_ms(), ttl), stamp)
            entity = new_entity(self, uuid, row, stamp, None, Extras(expiry=expiry))
        self._table.insert(entity)
        self._outbox.local_change(entity)
        self._changed(uuid)
        if self._listeners:
            changes = {name: (MISSING, value) for name, value in values.items()}
            self._table.emit_change(entity, changes, "local", created=True)
        return entity

    def delete(self, uuid: str) -> bool:
        """Delete the entity ``uuid``; False if this node does not hold it."""
        if self.stopped:
            self._refuse_stopped()
        entity = self._table.remove(uuid)
        if entity is None:
            return False
        self._sizes.forget(uuid)
        self._outbox.local_delete(entity, self._clock.tick())
        self._changed(uuid)
        self._table.emit_delete(uuid, entity, "local")
        return True

    def expire(self, uuid: str, seconds: float | None) -> None:
        """Make the entity ``uuid`` expire ``seconds`` from now (None: never), replacing any expiry it had.

        A change like any other (stamped, written in the background, merged last-writer-wins), though of
        no field: listeners are not told of it.
        """
        if self.stopped:
            self._refuse_stopped()
        checked = None if seconds is None else check_seconds(seconds)
        entity = self._entities.get(uuid)
        if entity is None:
            raise NotFoundError(self.name, uuid)
        current = entity._extras
        if checked is None:
            if current is None or current.expiry is None or current.expiry[0] is None:
                return  # it has no deadline: nothing to remove
            deadline = None
        else:
            deadline = deadline_after(self._clock.now_ms(), checked)
        extras = Extras() if current is None else current.copy()
        extras.expiry = (deadline, self._clock.tick())
        set_slot(entity, "_extras", extras)
        self._table.track_expiry(entity)
        self._outbox.local_change(entity)
        self._changed(uuid)

    # -- fields: the EntityOwner protocol --------------------------------------------------------

    def set_field(self, entity: Entity, name: str, value: Any) -> None:
        uuid = entity._uuid
        if self._entities.get(uuid) is not entity:
            if self.stopped:
                self._refuse_stopped()
            raise NotFoundError(self.name, uuid)
        layout = self.layout
        row = entity._row
        position = layout.positions.get(name)
        kind = type(value)
        if (
            kind in self._table.exact_types.get(name, _NO_TYPES)
            and (kind is not str or (value.isascii() and len(value) <= SHORT_TEXT))
            and (kind is not float or value - value == 0.0)
            and uuid not in self._large
        ):
            # The common case, a small scalar of a type the field takes, checked without a call; its entity
            # is far enough from the size limit for any small change (see ``sizes``).
            old = row[position] if position is not None and position < len(row) else MISSING
            if type(old) is kind and old == value:
                return
        else:
            if self.stopped:
                self._refuse_stopped()
            schema = self._table.schema
            if schema is None:
                check_field_name(name)
                value = copy_json(name, value)
            else:
                value = schema.accept(name, value)  # dicts and lists come back as private copies
            old = layout.get(row, name)
            kind = type(value)
            if kind is not dict and kind is not list and type(old) is kind and old == value:
                return
            if self._sizes.limit is not None:
                self._sizes.check_set(entity, name, value)
        set_slot(entity, "_row", layout.with_value(row, name, value))
        self._changed_field(entity, name, old, value)

    def _changed_field(self, entity: Entity, name: str, old: Any, new: Any, whole: bool = True) -> None:
        """Field ``name`` of ``entity`` changed here: stamped (unless not ``whole``: a change inside it or
        an increment, stamped otherwise), then indexes, outbox, shell and local listeners."""
        if whole:
            stamp = self._clock.tick()
            stamps = entity._stamps
            if isinstance(stamps, dict):
                stamps[name] = stamp
            else:
                # One stamp for every field, or a few fields with their own (``FieldStamps``), packed in
                # an integer: replaced (see ``stamps.Stamps``).
                changed = restamp(stamps, name, stamp)
                if changed is None:  # more fields with stamps of their own than a tuple holds
                    changed = field_stamps(stamps, self.layout.present(entity._row))
                    changed[name] = stamp
                set_slot(entity, "_stamps", changed)
            extras = entity._extras
            if extras is not None and extras.holds(name):
                # Written whole: the writes inside the field and its tallies are behind this write.
                extras.set_field(name, None, None)
                if not extras:
                    set_slot(entity, "_extras", None)
        if name in self._indexes.fields:
            self._indexes.on_change(entity._uuid, name, old, new)
        self._outbox.local_change(entity)
        self._changed(entity._uuid)
        if self._listeners:
            self._table.emit_change(entity, {name: (old, new)}, "local")

    def default_of(self, entity: Entity, name: str) -> Any:
        schema = self._table.schema
        spec = None if schema is None else schema.fields.get(name)
        if spec is None:
            if schema is not None and name in schema.retired:
                raise AttributeError(f"{self.name} entity: {schema.unknown(name)}")  # an evolution's
            raise AttributeError(f"{self.name} entity has no field {name!r}")
        return spec.default

    def track_field(self, entity: Entity, name: str, value: dict[str, Any] | list[Any]) -> Any:
        tracked = FieldOwner(entity, name).wrap(value)
        set_slot(entity, "_row", self.layout.with_value(entity._row, name, tracked))
        return tracked

    def before_nested(self, entity: Entity, name: str, container: Any, added: Any) -> None:
        if self.stopped:
            self._refuse_stopped()
        if self._sizes.limit is not None:
            self._undo = self._sizes.before_nested(entity, name, container, added)
        if self._listeners or self._indexes.covers(name):
            self._nested_old.setdefault((entity._uuid, name), untrack(self.layout.get(entity._row, name)))

    def after_nested(self, entity: Entity, name: str, paths: list[Path]) -> None:
        whole = () in paths
        extras = None if whole else self._extras_after(entity, name, paths)
        undo = self._undo
        if undo is not None:
            self._undo = None
            try:
                self._sizes.after_nested(entity, name, undo, extras)
            except SchemaError:
                self._nested_old.pop((entity._uuid, name), None)
                raise
        old = self._nested_old.pop((entity._uuid, name), MISSING)
        new = self.layout.get(entity._row, name)
        if whole or extras is None:
            self._changed_field(entity, name, old, new)
        else:
            set_slot(entity, "_extras", extras)
            self._changed_field(entity, name, old, new, whole=False)

    def _extras_after(self, entity: Entity, name: str, paths: list[Path]) -> Extras | None:
        """The entity's extras once ``paths`` inside field ``name`` are written by a change stamped now
        (None if the field has no stamp of its own yet: the change is then a write of the whole field)."""
        if not self.layout.holds(entity._row, name) or not paths:
            return None
        stamp = self._clock.tick()
        current = entity._extras
        extras = Extras() if current is None else current.copy()
        kept = extras.paths.get(name)
        for path in paths:
            kept = nested.record_write(kept, path, stamp)
        extras.set_field(name, kept, None)
        return extras

    # -- counters ------------------------------------------------------------------------------

    def increment(self, entity: Entity, name: str, delta: int) -> int:
        """Add ``delta`` to the integer field ``name`` as this node's tally (see ``core.counters``)."""
        uuid = entity._uuid
        if self.stopped:
            self._refuse_stopped()
        if self._entities.get(uuid) is not entity:
            raise NotFoundError(self.name, uuid)
        if type(delta) is not int:
            raise TypeError(f"increment takes an int, not {type(delta).__name__}")
        value = self.layout.get(entity._row, name)
        if value is MISSING:
            try:
                value = self.default_of(entity, name)
            except AttributeError:
                raise SchemaError(f"{self.name} has no field {name!r}", field=name) from None
            if counters.is_counter_value(value):
                self.set_field(entity, name, value)  # a write of the field, which tallies count from
        if not counters.is_counter_value(value):
            raise SchemaError(
                f"{self.name}.{name} holds {value!r}: only an integer field can be incremented", field=name
            )
        new: int = value + delta
        extras = entity._extras
        counts = counters.add(None if extras is None else extras.counts.get(name), self._clock.replica, delta)
        if abs(new) > counters.LIMIT or max(counts[self._clock.replica]) > counters.LIMIT:
            raise SchemaError(f"{self.name}.{name}: {value} + {delta} is beyond ±2**53", field=name)
        if delta == 0:
            return new
        schema = self._table.schema
        if schema is not None:
            schema.accept(name, new)  # the field must take an integer
        if self._sizes.limit is not None:
            self._sizes.check_set(entity, name, new)
        if extras is None:
            extras = Extras()
            set_slot(entity, "_extras", extras)
        extras.counts[name] = counts
        set_slot(entity, "_row", self.layout.with_value(entity._row, name, new))
        self._changed_field(entity, name, value, new, whole=False)
        return new

    def view(self, entity: Entity, cls: type[T]) -> T:
        return views.make_view(cls, entity)

    def clear(self) -> None:
        self._nested_old.clear()
        self._undo = None
        self._sizes.clear()
