"""Models in and out: the fields of an object given to ``add()``, and live typed views of entities.

A typed view reads and writes its entity: reads see changes merged from other nodes, and
``view.state = "processing"`` is a tracked change like ``entity.state = ...``. Reads convert the stored JSON
to the declared types (an ISO string to a ``datetime``, a value to its ``Enum`` member...), writes convert
back and are validated by the model's library first (see ``core.models``); a field stored as JSON reads as
the entity's own value, with no conversion and its dicts and lists tracked.

A field holding a nested model reads as a nested view, live in the same way: ``call.caller.city = "Brno"``
is a change of one key inside the ``caller`` field, merged per key like any change inside a dict. A list
or dict of converted values (``list[datetime]``, ``dict[str, Address]``) reads as a converted copy: assign
it back to change it.

A view of a dataclass or an attrs class is an instance of a generated subclass whose fields are properties
(``isinstance(view, Call)`` holds, and the class's own methods and properties work). pydantic models and
msgspec Structs cannot be subclassed that way (their metaclasses own the fields), so their views are
instances of a generated class that stands in for the model: it has the model's fields, methods and
properties, reports the model as its ``__class__`` (so ``isinstance(view, Call)`` holds too), and answers
the library's own members (``model_dump()``...) from a plain instance made of what it shows.
"""

from __future__ import annotations

import dataclasses
import types
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import repeat
from typing import Any, Final, TypeVar

from brainlessdb.core import models
from brainlessdb.core.entity import Entity
from brainlessdb.core.field_types import FieldType
from brainlessdb.core.models import Model, ModelField, ModelView
from brainlessdb.core.tracked import untrack
from brainlessdb.errors import SchemaError

T = TypeVar("T")

ENTITY_ATTRIBUTE: Final = "_brainless_entity"
"""The slot of a view holding its entity."""
AT_ATTRIBUTE: Final = "_brainless_at"
"""The slot of a nested view holding its entity and the path of its object below the entity."""

Path = tuple[str, ...]


class TypedView(ModelView):
    """Marker base of the generated view classes of entities."""

    __slots__ = ()
    _brainless_model: Model

    def _brainless_snapshot(self) -> Any:
        entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
        return type(self)._brainless_model.load(entity._data, entity._uuid)


class NestedView(ModelView):
    """Marker base of the generated view classes of objects nested in a field."""

    __slots__ = ()
    _brainless_model: Model

    def _brainless_snapshot(self) -> Any:
        entity, path = _entity_of_view(self, AT_ATTRIBUTE)
        return type(self)._brainless_model.load(_object_at(entity, path))


_view_classes: dict[type, type] = {}
_nested_classes: dict[type, type] = {}
_field_names: dict[type, tuple[str, ...]] = {}  # the field names of model classes given to add()

_entity_of_view = object.__getattribute__
_new_object = object.__new__
_set_attribute = object.__setattr__
_ABSENT: Final = object()


# -- what add() is given ---------------------------------------------------------------------------


def fields_of(obj: Any) -> dict[str, Any]:
    """The fields of whatever ``add()`` was given: a mapping, a model instance, a view or an entity
    (python values: ``prepared`` turns them into stored ones)."""
    if type(obj) is dict:
        return obj.copy()
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    names = _field_names.get(type(obj))
    if names is not None:
        return {name: getattr(obj, name) for name in names}
    if isinstance(obj, TypedView):
        return {name: getattr(obj, name) for name in type(obj)._brainless_model.names}
    if isinstance(obj, Entity):
        out: dict[str, Any] = {"uuid": obj._uuid}
        out.update(untrack(obj._data))
        return out
    if models.find_kind(type(obj)) is not None:
        names = _field_names[type(obj)] = models.model_of(type(obj)).names
        return {name: getattr(obj, name) for name in names}
    raise TypeError(
        "add() takes a dict, a model instance (dataclass, pydantic, msgspec, attrs) or keyword arguments, "
        f"not {type(obj).__name__}"
    )


def prepared(typed: type | None, given: Any, uuid: str, values: dict[str, Any]) -> dict[str, Any]:
    """The stored form of ``values`` for ``add()``: converted and validated by the model of the typed
    collection, or else by the model of the instance given (``values`` as they are if neither converts)."""
    cls = typed
    if cls is None:
        if given is None or type(given) is dict or isinstance(given, (Mapping, Entity)):
            return values
        cls = type(given)._brainless_model.cls if isinstance(given, TypedView) else type(given)
        if models.find_kind(cls) is None:
            return values
    model = models.model_of(cls)
    if model.plain:
        return values
    return model.prepare(values, uuid)


def stored_changes(
    typed: type, entity: Entity | None, uuid: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """``update_if``'s changes of a collection typed by ``typed``, in their stored form: each converted and
    validated by the model as an assignment would be (against ``entity``'s fields, where it is held here);
    a field the model does not declare is left for the schema to judge."""
    model = models.model_of(typed)
    if model.plain:
        return dict(changes)
    data: Mapping[str, Any] = {} if entity is None else entity._data
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in model.fields:
            out[name] = value
        elif entity is None:
            out[name] = model.fields[name].type.to_json(value, name)
        else:
            out[name] = model.write(name, value, data, uuid)
    return out


def entity_of(obj: Any) -> Entity | None:
    """The entity behind an entity or a typed view (None for anything else, a nested view too)."""
    if isinstance(obj, Entity):
        return obj
    if isinstance(obj, TypedView):
        entity: Entity = _entity_of_view(obj, ENTITY_ATTRIBUTE)
        return entity
    return None


# -- views of entities ------------------------------------------------------------------------------


def view_class(cls: type[T]) -> type[T]:
    """The generated view class of model class ``cls`` (made once, then cached)."""
    made = _view_classes.get(cls)
    if made is None:
        made = _view_classes[cls] = _make_class(models.model_of(cls), nested=False)
    return made


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
    view = _new_object(view_class(cls))
    _set_attribute(view, ENTITY_ATTRIBUTE, entity)
    return view


def nested_view(model: Model, entity: Entity, path: Path) -> Any:
    """A live instance of ``model``'s class backed by the object at ``path`` in ``entity``."""
    made = _nested_classes.get(model.cls)
    if made is None:
        made = _nested_classes[model.cls] = _make_class(model, nested=True)
    view: Any = _new_object(made)
    _set_attribute(view, AT_ATTRIBUTE, (entity, path))
    return view


def _make_class(model: Model, nested: bool) -> type:
    """A view class of ``model``: a subclass of a dataclass or attrs class, a stand-in for the others."""
    cls = model.cls
    slot = AT_ATTRIBUTE if nested else ENTITY_ATTRIBUTE
    namespace: dict[str, Any] = {
        "__slots__": (slot,),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__eq__": _view_eq(model),
        "__hash__": None,
        "_brainless_model": model,
    }
    writers: dict[str, Callable[[Any, Any], None]] = {}
    for name, item in model.fields.items():
        read, write = _nested_field(model, item) if nested else _field(model, item)
        namespace[name] = property(read, write, doc=f"The {name!r} field.")
        writers[name] = write
    if model.has_uuid:
        namespace["uuid"] = _uuid_property(nested)
    namespace["__setattr__"] = _view_setattr(model, writers, nested)
    marker = NestedView if nested else TypedView
    if model.kind.name in ("dataclass", "attrs"):
        return type(cls.__name__, (cls, marker), namespace)
    _stand_in(model, namespace)
    return type(cls.__name__, (marker,), namespace)


def _stand_in(model: Model, namespace: dict[str, Any]) -> None:
    """Make ``namespace`` stand in for a model class it cannot subclass: the class's own methods and
    properties, the class as ``__class__``, a ``repr`` like its, and everything else from a snapshot."""
    cls = model.cls
    for klass in cls.__mro__:
        if klass.__module__.partition(".")[0] in ("pydantic", "msgspec", "builtins"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("__") or name in model.names:
                continue
            if isinstance(member, (types.FunctionType, property, classmethod, staticmethod)):
                namespace.setdefault(name, member)
    namespace["__class__"] = property(lambda self: cls)
    names = model.names

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{cls.__qualname__}({shown})"

    def __getattr__(self: Any, name: str) -> Any:
        if name.startswith("__") or name in (ENTITY_ATTRIBUTE, AT_ATTRIBUTE):
            raise AttributeError(name)
        return getattr(self._brainless_snapshot(), name)

    namespace["__repr__"] = __repr__
    namespace["__getattr__"] = __getattr__


def _field(model: Model, item: ModelField) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
    """Read and write of a field of a view of an entity."""
    name, kind = item.name, item.type

    if kind.load is None and kind.model is None:

        def read(self: Any) -> Any:
            entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
            value = entity._layout.get(entity._row, name, _ABSENT)
            if value is not _ABSENT:
                # Dicts and lists come back tracked, so changes made inside them are saved.
                if type(value) is dict or type(value) is list:
                    return entity._owner.track_field(entity, name, value)
                return value
            return _default(item, entity._uuid)

    else:

        def read(self: Any) -> Any:
            entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
            value = entity._layout.get(entity._row, name, _ABSENT)
            if value is _ABSENT:
                return _default(item, entity._uuid)
            return _loaded(kind, value, entity, (name,))

    if model.plain:

        def write(self: Any, value: Any) -> None:
            entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
            entity._owner.set_field(entity, name, value)

    else:

        def write(self: Any, value: Any) -> None:
            entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
            stored = model.write(name, value, entity._data, entity._uuid)
            entity._owner.set_field(entity, name, stored)

    return read, write


def _nested_field(model: Model, item: ModelField) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
    """Read and write of a field of a nested view: a key of the object at the view's path."""
    name, kind = item.name, item.type

    def read(self: Any) -> Any:
        entity, path = _entity_of_view(self, AT_ATTRIBUTE)
        value = _object_at(entity, path).get(name, _ABSENT)
        if value is _ABSENT:
            return _default(item, entity._uuid)
        return _loaded(kind, value, entity, (*path, name))

    def write(self: Any, value: Any) -> None:
        entity, path = _entity_of_view(self, AT_ATTRIBUTE)
        container = _tracked_at(entity, path)
        try:
            stored = model.write(name, value, container)
        except SchemaError as exc:
            where = ".".join((*path, name))
            raise SchemaError(f"{where}: {exc}", field=path[0], expected=exc.expected) from None
        container[name] = stored

    return read, write


def _loaded(kind: FieldType, value: Any, entity: Entity, path: Path) -> Any:
    """What a view reads for the stored ``value`` at ``path``: a nested view of a nested model, the
    tracked container of a JSON dict or list, or the value converted to the declared type."""
    if value is None:
        return None
    if kind.model is not None and isinstance(value, dict):
        return nested_view(kind.model, entity, path)  # type: ignore[arg-type]
    if kind.load is None:
        if isinstance(value, (dict, list)):
            return _tracked_at(entity, path)
        return value
    return kind.load(untrack(value))


def _object_at(entity: Entity, path: Path) -> Mapping[str, Any]:
    """The stored object at ``path`` in ``entity`` (``AttributeError`` if there is none now)."""
    node: Any = entity._layout.get(entity._row, path[0], None)
    for key in path[1:]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise AttributeError(f"entity {entity._uuid} has no object at {'.'.join(path)} now")
    return node


def _tracked_at(entity: Entity, path: Path) -> Any:
    """The tracked dict or list at ``path`` in ``entity``: changes made in it are the entity's."""
    first = entity._layout.get(entity._row, path[0], None)
    if not isinstance(first, (dict, list)):
        raise AttributeError(f"entity {entity._uuid} has no object at {path[0]} now")
    node: Any = entity._owner.track_field(entity, path[0], first)
    for key in path[1:]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, (dict, list)):
        raise AttributeError(f"entity {entity._uuid} has no object at {'.'.join(path)} now")
    return node


def _default(item: ModelField, uuid: str) -> Any:
    try:
        return item.default_value()
    except AttributeError:
        raise AttributeError(f"entity {uuid} has no field {item.name!r}") from None


def _view_setattr(
    model: Model, writers: Mapping[str, Callable[[Any, Any], None]], nested: bool
) -> Callable[[Any, str, Any], None]:
    """The views' ``__setattr__``: a field is a tracked change; a name that is neither a field nor a
    settable attribute of the class (a property with a setter, a slot) is a ``SchemaError``, as an unknown
    field of an untyped entity is, instead of an instance attribute that would never be stored. The views
    of a frozen model are read-only, as its instances are."""
    frozen = model.frozen
    plain = model.plain and not nested
    fields = writers.keys()
    qualname = model.cls.__qualname__

    def __setattr__(self: Any, name: str, value: Any) -> None:
        writer = writers.get(name)
        if writer is not None:
            if frozen:
                raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
            if plain:
                # One call, as the field's property setter was: straight to the entity's owner.
                entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
                entity._owner.set_field(entity, name, value)
            else:
                writer(self, value)
        elif _settable(type(self), name):
            _set_attribute(self, name, value)
        else:
            raise SchemaError(
                f"{qualname} has no field {name!r} (fields: {', '.join(sorted(fields))})", field=name
            )

    return __setattr__


def _settable(made: type, name: str) -> bool:
    """Whether ``name`` is a data descriptor of the view class or its bases (what assignment calls)."""
    for klass in made.__mro__:
        found = klass.__dict__.get(name, _ABSENT)
        if found is not _ABSENT:
            return hasattr(type(found), "__set__")
    return False


def _uuid_property(nested: bool) -> property:
    def read(self: Any) -> str | None:
        if nested:
            return None  # a nested object is no entity: it has no uuid of its own
        entity: Entity = _entity_of_view(self, ENTITY_ATTRIBUTE)
        return entity._uuid

    def write(self: Any, value: Any) -> None:
        if value != read(self):
            raise AttributeError("an entity's uuid cannot change")

    return property(read, write, doc="The entity's uuid.")


def _view_eq(model: Model) -> Callable[[Any, Any], Any]:
    cls, names = model.cls, model.names

    def __eq__(self: Any, other: Any) -> Any:
        if not isinstance(other, cls):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in names)

    return __eq__
