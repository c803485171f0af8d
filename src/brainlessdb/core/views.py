"""Dataclasses in and out: the fields of an object given to ``add()``, and live typed views of entities.

A typed view is an instance of a generated subclass of the user's dataclass whose fields are properties
reading and writing the entity, so ``isinstance(view, Call)`` holds, the IDE knows the types, reads see
changes merged from other nodes, and ``view.state = "processing"`` is a tracked change like
``entity.state = ...``. The subclass has the same name, ``repr`` and equality as the dataclass.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import repeat
from typing import Any, Final, TypeVar

from brainlessdb.core.entity import Entity
from brainlessdb.errors import SchemaError

T = TypeVar("T")

ENTITY_ATTRIBUTE: Final = "_brainless_entity"


class TypedView:
    """Marker base of the generated view classes."""

    __slots__ = ()


_view_classes: dict[type, type] = {}
_field_names: dict[type, tuple[str, ...]] = {}  # the field names of dataclasses given to add()


def fields_of(obj: Any) -> dict[str, Any]:
    """The fields of whatever ``add()`` was given: a mapping, a dataclass instance or an entity."""
    if type(obj) is dict:
        return obj.copy()
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    names = _field_names.get(type(obj))
    if names is not None:
        return {name: getattr(obj, name) for name in names}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _field_names[type(obj)] = tuple(item.name for item in dataclasses.fields(obj))
        return {name: getattr(obj, name) for name in names}
    entity = entity_of(obj)
    if entity is not None:
        return entity.to_dict()
    raise TypeError(
        f"add() takes a dict, a dataclass instance or keyword arguments, not {type(obj).__name__}"
    )


def entity_of(obj: Any) -> Entity | None:
    """The entity behind an entity or a typed view (None for anything else)."""
    if isinstance(obj, Entity):
        return obj
    if isinstance(obj, TypedView):
        entity: Entity = object.__getattribute__(obj, ENTITY_ATTRIBUTE)
        return entity
    return None


def view_class(cls: type[T]) -> type[T]:
    """The generated view subclass of dataclass ``cls`` (made once, then cached)."""
    made = _view_classes.get(cls)
    if made is not None:
        return made
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"expected a dataclass, got {cls!r}")
    namespace: dict[str, Any] = {
        "__slots__": (ENTITY_ATTRIBUTE,),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__eq__": _view_eq,
        "__hash__": None,
    }
    for item in dataclasses.fields(cls):
        namespace[item.name] = _uuid_property() if item.name == "uuid" else _field_property(item)
    fields = frozenset(item.name for item in dataclasses.fields(cls) if item.name != "uuid")
    frozen: bool = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    namespace["__setattr__"] = _view_setattr(cls, fields, frozen)
    made = type(cls.__name__, (cls, TypedView), namespace)
    _view_classes[cls] = made
    return made


_entity_of_view = object.__getattribute__
_new_object = object.__new__
_ABSENT: Final = object()


def make_views(cls: type[T], entities: Iterable[Entity]) -> list[T]:
    """Live instances of ``cls``, one per entity, in order: what ``make_view`` makes, with both loops in C
    (a query's results are made this way: no Python call per entity)."""
    made = view_class(cls)
    entities = entities if isinstance(entities, list) else list(entities)
    views: list[T] = list(map(_new_object, repeat(made, len(entities))))
    # The slot's own descriptor sets it without a call per view; deque(maxlen=0) just runs the map.
    deque(map(_entity_slot(made), views, entities), maxlen=0)
    return views


def _entity_slot(made: type) -> Callable[[Any, Entity], None]:
    setter: Callable[[Any, Entity], None] = made.__dict__[ENTITY_ATTRIBUTE].__set__
    return setter


def make_view(cls: type[T], entity: Entity) -> T:
    """A live instance of ``cls`` backed by ``entity``."""
    view = object.__new__(view_class(cls))
    object.__setattr__(view, ENTITY_ATTRIBUTE, entity)
    return view


def _field_property(item: dataclasses.Field[Any]) -> property:
    name = item.name

    def read(self: Any) -> Any:
        entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
        value = entity._data.get(name, _ABSENT)
        if value is not _ABSENT:
            # Dicts and lists come back tracked, so changes made inside them are saved.
            return entity[name] if type(value) is dict or type(value) is list else value
        if item.default is not dataclasses.MISSING:
            return item.default
        if item.default_factory is not dataclasses.MISSING:
            return item.default_factory()
        raise AttributeError(f"entity {entity.uuid} has no field {name!r}")

    def write(self: Any, value: Any) -> None:
        entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
        entity._owner.set_field(entity, name, value)

    return property(read, write, doc=f"The entity's {name!r} field.")


def _view_setattr(cls: type, fields: frozenset[str], frozen: bool) -> Callable[[Any, str, Any], None]:
    """The views' ``__setattr__``: a field is a tracked change; a name that is neither a field nor a
    settable attribute of the class (a property with a setter, a slot) is a ``SchemaError``, as an unknown
    field of an untyped entity is, instead of an instance attribute that would never be stored. The views
    of a frozen dataclass are read-only, as its instances are."""

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name in fields:
            if frozen:
                raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
            # One call, as the field's property setter was: straight to the entity's owner.
            entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
            entity._owner.set_field(entity, name, value)
        elif _settable(type(self), name):
            _set_attribute(self, name, value)
        else:
            raise SchemaError(
                f"{cls.__qualname__} has no field {name!r} (fields: {', '.join(sorted(fields))})",
                field=name,
            )

    return __setattr__


_set_attribute = object.__setattr__


def _settable(made: type, name: str) -> bool:
    """Whether ``name`` is a data descriptor of the view class or its bases (what assignment calls)."""
    for klass in made.__mro__:
        found = klass.__dict__.get(name, _ABSENT)
        if found is not _ABSENT:
            return hasattr(type(found), "__set__")
    return False


def _uuid_property() -> property:
    def read(self: Any) -> str:
        entity: Entity = object.__getattribute__(self, ENTITY_ATTRIBUTE)
        return entity.uuid

    def write(self: Any, value: Any) -> None:
        if value != read(self):
            raise AttributeError("an entity's uuid cannot change")

    return property(read, write, doc="The entity's uuid.")


def _view_eq(self: Any, other: Any) -> Any:
    base = type(self).__mro__[1]
    if not isinstance(other, base):
        return NotImplemented
    names = [item.name for item in dataclasses.fields(base)]
    return all(getattr(self, name) == getattr(other, name) for name in names)
