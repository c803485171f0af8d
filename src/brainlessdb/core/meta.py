"""``brainlessdb.meta(entity)``: what the library knows about an entity, kept apart from its fields.

An entity's attributes are its fields, whatever their names (a collection may well have a field called
``data``, ``revision`` or ``get``), so the entity's own state cannot be attributes beside them. It is read
here instead: ``meta(entity).revision``, ``meta(entity).dirty``, ``meta(entity).to_dict()``...

``meta()`` makes one small object holding the entity and nothing else; each member reads the entity's
slots when asked, so it costs nothing until used and always answers for the entity's present state.
"""

from __future__ import annotations

from typing import Any, TypeVar

from brainlessdb.core.entity import Entity, field_or, plain_dict
from brainlessdb.core.tracked import untrack
from brainlessdb.core.views import entity_of

T = TypeVar("T")


class EntityMeta:
    """An entity's own state, read live: its uuid, collection, revision, dirtiness and plain copies of its
    fields. Read-only: a field changes through the entity (``entity.state = ...``)."""

    __slots__ = ("_entity",)

    _entity: Entity

    def __init__(self, entity: Entity) -> None:
        object.__setattr__(self, "_entity", entity)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"meta(entity).{name} is read-only: set a field on the entity itself")

    @property
    def entity(self) -> Entity:
        """The entity itself (behind a typed view, the entity it reads and writes)."""
        return self._entity

    @property
    def uuid(self) -> str:
        """The entity's uuid, also its key in the bucket."""
        return self._entity._uuid

    @property
    def collection(self) -> str:
        """The name of the entity's collection."""
        return self._entity._owner.name

    @property
    def data(self) -> dict[str, Any]:
        """A plain copy of the fields, without the uuid (a new dict at every read: changing it changes
        nothing stored)."""
        data: dict[str, Any] = untrack(self._entity._data)
        return data

    @property
    def dirty(self) -> bool:
        """True while the entity has changes that NATS has not acknowledged yet."""
        entity = self._entity
        return entity._version != entity._written

    @property
    def revision(self) -> int | None:
        """The KV revision of the last stored version this node knows (None if never stored)."""
        return self._entity._revision

    @property
    def expires_at(self) -> float | None:
        """When the entity expires, in seconds since the epoch (as ``time.time()``); None if it does not
        (see ``Collection.expire``)."""
        extras = self._entity._extras
        deadline = None if extras is None or extras.expiry is None else extras.expiry[0]
        return None if deadline is None else deadline / 1000

    def to_dict(self) -> dict[str, Any]:
        """A plain copy of the fields, with the uuid first."""
        return plain_dict(self._entity)

    def as_type(self, cls: type[T]) -> T:
        """A live instance of the model ``cls`` backed by the entity (its changes are tracked)."""
        return self._entity._owner.view(self._entity, cls)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of field ``name``, or ``default`` if the entity does not hold it (a dict or list
        comes back tracked, as ``entity[name]`` does)."""
        return field_or(self._entity, name, default)

    def __repr__(self) -> str:
        entity = self._entity
        dirty = " dirty" if entity._version != entity._written else ""
        return f"<EntityMeta {entity._owner.name}/{entity._uuid} revision={entity._revision}{dirty}>"


def meta(item: Any) -> EntityMeta:
    """What the library knows about ``item``, an entity or a typed view of one (``TypeError`` for
    anything else): ``meta(call).revision``, ``meta(call).dirty``, ``meta(call).to_dict()``..."""
    entity = entity_of(item)
    if entity is None:
        raise TypeError(f"meta() takes an entity or a typed view of one, not {type(item).__name__}")
    return EntityMeta(entity)
