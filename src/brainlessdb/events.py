"""Change events: what ``on_change`` and ``on_delete`` callbacks receive."""

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


Event = Change | Delete
Callback = Callable[[Any], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Listener:
    """A registered callback and which origins it wants."""

    kind: type[Change] | type[Delete]
    callback: Callback
    local: bool
    remote: bool

    def wants(self, event: Event) -> bool:
        """True when this listener is for the event's kind and origin."""
        if not isinstance(event, self.kind):
            return False
        return self.local if event.origin == "local" else self.remote
