"""Change streams, their pure half: which events a stream wants, and what each one means to it.

A stream (``collection.watch(state="waiting")``) follows the set of entities that match its criteria. An
event of the collection's table is read against that set: a change that makes an entity match is an
``Enter`` (a new entity that matches, too), one after which it still matches stays a ``Change``, one
that makes it stop matching is a ``Leave``, and the delete of a matching entity stays a ``Delete``.
Everything else (changes and deletes of entities outside the set) is not the stream's business.

Whether an entity matched before a change is read from the event alone: the entity's data now, with each
changed field put back to its old value (``MISSING``: absent). Only a change of a field the criteria
read can move an entity in or out, so most events cost one match.

The buffer, the waiting and the cancellation are the shell's (``shell/streams.py``); this module only
registers a listener on the table and classifies what it receives, and is tested without an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Protocol

from brainlessdb.core import views
from brainlessdb.core.entity import Entity
from brainlessdb.core.query.filtering import compile_filter
from brainlessdb.core.query.plan import UUID_PATH, Condition
from brainlessdb.core.table import EntityTable
from brainlessdb.core.values import MISSING
from brainlessdb.errors import QueryError
from brainlessdb.events import Change, Delete, Enter, Event, Leave, Listener, StreamEvent

Overflow = Literal["error", "drop_oldest"]
"""What a stream does when its buffer is full and another event comes: see ``StreamOptions``."""

OVERFLOW_POLICIES: Final = ("error", "drop_oldest")
DEFAULT_BUFFER: Final = 10_000
"""Events a stream holds for a consumer that fell behind, by default (a burst of this many is survived)."""


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How a stream is fed and what it does when its consumer falls behind.

    ``include_current``: start with one ``Enter`` (``current=True``) per entity matching when the stream
    opens, then the live events, with no event missed or told twice in between. ``buffer``: how many live
    events the stream holds for its consumer. ``overflow``: what happens when it is full, ``"error"`` (the
    stream stops taking events; the consumer gets those it holds, then ``StreamOverflowError``, and knows it
    must watch again) or ``"drop_oldest"`` (the oldest held event is dropped and counted in ``dropped``: for
    consumers that only want the latest news). ``local``/``remote``: changes made by this node, and those
    merged from other nodes.
    """

    include_current: bool = False
    buffer: int = DEFAULT_BUFFER
    overflow: Overflow = "error"
    local: bool = True
    remote: bool = True


def stream_options(
    *, include_current: Any, buffer: Any, overflow: Any, local: Any, remote: Any
) -> StreamOptions:
    """``StreamOptions`` from ``watch()``'s arguments, checked: ``QueryError`` names a bad one (``key``)."""
    for key, value in (("include_current", include_current), ("local", local), ("remote", remote)):
        if not isinstance(value, bool):
            raise QueryError(f"watch(): {key} must be True or False, got {value!r}", key=key)
    if not local and not remote:
        raise QueryError("watch(): local=False and remote=False leave nothing to watch", key="local")
    if type(buffer) is not int or buffer < 1:
        raise QueryError(
            f"watch(): buffer must be a positive int (events held), got {buffer!r}", key="buffer"
        )
    if overflow not in OVERFLOW_POLICIES:
        raise QueryError(
            f"watch(): overflow must be one of {', '.join(map(repr, OVERFLOW_POLICIES))}, got {overflow!r}",
            key="overflow",
        )
    return StreamOptions(include_current, buffer, overflow, local, remote)


class ChangeStream(Protocol):
    """What ``collection.watch(...)`` returns: an async iterator of events, best used in ``async with``.

    ``async with coll.watch(state="waiting") as changes: async for event in changes: ...`` yields
    ``Enter``, ``Change``, ``Leave`` and ``Delete`` events (``brainlessdb.StreamEvent``) in the order they
    happened on this node. Leaving the block, breaking out of the loop or cancelling the consuming task
    unregisters the stream. Without ``async with`` it opens at the first ``__anext__`` and is unregistered
    by ``close()``/``aclose()``, when a read is cancelled, or when nothing references it any more. It ends
    (``StopAsyncIteration``) when it is closed, or when the database stops (after the events it holds).
    """

    @property
    def dropped(self) -> int:
        """Events dropped because the buffer was full (``overflow="drop_oldest"`` only)."""

    async def __aenter__(self) -> ChangeStream:
        """Open the stream: wait for the collection's load, then register (and read the current entities)."""

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the stream."""

    def __aiter__(self) -> ChangeStream:
        """The stream itself."""

    async def __anext__(self) -> StreamEvent:
        """The next event, waiting for it; ``StreamOverflowError`` once a full buffer's events are read."""

    def close(self) -> None:
        """Unregister now and drop what is held: iteration ends at once."""

    async def aclose(self) -> None:
        """``close()``, for ``contextlib.aclosing`` and code that closes async iterators."""


class Subscription:
    """A stream's hold on a collection: its criteria, its listener on the table, and what it makes of events.

    ``current`` reads the entities matching the criteria (what ``filter()`` answers), for
    ``include_current``. ``open(deliver)`` registers the listener and reads them in one step, so that no
    change falls between the two; from then on each event the stream wants reaches ``deliver``,
    classified, until ``close()``.
    """

    def __init__(
        self,
        table: EntityTable,
        conditions: tuple[Condition, ...],
        options: StreamOptions,
        current: Callable[[], Iterable[Entity]],
    ) -> None:
        self.collection = table.name
        self.options = options
        self._table = table
        self._current = current
        self._everything = not conditions
        self._matches = compile_filter(conditions)
        # The fields the criteria read: a change of none of them cannot move an entity in or out.
        self._fields = frozenset(c.path[0] for c in conditions if c.path != UUID_PATH)
        self._listener: Listener | None = None
        self._deliver: Callable[[StreamEvent], None] | None = None

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self, deliver: Callable[[StreamEvent], None]) -> list[Entity]:
        """Start delivering events; the entities matching now (if ``include_current``, else none)."""
        if self._listener is not None:
            raise RuntimeError("this subscription is open already")
        options = self.options
        self._deliver = deliver
        self._listener = Listener((Change, Delete), self._receive, local=options.local, remote=options.remote)
        self._table.listeners.append(self._listener)
        return list(self._current()) if options.include_current else []

    def close(self) -> None:
        """Stop delivering events (idempotent)."""
        listener, self._listener, self._deliver = self._listener, None, None
        if listener is not None:
            listeners = self._table.listeners
            for i, registered in enumerate(listeners):
                if registered is listener:
                    del listeners[i]  # in place: the table's listener list is shared, never rebound
                    break

    def entered(self, entity: Entity) -> Enter:
        """The ``Enter`` of an entity that matched when the stream opened (``include_current``)."""
        return Enter(self.collection, entity._uuid, self._table.result(entity), {}, None, current=True)

    def _receive(self, event: Event) -> None:
        deliver = self._deliver
        if deliver is None:
            return  # closed while the table was telling its listeners
        seen = self.classify(event)
        if seen is not None:
            deliver(seen)

    def classify(self, event: Event) -> StreamEvent | None:
        """What ``event`` is to this stream, or None when it concerns an entity outside its criteria."""
        entity = views.entity_of(event.entity)
        if isinstance(event, Delete):
            if self._everything:
                return event
            if entity is None or not self._matches(event.uuid, entity._data):
                return None
            return event
        if entity is None:  # pragma: no cover - the table always sends the entity with a change
            return None
        uuid, changes = event.uuid, event.changes
        if self._everything:
            now = before = True
        else:
            data = entity._data
            now = self._matches(uuid, data)
            if self._fields.isdisjoint(changes):
                before = now
            else:
                before = self._matches(uuid, data_before(data, changes))
        if event.created:
            before = False
        if now:
            if before:
                return event
            return Enter(event.collection, uuid, event.entity, changes, event.origin, created=event.created)
        if before:
            return Leave(event.collection, uuid, event.entity, changes, event.origin)
        return None

    def __repr__(self) -> str:
        state = "open" if self._listener is not None else "closed"
        return f"<Subscription {self.collection} {state}, {self.options}>"


def data_before(data: Mapping[str, Any], changes: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    """An entity's data as it was before ``changes`` (field → (old, new)) were made to it."""
    before = dict(data)
    for name, (old, _) in changes.items():
        if old is MISSING:
            before.pop(name, None)
        else:
            before[name] = old
    return before
