"""Change events: what ``on_change`` and ``on_delete`` callbacks receive, and what change streams yield.

Callbacks receive ``Change`` and ``Delete``. A change stream (``collection.watch(...)``) follows the set of
entities matching its criteria, so it tells apart a change that brings an entity into that set
(``Enter``), one that keeps it there (``Change``) and one that takes it out (``Leave``); a matching entity
deleted is a ``Delete``. A consumer keeping its own view of the set adds on ``Enter``, updates on
``Change`` and removes on ``Leave`` or ``Delete``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Origin = Literal["local", "remote"]
DeleteReason = Literal["deleted", "expired", "purged"]


@dataclass(frozen=True, slots=True)
class Change:
    """An entity was added or changed: ``changes`` maps each changed field to ``(old, new)``.

    ``old`` is ``brainlessdb.MISSING`` for a field the entity did not have (every field of a new entity,
    and a field this node had not seen), never ``None``, which is a value a field can hold.
    ``origin`` is ``"remote"`` for changes merged from other nodes, ``"local"`` for this node's own.
    """

    collection: str
    uuid: str
    entity: Any
    changes: Mapping[str, tuple[Any, Any]]
    origin: Origin
    created: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    """An entity was deleted; ``entity`` is its last state on this node (None if it never had it).

    ``reason`` says why: ``"deleted"`` (by ``delete()``, here or on another node), ``"expired"`` (its
    expiry passed) or ``"purged"`` (removed from NATS by another client or an operator).
    """

    collection: str
    uuid: str
    entity: Any
    origin: Origin
    reason: DeleteReason = "deleted"


@dataclass(frozen=True, slots=True)
class Enter:
    """An entity came to match a change stream's criteria (without criteria: every new entity).

    ``created`` is set when the entity is new (added here or on another node), ``changes`` then mapping
    each of its fields to ``(MISSING, value)``; otherwise ``changes`` holds the change that made it match,
    as in ``Change``. With ``include_current=True`` a stream starts with one ``Enter`` per entity matching
    when it began: ``current`` is set, ``changes`` is empty and ``origin`` is None (no change brought it).
    """

    collection: str
    uuid: str
    entity: Any
    changes: Mapping[str, tuple[Any, Any]]
    origin: Origin | None
    created: bool = False
    current: bool = False


@dataclass(frozen=True, slots=True)
class Leave:
    """A change made an entity stop matching a change stream's criteria; it is still in the collection.

    ``entity`` is its state now (which no longer matches); ``changes`` the change that made it leave.
    """

    collection: str
    uuid: str
    entity: Any
    changes: Mapping[str, tuple[Any, Any]]
    origin: Origin


Event = Change | Delete
StreamEvent = Enter | Change | Leave | Delete
"""What a change stream yields."""
Callback = Callable[[Any], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Listener:
    """A registered callback and which origins it wants."""

    kind: type[Change] | type[Delete] | tuple[type[Change] | type[Delete], ...]
    callback: Callback
    local: bool
    remote: bool

    def wants(self, event: Event) -> bool:
        """True when this listener is for the event's kind and origin."""
        if not isinstance(event, self.kind):
            return False
        return self.local if event.origin == "local" else self.remote
