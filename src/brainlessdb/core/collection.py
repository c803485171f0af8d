"""Collection: the entities of one bucket held in memory, with the spec's API over them.

Everything here answers from memory and never does I/O. Queries are ``async`` because the spec makes
them awaitable; apart from waiting for a collection's first load, they run synchronously. A collection
is assembled from three parts: its ``EntityTable`` (entities, indexes, listeners, schema), the
``LocalChanges`` that make this node's changes, and the ``SyncState`` that the shell drives
(``collection.sync``). This module adds the public API over them: argument handling and queries.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from itertools import compress
from operator import not_
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, cast, overload

from brainlessdb.core import models, views
from brainlessdb.core.changes import LocalChanges
from brainlessdb.core.claims import Claim, make_claim
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.entity import Entity
from brainlessdb.core.evolution import (
    check_declared_renames,
    evolve_schema,
    pending_part,
    requested_step,
)
from brainlessdb.core.expiry import check_seconds
from brainlessdb.core.field_types import JSON_SCALARS, criterion_json
from brainlessdb.core.ids import new_uuid, parse_uuid
from brainlessdb.core.query.ordering import order, order_first
from brainlessdb.core.query.pages import page
from brainlessdb.core.query.plan import (
    parse_order,
)
from brainlessdb.core.query.selection import Selection, data_of, field_reader, uuid_of
from brainlessdb.core.schema import Schema
from brainlessdb.core.streams import DEFAULT_BUFFER, ChangeStream, Overflow, Subscription, stream_options
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.table import EntityTable
from brainlessdb.errors import (
    DuplicateError,
    FlushError,
    NotFoundError,
    NotStartedError,
    QueryError,
    SchemaError,
    UnavailableError,
)
from brainlessdb.events import Callback, Change, Delete, Event, Listener

T = TypeVar("T")

U = TypeVar("U")


class Lag(NamedTuple):
    """How far one collection is from its bucket, as this node knows it without asking NATS (see
    ``Collection.lag``)."""

    pending: int
    """Local changes not acknowledged by NATS yet."""
    pending_seconds: float
    """How long changes have been waiting without a break (0.0 when none waits)."""
    applied: int
    """The last revision of the bucket applied to memory (0 before the first load, and in memory mode)."""
    behind: int
    """Revisions the bucket is known to hold past ``applied``: learnt from this node's own writes and from
    ``synced()``; other nodes' writes not received yet cannot be counted."""
    behind_seconds: float
    """How long ``behind`` has been above 0 without a break."""


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

    def watch_collection(self, collection: Collection[Any], subscription: Subscription) -> ChangeStream:
        """A change stream fed by ``subscription`` (opened once the collection is loaded)."""

    def collection_lag(self, collection: Collection[Any]) -> Lag:
        """How far the collection is from its bucket (see ``Lag``)."""


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
        self._selection = Selection(table)

    # -- schema and type -------------------------------------------------------------------------

    @property
    def schema(self) -> Schema | None:
        """The locked schema (None until the first ``add()`` or ``typed()``)."""
        return self._table.schema

    def typed(self, cls: type[U]) -> Collection[U]:
        """Return results as live instances of the model class ``cls``: a dataclass, a pydantic model, a
        msgspec Struct or an attrs class (its fields extend the schema; see docs/guides/models.md).

        The declaration decides the nullability, default and choices of each field it declares, also of
        one a first ``add()`` inferred: whichever came first, the schema is the same.

        Raises:
            TypeError: ``cls`` is not a model class.
            SchemaError: a field type JSON cannot hold, or a declaration the schema or the entities held
                here do not fit.
        """
        model = models.model_of(cls)
        declared = model.schema()
        current = self._table.schema
        if current is None:
            self._local.set_schema(declared)
        else:
            check_declared_renames(current, cls)
            grown = models.declare(current, declared, self._data_of_all()).extend(declared)
            if grown != current:
                self._local.set_schema(grown)
        views.view_class(cls)
        self._table.view_type = cls
        return cast("Collection[U]", self)

    @overload
    async def evolve(
        self, model: type[U], /, *, rename: Mapping[str, str] | None = None
    ) -> Collection[U]: ...

    @overload
    async def evolve(
        self,
        model: None = None,
        /,
        *,
        rename: Mapping[str, str] | None = None,
        remove: Iterable[str] = (),
        widen: Mapping[str, Any] | None = None,
    ) -> Collection[T]: ...

    async def evolve(
        self,
        model: type[Any] | None = None,
        /,
        *,
        rename: Mapping[str, str] | None = None,
        remove: Iterable[str] = (),
        widen: Mapping[str, Any] | None = None,
    ) -> Collection[Any]:
        """Change the stored schema by one deliberate step, stored in NATS before this returns.

        ``evolve(Call)`` makes the schema what the model ``Call`` declares: stored fields it lacks are
        removed, fields declared ``renamed_from`` an old one are renamed, wider types widen (``int`` to
        ``float``, ``T`` to ``T | None``, a default where there was none), new fields need a default; it
        returns the collection typed by ``Call``. Or say the step: ``evolve(rename={"old": "new"},
        remove=["gone"], widen={"score": float})``. Entities stored before read back under the new schema,
        on every node; the step is version ``schema.version`` of the schema.

        Raises:
            SchemaError: the step does not apply (a narrowing, a field made required, a name that does not
                exist, a rename onto a field...), checked against the stored schema: nothing is changed.
                Also when another node changed the schema first and the step does not apply to its.
            NotStartedError: the database is not started.
            StorageError: NATS did not store it; the step stays pending, stored by a later flush.
        """
        try:
            await self._host.load_collection(self)  # the stored schema, and what is stored under it
        except NotStartedError:
            raise NotStartedError("evolve() checks and stores the step: start the database first") from None
        current = self._table.schema
        if current is None:
            if model is None:
                raise SchemaError(f"{self.name} has no schema yet: there is nothing to evolve")
            return self.typed(model)
        step = pending_part(current, requested_step(current, model, rename, remove, widen))
        evolved = evolve_schema(current, step)
        if evolved is not current:
            schema_sync = self.sync.schema
            schema_sync.evolving(step)
            self._local.set_schema(evolved)
            with contextlib.suppress(FlushError):  # only the schema's outcome is this call's
                await self._host.flush_collection(self)
            if schema_sync.refused is not None:
                raise schema_sync.refused
            if schema_sync.pending:
                unstored = UnavailableError(f"{self.name}: the evolved schema is not stored yet")
                raise schema_sync.error or unstored
        return self if model is None else self.typed(model)

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
        if self._table.view_type is not None or type(data) is not dict:
            # Typed, or given a model instance: values converted and validated by the model.
            values = views.prepared(self._table.view_type, data, uuid, values)
        return self._result(self._local.add(uuid, values))

    def _data_of_all(self) -> Iterable[Mapping[str, Any]]:
        return (entity._data for entity in self._entities.values())

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
        self._expire_due()
        entity = self._entities.get(self._key(uuid))
        return None if entity is None else self._result(entity)

    async def find(self, **criteria: Any) -> T | None:
        """One entity matching every criterion, or None (use ``order_by`` for a defined one)."""
        await self._host.ready(self)
        self._expire_due()
        keys = tuple(criteria)
        plan = self._plans.get(keys) or self._selection.plan(keys)
        key = plan.exact_key
        if key is not None:
            # The commonest query, find(channel_id=x): one lookup in the field's index, no Condition and no
            # list. It answers what the general path below does (the first uuid of the same bucket).
            value = criteria[key]
            if type(value) not in JSON_SCALARS:
                value = criterion_json(value)  # an Enum, a datetime...: looked up in its stored form
            uuid = self._indexes.first(plan.exact_path, value, self._selection.scan_source)
            if uuid is None:
                return None
            entity = self._entities.get(uuid)
            if entity is not None:
                return self._result(entity)
        for entity in self._selection.select(criteria):
            return self._result(entity)
        return None

    async def filter(self, *, limit: int | None = None, offset: int = 0, **criteria: Any) -> list[T]:
        """Every entity matching every criterion (``field=value``, ``caller__city=...``, ``age__gt=...``).

        ``limit``/``offset`` give a page of that answer: ``filter(**c)[offset:offset + limit]``, found
        without matching every entity when it can be. They are never criteria (match a field so named with
        ``limit__exact=``). The answer's order is fixed only while the collection does not change: for pages
        in an order of your choosing, use ``order_by``. ``QueryError`` for a bad criterion or page.
        """
        window = page(limit, offset)
        await self._host.ready(self)
        self._expire_due()
        if not window.whole:
            return self._own_results(self._selection.select_window(criteria, window))
        selected = self._selection.select(criteria)
        if type(selected) is list:
            return self._own_results(selected)
        return self._results(selected)

    async def exclude(self, *, limit: int | None = None, offset: int = 0, **criteria: Any) -> list[T]:
        """Every entity that does *not* match all the criteria together: what ``filter(**criteria)`` leaves.

        With several criteria, an entity is left out only when it meets every one of them
        (``exclude(state="done", agent_id=5)`` keeps the done calls of other agents). A criterion on a path
        an entity lacks is judged as in ``filter`` (an absent value equals nothing, so ``exclude(x=1)``
        keeps an entity without ``x``; ``x__isnull=True`` matches it). In the collection's order;
        ``limit``/``offset`` as in ``filter``.

        Raises:
            QueryError: no criterion at all (there is nothing to exclude by), or a bad criterion or page.
        """
        window = page(limit, offset)
        if not criteria:
            raise QueryError("exclude() needs at least one criterion", key=None)
        await self._host.ready(self)
        self._expire_due()
        matched = set(map(uuid_of, self._selection.select(criteria)))
        entities = self._entities
        # In C: the entities whose uuid (the dict's keys, in the values' order) was not matched.
        kept = list(compress(entities.values(), map(not_, map(matched.__contains__, entities))))
        return self._own_results(kept if window.whole else window.cut(kept))

    async def exists(self, **criteria: Any) -> bool:
        """True when some entity matches every criterion (any entity, without criteria).

        Stops at the first match; ``QueryError`` for a bad criterion.
        """
        await self._host.ready(self)
        self._expire_due()
        if not criteria:
            return bool(self._entities)
        return self._selection.any_match(criteria)

    async def all(self) -> list[T]:
        """Every entity, in the order they were added or loaded."""
        await self._host.ready(self)
        self._expire_due()
        return self._results(self._entities.values())

    async def order_by(
        self, *keys: str, limit: int | None = None, offset: int = 0, **criteria: Any
    ) -> list[T]:
        """The entities matching ``criteria``, sorted by ``keys`` (``"-key"`` for descending).

        ``limit``/``offset`` give a page of that order (``order_by(...)[offset:offset + limit]``); a small
        page sorts only the entities that can be in it. Equal keys keep ``filter``'s order: end with
        ``"uuid"`` for pages whose order is fixed whatever changes.
        """
        window = page(limit, offset)
        await self._host.ready(self)
        self._expire_due()
        order_keys = parse_order(keys, self._table.field_types)
        stop = window.stop
        if not criteria and order_keys:
            whole = self._selection.whole_order(order_keys, stop)
            if whole is not None:
                return self._own_results(whole[window.offset : stop])
        selected = self._selection.select(criteria)
        if stop is None:
            ordered = order(
                selected, self._selection.keys_on_rows(order_keys), data_of, uuid_of, field_reader
            )
        else:
            ordered = order_first(
                selected, self._selection.keys_on_rows(order_keys), data_of, uuid_of, stop, field_reader
            )
        if window.offset:
            del ordered[: window.offset]
        return self._own_results(ordered)

    def count(self, **criteria: Any) -> int:
        """The number of entities (matching ``criteria``, if given)."""
        self._expire_due()
        if not criteria:
            return len(self._entities)
        return len(self._selection.select(criteria))

    def __len__(self) -> int:
        self._expire_due()
        return len(self._entities)

    def __contains__(self, item: object) -> bool:
        self._expire_due()
        try:
            return self._key(item) in self._entities
        except TypeError:
            return False

    def __iter__(self) -> Iterator[T]:
        self._expire_due()
        return iter([self._result(entity) for entity in list(self._entities.values())])

    def __getitem__(self, uuid: Any) -> T:
        self._expire_due()
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
            QueryError: bad criteria.
            SchemaError: a change the schema refuses (nothing is written).
            NotFoundError: no such entity, or it was deleted.
            UnavailableError: NATS did not answer within the database's ``claim_timeout``. If the write
                had been sent, its outcome is unknown: the same call made again answers True if it was
                stored after all.
        """
        uuid = self._key(item)
        if not isinstance(criteria, Mapping):
            raise TypeError(f"update_if() takes its criteria as a mapping, got {criteria!r}")
        conditions = self._selection.conditions(criteria) if criteria else ()
        if self._table.view_type is not None:
            # Typed: the changes as the model stores them (an Enum's value, a datetime's string...).
            entity = self._entities.get(uuid)
            changes = views.stored_changes(self._table.view_type, entity, uuid, changes)
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
            NotFoundError: no such entity here.
            TypeError: ``by`` is not an int.
            SchemaError: the field is unknown, does not hold an integer, or would pass ±2**53.
        """
        uuid = self._key(item)
        entity = self._entities.get(uuid)
        if entity is None:
            raise NotFoundError(self.name, uuid)
        return self._local.increment(entity, field, by)

    # -- expiring --------------------------------------------------------------------------------

    def expire(self, item: Any, seconds: float | None) -> None:
        """Make ``item`` (a uuid, an entity or a typed instance) expire ``seconds`` from now.

        Past that deadline the entity is gone on every node (``NotFoundError``; ``on_delete`` callbacks get
        a ``Delete`` whose ``reason`` is ``"expired"``), even on nodes that were cut off or did not run then,
        and no later write from a node that missed it brings it back. Calling again before the deadline
        sets a new one (longer or shorter); ``seconds=None`` removes it. Written in the background, as any
        change, and merged as one: the expiry set last wins. ``brainlessdb.meta(entity).expires_at`` reads
        the deadline.

        Raises:
            ExpiryError: ``seconds`` is not a number above 0 (or None).
            NotFoundError: no such entity here (or it expired already).
        """
        self._expire_due()
        self._local.expire(self._key(item), seconds)

    @property
    def ttl(self) -> float | None:
        """The default expiry of the entities added here, in seconds (None: they do not expire by
        default); stored with the schema, so every node applies the same one."""
        return self._table.ttl

    def declare_ttl(self, seconds: float) -> None:
        """Give entities added from now on an expiry of ``seconds`` (``db.collection(name, ttl=...)``).

        Where the collection's schema holds no default expiry, it gets this one (stored with the schema);
        where it holds this one, nothing changes. A schema stored with another one keeps it: a
        ``SchemaError`` here if this node knows it already; if it is read only later, the stored one
        applies. Change it deliberately with ``set_ttl()``.
        """
        checked = check_seconds(seconds, "ttl")
        table = self._table
        schema = table.schema
        if schema is None:
            table.declared_ttl = checked
            table.expiry.used = True
            return
        if schema.ttl == checked:
            return
        if schema.ttl is not None:
            raise SchemaError(
                f"collection {self.name!r} has a default expiry of {schema.ttl:g} s, not {checked:g} s: "
                f"change it with set_ttl({checked:g})"
            )
        table.declared_ttl = checked
        self._local.set_schema(dataclasses.replace(schema, ttl=checked))

    def set_ttl(self, seconds: float) -> None:
        """Change the default expiry of the entities added from now on to ``seconds``, on every node (stored
        with the schema). Entities already added keep their deadline (``expire()`` changes one)."""
        checked = check_seconds(seconds, "ttl")
        table = self._table
        table.declared_ttl = checked
        table.expiry.used = True
        schema = table.schema
        if schema is not None and schema.ttl != checked:
            self._local.set_schema(dataclasses.replace(schema, ttl=checked))

    def _expire_due(self) -> None:
        """Remove what is past its deadline before answering: no query returns an expired entity, even
        before the shell's timer came to it."""
        if self._table.deadlines:
            self.sync.expire_due()

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

    def watch(
        self,
        criteria: Mapping[str, Any] | None = None,
        /,
        *,
        include_current: bool = False,
        buffer: int = DEFAULT_BUFFER,
        overflow: Overflow = "error",
        local: bool = True,
        remote: bool = True,
        **fields: Any,
    ) -> ChangeStream:
        """A change stream of the entities matching the criteria: ``async with coll.watch(state="waiting")
        as changes: async for event in changes: ...``.

        Criteria are ``filter()``'s, as keywords and/or a mapping (for a field named like an option):
        ``Enter`` when an entity comes to match them (``created`` if new), ``Change`` while it matches,
        ``Leave`` when a change makes it stop matching, ``Delete`` (with its ``reason``) when a matching
        entity is deleted. Unlike callbacks, a stream has this node's changes and other nodes' alike
        (``local``/``remote`` choose). ``include_current`` starts with an ``Enter`` (``current=True``) per
        entity matching now, then the live events, none missed nor told twice. The stream holds up to
        ``buffer`` events for a consumer that falls behind; then ``overflow="error"`` ends it with
        ``StreamOverflowError`` once the held events are read, and ``"drop_oldest"`` drops the oldest.

        Raises:
            QueryError: bad criteria or options, at the call.
        """
        if criteria is not None and not isinstance(criteria, Mapping):
            raise QueryError(f"watch() takes its criteria as keywords or a mapping, got {criteria!r}")
        wanted = {**(criteria or {}), **fields}
        conditions = self._selection.conditions(wanted) if wanted else ()
        options = stream_options(
            include_current=include_current, buffer=buffer, overflow=overflow, local=local, remote=remote
        )
        subscription = Subscription(self._table, conditions, options, partial(self._selection.select, wanted))
        return self._host.watch_collection(self, subscription)

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
    def lag(self) -> Lag:
        """How far this collection is from its bucket: changes waiting to be written and for how long, and
        the bucket's revisions known but not applied yet (the figures of ``db.stats()``; no I/O). To wait
        until the node is in step, ``await db.synced()``."""
        return self._host.collection_lag(self)

    @property
    def entities(self) -> Mapping[str, Entity]:
        """The entities held, by uuid (read-only: change them through the collection)."""
        return self._entities

    def __repr__(self) -> str:
        dirty = self.sync.pending_count()
        paths = ", ".join("__".join(path) for path in self._indexes.paths)
        return f"<Collection {self.name}: {len(self._entities)} entities, {dirty} pending, indexes=[{paths}]>"
