"""EntityTable: what one collection holds — its entities, their indexes, its listeners and its schema.

The table is the one place where these change. Local changes (the public ``Collection``) and changes
merged from the bucket (the sync state) use the same few verbs: ``insert``, ``remove``, ``reindex`` and
the two ``emit_*``; neither reaches into the other. Entities are built here (``new_entity``) as instances
of their owner's entity class, and query results are made here (``result``/``results``): the entities
themselves, or live typed views when the collection is typed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from brainlessdb.core import views
from brainlessdb.core.entity import Entity, EntityOwner, add_fields, new_entity
from brainlessdb.core.evolution import upgrade_entities
from brainlessdb.core.expiry import Deadlines, ExpiryMode
from brainlessdb.core.merge import Extras
from brainlessdb.core.query.index import IndexSet
from brainlessdb.core.query.plan import Plan
from brainlessdb.core.schema import Schema
from brainlessdb.core.stamps import Stamps
from brainlessdb.events import Change, Delete, DeleteReason, Event, Listener, Origin

Dispatch = Callable[[Listener, Event], None]
"""Delivers one event to one listener (the database calls sync callbacks and schedules async ones)."""


class EntityTable:
    """The entities of one collection with their indexes, listeners and schema."""

    def __init__(self, owner: EntityOwner, dispatch: Dispatch) -> None:
        self.owner = owner
        self.name = owner.name
        # These containers are never rebound, so the collection may hold them directly.
        self.entities: dict[str, Entity] = {}
        self.layout = owner.entity_class._layout
        """Where each field sits in the entities' rows (see ``core.rows``)."""
        self.indexes = IndexSet(self.layout)
        self.listeners: list[Listener] = []
        self.plans: dict[tuple[str, ...], Plan] = {}
        self.schema: Schema | None = None
        self.field_types: dict[str, str] | None = None
        self.exact_types: Mapping[str, frozenset[type]] = {}
        self.view_type: type[Any] | None = None
        self._dispatch = dispatch
        # Expiring entities (core.expiry): their deadlines, who removes them from the bucket, and the
        # default expiry ``db.collection(name, ttl=...)`` declared before a schema held one.
        self.deadlines = Deadlines()
        self.expiry = ExpiryMode()
        self.declared_ttl: float | None = None

    @property
    def ttl(self) -> float | None:
        """The default expiry of new entities, in seconds: the schema's, else the one declared here."""
        schema = self.schema
        if schema is not None and schema.ttl is not None:
            return schema.ttl
        return self.declared_ttl

    def track_expiry(self, entity: Entity) -> None:
        """The expiry of ``entity`` (held here) may have changed: its deadline is scheduled again."""
        extras = entity._extras
        expiry = None if extras is None else extras.expiry
        if expiry is not None:
            self.expiry.used = True
        self.deadlines.schedule(entity._uuid, None if expiry is None else expiry[0])

    def adopt_schema(self, schema: Schema) -> None:
        """Make ``schema`` the collection's: entities read its fields as attributes, queries re-plan."""
        self.schema = schema
        if schema.ttl is not None:
            self.expiry.used = True
        self.field_types = schema.field_types()
        self.exact_types = schema.exact_types
        add_fields(self.owner.entity_class, schema.fields)
        self.plans.clear()
        if upgrade_entities(self.entities.values(), schema):
            # Entities held from before an evolution took its names: indexes are made again on demand.
            self.indexes.clear()

    def new_entity(
        self,
        uuid: str,
        data: dict[str, Any],
        stamps: Stamps,
        revision: int | None = None,
        extras: Extras | None = None,
    ) -> Entity:
        """An entity of this collection holding ``data`` (not yet in the table)."""
        return new_entity(self.owner, uuid, self.layout.row(data), stamps, revision, extras)

    def insert(self, entity: Entity) -> None:
        """Hold ``entity`` and index it."""
        self.entities[entity._uuid] = entity
        self.indexes.on_add(entity._uuid, entity._row)
        if entity._extras is not None:
            self.track_expiry(entity)

    def insert_all(self, made: dict[str, Entity]) -> None:
        """Hold and index the entities of ``made`` (by uuid; none of them held yet): ``insert`` of each, in
        one step where no index or kept order has to learn of them (a restart restoring a snapshot)."""
        if self.indexes.paths or self.indexes.fields:
            for entity in made.values():
                self.insert(entity)
            return
        self.entities.update(made)
        for entity in made.values():
            if entity._extras is not None:
                self.track_expiry(entity)

    def remove(self, uuid: str) -> Entity | None:
        """Stop holding the entity ``uuid`` and unindex it; the entity, or None if it was not held."""
        entity = self.entities.pop(uuid, None)
        if entity is not None:
            self.indexes.on_remove(uuid, entity._row)
            if entity._extras is not None:
                self.deadlines.forget(uuid)
        return entity

    def reindex(self, entity: Entity, old_values: Mapping[str, Any]) -> None:
        """Fields of ``entity`` changed from ``old_values`` (``MISSING`` where absent) to its values."""
        indexes, row, uuid, get = self.indexes, entity._row, entity._uuid, self.layout.get
        for name, old in old_values.items():
            indexes.on_change(uuid, name, old, get(row, name))

    def clear(self) -> None:
        self.entities.clear()
        self.indexes.clear()
        self.deadlines.clear()

    # -- events ----------------------------------------------------------------------------------

    def emit_change(
        self, entity: Entity, changes: Mapping[str, tuple[Any, Any]], origin: Origin, created: bool = False
    ) -> None:
        """Tell the listeners that ``entity`` was added or changed (``changes``: field → (old, new))."""
        if self.listeners:
            self._emit(Change(self.name, entity._uuid, self.result(entity), changes, origin, created))

    def emit_delete(
        self, uuid: str, entity: Entity | None, origin: Origin, reason: DeleteReason = "deleted"
    ) -> None:
        """Tell the listeners that the entity ``uuid`` was deleted (``entity``: its last state here)."""
        if self.listeners:
            last = None if entity is None else self.result(entity)
            self._emit(Delete(self.name, uuid, last, origin, reason))

    def _emit(self, event: Event) -> None:
        # Over a copy: a listener may be removed meanwhile (a change stream closed by what it was told).
        for listener in tuple(self.listeners):
            if listener.wants(event):
                self._dispatch(listener, event)

    # -- results ---------------------------------------------------------------------------------

    def result(self, entity: Entity) -> Any:
        """What a query returns for ``entity``: the entity, or its typed view."""
        if self.view_type is None:
            return entity
        return views.make_view(self.view_type, entity)

    def results(self, entities: Iterable[Entity]) -> list[Any]:
        """``result`` of each entity, in order (a new list)."""
        if self.view_type is None:
            return list(entities)
        return views.make_views(self.view_type, entities)

    def __repr__(self) -> str:
        paths = ", ".join("__".join(path) for path in self.indexes.paths)
        return f"<EntityTable {self.name}: {len(self.entities)} entities, indexes=[{paths}]>"
