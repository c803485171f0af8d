"""Collection: the entities of one bucket held in memory, with the spec's API over them.

Everything here answers from memory and never does I/O. Queries are ``async`` because the spec makes
them awaitable; apart from waiting for a collection's first load, they run synchronously. The state that
syncing needs (what to write, what was acknowledged, what other nodes wrote) lives in ``replica.SyncState``,
which the shell drives; the collection only tells it about each local change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, ValuesView
from operator import attrgetter
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from brainlessdb.core import views as convert
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.entity import Entity, FieldOwner, add_fields, entity_class, new_entity
from brainlessdb.core.ids import new_uuid, parse_uuid
from brainlessdb.core.query.filtering import select
from brainlessdb.core.query.index import INDEXED_LOOKUPS, IndexSet
from brainlessdb.core.query.ordering import order
from brainlessdb.core.query.plan import Condition, Plan, bind_criteria, parse_order, plan_criteria
from brainlessdb.core.schema import Schema, check_field_name
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.tracked import untrack
from brainlessdb.core.values import MISSING, copy_json
from brainlessdb.errors import DuplicateError, NotFoundError, SchemaError
from brainlessdb.events import Callback, Change, Delete, Event, Listener

T = TypeVar("T")

PLANS_KEPT: Final = 256
U = TypeVar("U")


class Host(Protocol):
    """What a collection needs from the database that owns it (the shell provides it)."""

    clock: HybridLogicalClock
    uuid_node: int

    def changed(self, collection: Collection[Any], uuid: str | None = None) -> None:
        """A local change (of entity ``uuid``, or of the schema if None) is waiting to be flushed."""

    def emit(self, listener: Listener, event: Event) -> None:
        """Deliver an event to a listener."""

    async def ready(self, collection: Collection[Any]) -> None:
        """Wait until the collection's first load is done."""

    async def flush_collection(self, collection: Collection[Any]) -> None:
        """Write the collection's pending changes."""

    async def load_collection(self, collection: Collection[Any]) -> None:
        """Catch up with everything stored in the collection's bucket."""


class Collection(Generic[T]):
    """The entities of one collection: ``add``, ``get``, ``find``, ``filter``, ``order_by``, ``delete``..."""

    def __init__(self, host: Host, name: str) -> None:
        self._host = host
        self.name = name
        self._entities: dict[str, Entity] = {}
        self._schema: Schema | None = None
        self._type: type[Any] | None = None
        self._indexes = IndexSet()
        self._listeners: list[Listener] = []
        self._nested_old: dict[tuple[str, str], Any] = {}
        self._fields: dict[str, str] | None = None
        self._exact_types: Mapping[str, frozenset[type]] = {}
        self._plans: dict[tuple[str, ...], Plan] = {}
        self._entity_class = entity_class(name)
        self.replica = SyncState(self)

    # -- schema and type -------------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        """The locked schema (None until the first ``add()`` or ``typed()``)."""
        return self._schema

    def typed(self, cls: type[U]) -> Collection[U]:
        """Return results as live instances of the dataclass ``cls`` (its fields extend the schema)."""
        declared = Schema.from_dataclass(cls)
        if self._schema is None:
            self._set_schema(declared)
        else:
            grown = self._schema.extend(declared)
            if grown != self._schema:
                self._set_schema(grown)
        convert.view_class(cls)
        self._type = cls
        return cast("Collection[U]", self)

    def _set_schema(self, schema: Schema) -> None:
        self.adopt_schema(schema)
        self.replica.schema_changed()
        self._host.changed(self)

    def adopt_schema(self, schema: Schema) -> None:
        """Take a schema stored by another node (the shell calls this)."""
        self._schema = schema
        self._fields = schema.field_types()
        self._exact_types = schema.exact_types
        add_fields(self._entity_class, schema.fields)
        self._plans.clear()

    # -- adding ----------------------------------------------------------------------------------

    def add(self, data: Any = None, /, **fields: Any) -> T:
        """Add an entity from a dict, a dataclass instance and/or keyword arguments; returns it."""
        if type(data) is dict and not fields and "uuid" not in data:
            # The commonest call, add(a_dict): check_new() below makes the entity's own dict from it.
            values, given = data, None
        else:
            values = convert.fields_of(data)
            values.update(fields)
            given = values.pop("uuid", None)
        uuid = new_uuid(self._host.uuid_node) if given is None else self._given_uuid(given)
        schema = self._schema
        if not values and (schema is None or not schema.fields):
            # A version without fields has no stamp to store: it could never be written.
            raise SchemaError("an entity needs at least one field")
        if schema is None:
            schema = Schema.infer(values)
            self._set_schema(schema)
        # Checked, in field order, and with private copies of dicts and lists: later changes through the
        # caller's own objects must not slip in untracked.
        values = schema.check_new(values)
        stamp = self._host.clock.tick()
        entity = new_entity(self, uuid, values, stamp)
        self._entities[uuid] = entity
        self._indexes.on_add(uuid, values)
        self.replica.local_change(entity)
        self._host.changed(self, uuid)
        if self._listeners:
            changes = {name: (MISSING, value) for name, value in values.items()}
            self._emit(Change(self.name, uuid, self._result(entity), changes, "local", created=True))
        return self._result(entity)

    def _given_uuid(self, given: Any) -> str:
        if not isinstance(given, str):
            raise SchemaError(f"uuid must be a string, got {type(given).__name__}", field="uuid")
        try:
            uuid = parse_uuid(given)
        except ValueError as exc:
            raise SchemaError(f"invalid uuid {given!r}", field="uuid") from exc
        if uuid in self._entities or self.replica.is_deleted(uuid):
            raise DuplicateError(self.name, uuid)
        return uuid

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, uuid: Any) -> T | None:
        """The entity with this uuid (a uuid string, an entity or a typed instance), or None."""
        await self._host.ready(self)
        entity = self._entities.get(self._key(uuid))
        return None if entity is None else self._result(entity)

    async def find(self, **criteria: Any) -> T | None:
        """One entity matching every criterion, or None (use ``order_by`` for a defined one)."""
        await self._host.ready(self)
        keys = tuple(criteria)
        plan = self._plans.get(keys) or self._plan(keys)
        key = plan.exact_key
        if key is not None:
            # The commonest query, find(channel_id=x): one lookup in the field's index, no Condition and no
            # list. It answers what the general path below does (the first uuid of the same bucket).
            uuid = self._indexes.first(plan.exact_path, criteria[key], self._scan_source)
            if uuid is None:
                return None
            entity = self._entities.get(uuid)
            if entity is not None:
                return self._result(entity)
        for entity in self._select(criteria):
            return self._result(entity)
        return None

    async def filter(self, **criteria: Any) -> list[T]:
        """Every entity matching every criterion (``field=value``, ``caller__city=...``, ``age__gt=...``)."""
        await self._host.ready(self)
        selected = self._select(criteria)
        if type(selected) is list:
            return self._own_results(selected)
        return self._results(selected)

    async def all(self) -> list[T]:
        """Every entity, in the order they were added or loaded."""
        await self._host.ready(self)
        return self._results(self._entities.values())

    async def order_by(self, *keys: str, **criteria: Any) -> list[T]:
        """The entities matching ``criteria``, sorted by ``keys`` (``"-key"`` for descending)."""
        await self._host.ready(self)
        order_keys = parse_order(keys, self._field_types())
        selected = self._select(criteria)
        return self._own_results(order(selected, order_keys, _data_of, _uuid_of, _field_reader))

    def count(self, **criteria: Any) -> int:
        """The number of entities (matching ``criteria``, if given)."""
        if not criteria:
            return len(self._entities)
        return len(self._select(criteria))

    def __len__(self) -> int:
        return len(self._entities)

    def __contains__(self, item: object) -> bool:
        try:
            return self._key(item) in self._entities
        except TypeError:
            return False

    def __iter__(self) -> Iterator[T]:
        return iter([self._result(entity) for entity in list(self._entities.values())])

    def __getitem__(self, uuid: Any) -> T:
        key = self._key(uuid)
        entity = self._entities.get(key)
        if entity is None:
            raise NotFoundError(self.name, key)
        return self._result(entity)

    def _own_results(self, entities: list[Entity]) -> list[T]:
        """``_results`` of a list made for this query alone: an untyped collection returns it as it is.

        Copying a list of entities touches every entity (its reference count): at 10,000 entities that
        costs about a tenth of an ``order_by``.
        """
        if self._type is None:
            return cast("list[T]", entities)
        return self._results(entities)

    def _select(self, criteria: Mapping[str, Any]) -> list[Entity] | ValuesView[Entity]:
        """The entities matching ``criteria``: the live values view without criteria, else a new list."""
        if not criteria:
            return self._entities.values()
        conditions = self._conditions(criteria)
        candidates = self._indexes.candidates(conditions, self._scan_source)
        if candidates is None:
            return select(self._entities.values(), conditions, _data_of, _uuid_of)
        # Candidates may name uuids this collection no longer holds; the index answered exact and in
        # conditions exactly, so only the others remain to check.
        found = [entity for entity in map(self._entities.get, candidates) if entity is not None]
        rest = [c for c in conditions if c.lookup not in INDEXED_LOOKUPS]
        if not rest:
            return found
        return select(found, rest, _data_of, _uuid_of)

    def _scan_source(self) -> Iterable[tuple[str, Mapping[str, Any]]]:
        return ((uuid, entity._data) for uuid, entity in self._entities.items())

    def _field_types(self) -> dict[str, str] | None:
        return self._fields

    def _conditions(self, criteria: Mapping[str, Any]) -> tuple[Condition, ...]:
        keys = tuple(criteria)
        return bind_criteria(self._plans.get(keys) or self._plan(keys), criteria)

    def _plan(self, keys: tuple[str, ...]) -> Plan:
        """The parsed criteria keys (cached: they depend on the keys and the schema only)."""
        plan = self._plans.get(keys)
        if plan is None:
            if len(self._plans) >= PLANS_KEPT:
                self._plans.clear()
            plan = self._plans[keys] = plan_criteria(keys, self._fields)
        return plan

    # -- deleting --------------------------------------------------------------------------------

    def delete(self, item: Any) -> bool:
        """Delete by uuid, entity or typed instance; False if there was no such entity."""
        key = self._key(item)
        entity = self._entities.pop(key, None)
        if entity is None:
            return False
        self._indexes.on_remove(key, entity._data)
        self.replica.local_delete(entity, self._host.clock.tick())
        self._host.changed(self, key)
        if self._listeners:
            self._emit(Delete(self.name, key, self._result(entity), "local"))
        return True

    def __delitem__(self, item: Any) -> None:
        if not self.delete(item):
            raise NotFoundError(self.name, self._key(item))

    def clear(self) -> None:
        """Forget every entity in memory (NATS keeps them; ``load()`` brings them back)."""
        self._entities.clear()
        self._indexes.clear()
        self._nested_old.clear()
        self.replica.clear()

    # -- persistence -----------------------------------------------------------------------------

    async def load(self) -> None:
        """Catch up with everything stored in NATS (local unflushed changes are kept)."""
        await self._host.load_collection(self)

    async def flush(self) -> None:
        """Write this collection's pending changes to NATS now."""
        await self._host.flush_collection(self)

    # -- events ----------------------------------------------------------------------------------

    def on_change(self, callback: Callback, *, local: bool = False, remote: bool = True) -> Callback:
        """Call ``callback(Change)`` when an entity is added or changed (by other nodes, by default)."""
        self._listeners.append(Listener(Change, callback, local=local, remote=remote))
        return callback

    def on_delete(self, callback: Callback, *, local: bool = False, remote: bool = True) -> Callback:
        """Call ``callback(Delete)`` when an entity is deleted (by other nodes, by default)."""
        self._listeners.append(Listener(Delete, callback, local=local, remote=remote))
        return callback

    @property
    def has_listeners(self) -> bool:
        """True when some callback listens to this collection's changes."""
        return bool(self._listeners)

    def _emit(self, event: Event) -> None:
        for listener in self._listeners:
            if listener.wants(event):
                self._host.emit(listener, event)

    def emit_remote_change(
        self, entity: Entity, changes: Mapping[str, tuple[Any, Any]], created: bool
    ) -> None:
        if self._listeners:
            self._emit(Change(self.name, entity.uuid, self._result(entity), changes, "remote", created))

    def emit_remote_delete(self, uuid: str, entity: Entity | None) -> None:
        if self._listeners:
            self._emit(Delete(self.name, uuid, None if entity is None else self._result(entity), "remote"))

    # -- what entities and the replica call ------------------------------------------------------

    def _set_field(self, entity: Entity, name: str, value: Any) -> None:
        uuid = entity._uuid
        if self._entities.get(uuid) is not entity:
            raise NotFoundError(self.name, uuid)
        data = entity._data
        kind = type(value)
        if (
            kind in self._exact_types.get(name, _NO_TYPES)
            and (kind is not str or value.isascii())
            and (kind is not float or value - value == 0.0)
        ):
            # The common case, a plain scalar of a type the field takes, checked without a call.
            old = data.get(name, MISSING)
            if type(old) is kind and old == value:
                return
        else:
            if self._schema is None:
                check_field_name(name)
                value = copy_json(name, value)
            else:
                value = self._schema.accept(name, value)  # dicts and lists come back as private copies
            old = data.get(name, MISSING)
            kind = type(value)
            if kind is not dict and kind is not list and type(old) is kind and old == value:
                return
        data[name] = value
        self._changed_field(entity, name, old, value)

    def _changed_field(self, entity: Entity, name: str, old: Any, new: Any) -> None:
        stamp = self._host.clock.tick()
        stamps = entity._stamps
        if isinstance(stamps, dict):
            stamps[name] = stamp
        else:
            # The first change of a field since the entity was added or loaded: from one shared stamp
            # to one per field.
            stamps = dict.fromkeys(entity._data, stamps)
            stamps[name] = stamp
            _set_slot(entity, "_stamps", stamps)
        if name in self._indexes.fields:
            self._indexes.on_change(entity._uuid, name, old, new)
        self.replica.local_change(entity)
        self._host.changed(self, entity._uuid)
        if self._listeners:
            self._emit(Change(self.name, entity._uuid, self._result(entity), {name: (old, new)}, "local"))

    def _missing_field(self, entity: Entity, name: str) -> Any:
        spec = None if self._schema is None else self._schema.fields.get(name)
        if spec is None:
            raise AttributeError(f"{self.name} entity has no field {name!r}")
        return spec.default

    def _track_field(self, entity: Entity, name: str, value: Any) -> Any:
        tracked = FieldOwner(entity, name).wrap(value)
        entity._data[name] = tracked
        return tracked

    def _before_nested(self, entity: Entity, name: str) -> None:
        if self._listeners or self._indexes.covers(name):
            self._nested_old.setdefault((entity._uuid, name), untrack(entity._data[name]))

    def _after_nested(self, entity: Entity, name: str) -> None:
        old = self._nested_old.pop((entity._uuid, name), MISSING)
        self._changed_field(entity, name, old, entity._data[name])

    def _view(self, entity: Entity, cls: type[U]) -> U:
        return convert.make_view(cls, entity)

    def _results(self, entities: Iterable[Entity]) -> list[T]:
        if self._type is None:
            return cast("list[T]", list(entities))
        return convert.make_views(self._type, entities)

    def _result(self, entity: Entity) -> T:
        if self._type is None:
            return cast("T", entity)
        return cast("T", convert.make_view(self._type, entity))

    def _key(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        entity = convert.entity_of(item)
        if entity is not None:
            return entity.uuid
        uuid = getattr(item, "uuid", None)
        if isinstance(uuid, str):
            return uuid
        raise TypeError(f"expected a uuid string, an entity or a typed instance with a uuid, got {item!r}")

    # -- used by the replica ---------------------------------------------------------------------

    @property
    def entities(self) -> dict[str, Entity]:
        return self._entities

    @property
    def indexes(self) -> IndexSet:
        return self._indexes

    def __repr__(self) -> str:
        dirty = self.replica.pending_count()
        paths = ", ".join("__".join(path) for path in self._indexes.paths)
        return f"<Collection {self.name}: {len(self._entities)} entities, {dirty} pending, indexes=[{paths}]>"


_set_slot = object.__setattr__
_NO_TYPES: frozenset[type] = frozenset()
_data_of = attrgetter("_data")


def _field_reader(name: str) -> Callable[[Entity], Any]:
    """Reads field ``name`` of an entity (``KeyError`` where absent): a sort key, faster than any
    composition of ``attrgetter`` and ``itemgetter`` (CPython specializes both steps of this one)."""

    def read(entity: Entity) -> Any:
        return entity._data[name]

    return read


_uuid_of = attrgetter("_uuid")
