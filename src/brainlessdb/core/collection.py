"""Collection: the entities of one bucket held in memory, with the spec's API over them.

Everything here answers from memory and never does I/O. Queries are ``async`` because the spec makes
them awaitable; apart from waiting for a collection's first load, they run synchronously. A collection
is assembled from three parts: its ``EntityTable`` (entities, indexes, listeners, schema), the
``LocalChanges`` that make this node's changes, and the ``SyncState`` that the shell drives
(``collection.sync``). This module adds the public API over them: argument handling and queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, ValuesView
from functools import partial
from operator import attrgetter
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from brainlessdb.core import views
from brainlessdb.core.changes import LocalChanges
from brainlessdb.core.claims import Claim, make_claim
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.entity import Entity
from brainlessdb.core.ids import new_uuid, parse_uuid
from brainlessdb.core.query.filtering import select
from brainlessdb.core.query.index import INDEXED_LOOKUPS
from brainlessdb.core.query.ordering import order
from brainlessdb.core.query.plan import Condition, Plan, bind_criteria, parse_order, plan_criteria
from brainlessdb.core.schema import Schema
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.table import EntityTable
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

    async def update_if(self, collection: Collection[Any], claim: Claim) -> bool:
        """Write ``claim`` if the stored version meets its conditions; True when NATS acknowledged it."""


class Collection(Generic[T]):
    """The entities of one collection: ``add``, ``get``, ``find``, ``filter``, ``order_by``, ``delete``..."""

    def __init__(self, host: Host, name: str) -> None:
        self._host = host
        self.name = name
        self._local = LocalChanges(name, host.clock, partial(host.changed, self))
        self._table = table = EntityTable(self._local, host.emit)
        self.sync = SyncState(table, host.clock, partial(host.changed, self))
        self._local.attach(table, self.sync)
        # The table never rebinds these: held here too for the queries' hot paths.
        self._entities = table.entities
        self._indexes = table.indexes
        self._plans = table.plans

    # -- schema and type -------------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        """The locked schema (None until the first ``add()`` or ``typed()``)."""
        return self._table.schema

    def typed(self, cls: type[U]) -> Collection[U]:
        """Return results as live instances of the dataclass ``cls`` (its fields extend the schema)."""
        declared = Schema.from_dataclass(cls)
        current = self._table.schema
        if current is None:
            self._local.set_schema(declared)
        else:
            grown = current.extend(declared)
            if grown != current:
                self._local.set_schema(grown)
        views.view_class(cls)
        self._table.view_type = cls
        return cast("Collection[U]", self)

    # -- adding ----------------------------------------------------------------------------------

    def add(self, data: Any = None, /, **fields: Any) -> T:
        """Add an entity from a dict, a dataclass instance and/or keyword arguments; returns it."""
        if type(data) is dict and not fields and "uuid" not in data:
            # The commonest call, add(a_dict): check_new() below makes the entity's own dict from it.
            values, given = data, None
        else:
            values = views.fields_of(data)
            values.update(fields)
            given = values.pop("uuid", None)
        uuid = new_uuid(self._host.uuid_node) if given is None else self._given_uuid(given)
        return self._result(self._local.add(uuid, values))

    def _given_uuid(self, given: Any) -> str:
        if not isinstance(given, str):
            raise SchemaError(f"uuid must be a string, got {type(given).__name__}", field="uuid")
        try:
            uuid = parse_uuid(given)
        except ValueError as exc:
            raise SchemaError(f"invalid uuid {given!r}", field="uuid") from exc
        if uuid in self._entities or self.sync.is_deleted(uuid):
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
        order_keys = parse_order(keys, self._table.field_types)
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
        """``_results`` of a list made for this query alone: an untyped collection returns it as it is
        (a copy would touch every entity's reference count once more)."""
        if self._table.view_type is None:
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

    def _conditions(self, criteria: Mapping[str, Any]) -> tuple[Condition, ...]:
        keys = tuple(criteria)
        return bind_criteria(self._plans.get(keys) or self._plan(keys), criteria)

    def _plan(self, keys: tuple[str, ...]) -> Plan:
        """The parsed criteria keys (cached: they depend on the keys and the schema only)."""
        plan = self._plans.get(keys)
        if plan is None:
            if len(self._plans) >= PLANS_KEPT:
                self._plans.clear()
            plan = self._plans[keys] = plan_criteria(keys, self._table.field_types)
        return plan

    # -- conditional updates ---------------------------------------------------------------------

    async def update_if(self, item: Any, criteria: Mapping[str, Any], /, **changes: Any) -> bool:
        """Set ``changes`` only if the latest stored version of ``item`` meets ``criteria``: True if done.

        ``item`` is a uuid, an entity or a typed instance; ``criteria`` are ``filter()``'s
        (``{"state": "waiting", "agent_id__isnull": True}``). The check is made against what NATS stores
        now, and the write is a compare-and-set on that version's revision; when another write comes
        first, the new stored version is checked again. So of several nodes claiming one item at once,
        exactly one gets True. The won change is stamped newer than everything it was checked against,
        so no merge undoes it. Either way, the entity in memory then holds the stored version (with the
        change if won); nothing changes in memory before NATS acknowledged the write.

        Raises:
            QueryError: bad criteria; SchemaError: a change the schema refuses (nothing is written).
            NotFoundError: no such entity, or it was deleted.
            UnavailableError: NATS did not answer within the database's ``claim_timeout``. If the write
                had been sent, its outcome is unknown: the same call made again answers True if it was
                stored after all.
        """
        uuid = self._key(item)
        if not isinstance(criteria, Mapping):
            raise TypeError(f"update_if() takes its criteria as a mapping, got {criteria!r}")
        conditions = self._conditions(criteria) if criteria else ()
        claim = make_claim(self.name, uuid, conditions, changes, self._table.schema)
        if self.sync.is_deleted(uuid):
            raise NotFoundError(self.name, uuid)
        return await self._host.update_if(self, claim)

    # -- counters --------------------------------------------------------------------------------

    def increment(self, item: Any, field: str, by: int = 1) -> int:
        """Add ``by`` (negative: take away) to the integer ``field`` of ``item``; the new value here.

        Unlike setting the field, concurrent increments made on several nodes all count: the field
        converges to the sum of every node's increments, and stays a plain number in the stored data.
        Setting the field (``item.attempts = 0``) starts it again from that value. ``item`` is a uuid,
        an entity or a typed instance. Written in the background, as any change.

        Raises:
            NotFoundError: no such entity here. TypeError: ``by`` is not an int.
            SchemaError: the field is unknown, does not hold an integer, or would pass ±2**53.
        """
        uuid = self._key(item)
        entity = self._entities.get(uuid)
        if entity is None:
            raise NotFoundError(self.name, uuid)
        return self._local.increment(entity, field, by)

    # -- deleting --------------------------------------------------------------------------------

    def delete(self, item: Any) -> bool:
        """Delete by uuid, entity or typed instance; False if there was no such entity."""
        return self._local.delete(self._key(item))

    def __delitem__(self, item: Any) -> None:
        if not self.delete(item):
            raise NotFoundError(self.name, self._key(item))

    def clear(self) -> None:
        """Forget every entity in memory (NATS keeps them; ``load()`` brings them back)."""
        self._table.clear()
        self._local.clear()
        self.sync.clear()

    def limit_values(self, limit: int | None) -> None:
        """Refuse changes that would make an entity's stored value larger than ``limit`` bytes (the shell
        sets it from what the storage takes); None: no limit is known."""
        self._local.limit_values(limit)

    def stop_changes(self) -> None:
        """Refuse every later change with ``NotStartedError`` (the shell calls it when the database stops:
        nothing more would be written)."""
        self._local.stop()

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
        self._table.listeners.append(Listener(Change, callback, local=local, remote=remote))
        return callback

    def on_delete(self, callback: Callback, *, local: bool = False, remote: bool = True) -> Callback:
        """Call ``callback(Delete)`` when an entity is deleted (by other nodes, by default)."""
        self._table.listeners.append(Listener(Delete, callback, local=local, remote=remote))
        return callback

    def _results(self, entities: Iterable[Entity]) -> list[T]:
        return self._table.results(entities)

    def _result(self, entity: Entity) -> T:
        if self._table.view_type is None:
            return cast("T", entity)  # the common case, without a call
        return cast("T", self._table.result(entity))

    def _key(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        entity = views.entity_of(item)
        if entity is not None:
            return entity.uuid
        uuid = getattr(item, "uuid", None)
        if isinstance(uuid, str):
            return uuid
        raise TypeError(f"expected a uuid string, an entity or a typed instance with a uuid, got {item!r}")

    @property
    def entities(self) -> Mapping[str, Entity]:
        """The entities held, by uuid (read-only: change them through the collection)."""
        return self._entities

    def __repr__(self) -> str:
        dirty = self.sync.pending_count()
        paths = ", ".join("__".join(path) for path in self._indexes.paths)
        return f"<Collection {self.name}: {len(self._entities)} entities, {dirty} pending, indexes=[{paths}]>"


_data_of = attrgetter("_data")


def _field_reader(name: str) -> Callable[[Entity], Any]:
    """Reads field ``name`` of an entity (``KeyError`` where absent): a sort key, written out because
    CPython specializes both steps of this function, not a composition of ``attrgetter``/``itemgetter``."""

    def read(entity: Entity) -> Any:
        return entity._data[name]

    return read


_uuid_of = attrgetter("_uuid")
