"""Entity: one stored object, with attribute and item access and explicit dirty tracking.

An entity holds its fields in a row (``_row``: a tuple in the order of its collection's ``Layout``, see
``core.rows``), the stamp of each field packed in an integer (see ``core.stamps``; and the extras of dict
and counter fields, see ``merge.Extras``), the KV revision it last saw, and two counters: ``_version``
grows with every local change and ``_written`` is the version NATS acknowledged.
The entity is dirty while they differ. Every change goes through its owner (the ``EntityOwner``
protocol, which ``Collection`` implements), which validates it against the schema, stamps it, updates
the indexes and wakes the flusher: ``entity.state = x``, ``entity["state"] = x`` and in-place changes of
nested dicts and lists (see ``tracked``) alike. The sync state sets the revision and the counters with
``set_slot``: assignment on an entity means a field.

Its attributes are its fields, all of them, whatever their names: a field's reader is on the collection's
own subclass, so it wins over the few shortcuts ``Entity`` has (``data``, ``dirty``, ``revision``,
``to_dict``, ``as_type``, ``get``). What the library knows about an entity (its revision, whether it is
dirty, a plain copy of its fields...) is read through ``brainlessdb.meta(entity)`` (see ``core.meta``),
which no field can hide; ``uuid`` is the key, which no field may be called. Code inside the library reads
the slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, Protocol, TypeVar, cast

from brainlessdb.core.merge import Extras
from brainlessdb.core.rows import Layout, Row
from brainlessdb.core.stamps import Stamps, held
from brainlessdb.core.tracked import Path, TrackedDict, TrackedList, track, untrack
from brainlessdb.core.values import MISSING

T = TypeVar("T")

set_slot: Final = object.__setattr__
"""Sets one of an entity's own slots (``_revision``, ``_version``...): ``entity.x = ...`` sets a field."""


class EntityOwner(Protocol):
    """What an entity needs from the collection that holds it."""

    name: str
    entity_class: type[Entity]
    """The collection's subclass of ``Entity``, whose class attributes read its fields."""

    def set_field(self, entity: Entity, name: str, value: Any) -> None:
        """Check, store and stamp a new value of a field (``SchemaError`` if it does not fit)."""

    def track_field(self, entity: Entity, name: str, value: dict[str, Any] | list[Any]) -> Any:
        """The field's dict or list, wrapped so that changes made inside it are tracked."""

    def default_of(self, entity: Entity, name: str) -> Any:
        """The value of a field the entity does not hold (its default; ``AttributeError`` if unknown)."""

    def before_nested(self, entity: Entity, name: str, container: Any, added: Any) -> None:
        """``container``, a tracked dict or list of field ``name``, is about to change in place, taking in
        ``added`` (``MISSING`` if nothing)."""

    def after_nested(self, entity: Entity, name: str, paths: list[Path]) -> None:
        """A tracked dict or list of field ``name`` changed in place, writing ``paths`` below it."""

    def view(self, entity: Entity, cls: type[T]) -> T:
        """A live instance of the dataclass ``cls`` backed by ``entity``."""


class EntityState:
    """An entity's own state, in slots; ``Entity`` adds the field access.

    This class has no ``__setattr__`` hook, so its ``__init__`` sets the slots at C speed;
    ``new_entity()`` builds one and turns it into an ``Entity`` (the same memory layout).
    """

    __slots__ = ("_extras", "_revision", "_row", "_stamps", "_uuid", "_version", "_written")

    _owner: EntityOwner
    """The collection the entity belongs to: a class attribute of the collection's own subclass (see
    ``entity_class``), so that no entity holds it (8 bytes each)."""
    _layout: Layout
    """The positions of the collection's fields in ``_row``: a class attribute, like ``_owner``."""
    _uuid: str
    _row: Row
    _stamps: Stamps
    _extras: Extras | None
    _revision: int | None
    _version: int
    _written: int

    def __init__(
        self,
        owner: EntityOwner,
        uuid: str,
        row: Row,
        stamps: Stamps,
        revision: int | None = None,
        extras: Extras | None = None,
    ) -> None:
        self._uuid = uuid
        self._row = row
        # Packed into an integer: the one stamp of every field, or the few fields' own (see ``stamps.held``).
        self._stamps = held(stamps) if type(stamps) is tuple else stamps
        self._extras = extras
        self._revision = revision
        self._version = 0
        self._written = 0

    @property
    def _data(self) -> dict[str, Any]:
        """A new dict of the fields as the row holds them (tracked containers included): for code off the
        hot paths that reads fields by name; a change made to it is not the entity's."""
        return self._layout.mapping(self._row)


def new_entity(
    owner: EntityOwner,
    uuid: str,
    row: Row,
    stamps: Stamps,
    revision: int | None = None,
    extras: Extras | None = None,
) -> Entity:
    """A new entity of ``owner``, an instance of its entity class (see ``entity_class``).

    Built as an ``EntityState``, whose slots are set without the ``Entity.__setattr__`` hook, then
    given its class: one is made per add and per entity loaded (see docs/performance.md).
    """
    entity = EntityState(owner, uuid, row, stamps, revision, extras)
    entity.__class__ = owner.entity_class
    return cast("Entity", entity)


class Entity(EntityState):
    """An entity of a collection: ``entity.field``, ``entity["field"]``, ``"field" in entity``,
    ``entity.uuid``.

    Any field reads and writes as an attribute, whatever its name; the rest is ``brainlessdb.meta(entity)``.
    """

    __slots__ = ()

    def __new__(cls, owner: EntityOwner, *args: Any, **kwargs: Any) -> Entity:
        # Entity(...) makes an instance of the owner's entity class, which can read its fields.
        made: Entity = object.__new__(owner.entity_class if cls is Entity else cls)
        return made

    @property
    def uuid(self) -> str:
        """The entity's uuid, also its key in the bucket."""
        return self._uuid

    # Shortcuts to what ``brainlessdb.meta(entity)`` reads, kept for the spec's examples (``call.dirty``,
    # ``call.to_dict()``...). A field of the same name always wins: its reader is on the collection's
    # subclass, so ``entity.data`` is the field where the collection has one. Code that handles entities of
    # any collection reads ``meta(entity)``, which no field can hide.

    @property
    def data(self) -> dict[str, Any]:
        """A plain copy of the fields (``meta(entity).data``), unless a field is called ``data``."""
        return untrack(self._data)  # type: ignore[no-any-return]

    @property
    def dirty(self) -> bool:
        """``meta(entity).dirty``, unless a field is called ``dirty``."""
        return self._version != self._written

    @property
    def revision(self) -> int | None:
        """``meta(entity).revision``, unless a field is called ``revision``."""
        return self._revision

    def to_dict(self) -> dict[str, Any]:
        """``meta(entity).to_dict()``, unless a field is called ``to_dict``."""
        return plain_dict(self)

    def as_type(self, cls: type[T]) -> T:
        """``meta(entity).as_type(cls)``, unless a field is called ``as_type``."""
        return self._owner.view(self, cls)

    def get(self, name: str, default: Any = None) -> Any:
        """``meta(entity).get(name, default)``, unless a field is called ``get``."""
        return field_or(self, name, default)

    def __getitem__(self, name: str) -> Any:
        value = self._layout.get(self._row, name)
        if value is MISSING:
            raise KeyError(name)
        if type(value) is dict or type(value) is list:
            value = self._owner.track_field(self, name, value)
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        self._owner.set_field(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SLOTS:
            set_slot(self, name, value)
        elif name == "uuid":
            raise AttributeError("an entity's uuid never changes: add a new entity instead")
        else:
            self._owner.set_field(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: assign None instead")

    def __contains__(self, name: object) -> bool:
        return type(name) is str and self._layout.holds(self._row, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.present(self._row))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Entity):
            return self._uuid == other._uuid and self._data == other._data
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        state = " dirty" if self._version != self._written else ""
        return f"<Entity {self._owner.name}/{self._uuid}{state} {untrack(self._data)!r}>"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._layout.present(self._row)))


_SLOTS = frozenset(EntityState.__slots__)


class FieldReader:
    """``entity.<field>``: a descriptor reading one field, on the entity class of each collection.

    Fields are read through descriptors rather than a ``__getattr__`` hook: a class with that hook has
    every attribute access go through it (CPython then neither specializes slot reads nor finds the
    field without first raising an ``AttributeError``): every read of an entity would pay for it.
    """

    __slots__ = ("name", "position")

    def __init__(self, name: str, position: int) -> None:
        self.name = name
        self.position = position

    def __get__(self, entity: Entity | None, owner: type | None = None) -> Any:
        if entity is None:
            return self
        try:
            value = entity._row[self.position]
        except IndexError:
            value = MISSING  # a row made before the layout had the field
        if value is MISSING:
            return entity._owner.default_of(entity, self.name)
        if type(value) is dict or type(value) is list:
            return entity._owner.track_field(entity, self.name, value)
        return value


def entity_class(collection_name: str, owner: EntityOwner, layout: Layout) -> type[Entity]:
    """A new subclass of ``Entity`` for the collection ``owner``, whose entities hold their values in rows
    of ``layout``; ``add_fields`` gives it its fields."""
    namespace = {
        "__slots__": (),
        "__module__": __name__,
        "__qualname__": f"Entity[{collection_name}]",
        "_owner": owner,
        "_layout": layout,
    }
    return type("Entity", (Entity,), namespace)


def add_fields(cls: type[Entity], names: Iterable[str]) -> None:
    """Let the entities of ``cls`` read the fields ``names`` as attributes.

    Every field gets its reader, whatever its name (``data``, ``get``, ``keys``...): on the collection's
    subclass, it comes before the members ``Entity`` itself still has, so a field is never hidden by one.
    Only ``uuid`` (the key, never a field) and names starting with ``_`` (refused as fields) are left out.
    """
    layout = cls._layout
    for name in names:
        if name != "uuid" and not name.startswith("_") and name not in cls.__dict__:
            setattr(cls, name, FieldReader(name, layout.position(name)))


def plain_dict(entity: Entity) -> dict[str, Any]:
    """A plain copy of ``entity``'s fields, with its uuid first."""
    out: dict[str, Any] = {"uuid": entity._uuid}
    out.update(untrack(entity._layout.mapping(entity._row)))
    return out


def field_or(entity: Entity, name: str, default: Any) -> Any:
    """The value of field ``name`` of ``entity`` (tracked, if a dict or a list), or ``default`` if the
    entity does not hold it."""
    if entity._layout.holds(entity._row, name):
        return entity[name]
    return default


class FieldOwner:
    """Owns the tracked containers of one entity field: forwards their changes to the entity's owner."""

    __slots__ = ("entity", "name", "top")

    def __init__(self, entity: Entity, name: str) -> None:
        self.entity = entity
        self.name = name
        self.top: TrackedDict | TrackedList | None = None

    def attached(self, container: TrackedDict | TrackedList) -> bool:
        """True while ``container`` is part of the entity's field: a change made in a dict or list that was
        replaced since (in the entity, or in the field) no longer counts."""
        entity = self.entity
        node = entity._layout.get(entity._row, self.name, None)
        if node is not self.top:
            return False
        for key in container.path:
            if not isinstance(node, dict):
                return False
            node = node.get(key)
        if container.whole:
            # Somewhere inside the list at ``path``: not searched, a change there rewrites the list.
            return isinstance(node, list)
        return node is container

    def before_nested_change(self, container: Any, added: Any) -> None:
        if self.attached(container):
            self.entity._owner.before_nested(self.entity, self.name, container, added)

    def after_nested_change(self, container: Any, paths: list[Path]) -> None:
        if self.attached(container):
            self.entity._owner.after_nested(self.entity, self.name, paths)

    def wrap(self, value: Any) -> Any:
        self.top = track(value, self)
        return self.top
