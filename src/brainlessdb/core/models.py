"""Models: the classes ``typed()`` takes, one adapter per model library, behind one ``Model``.

``typed()`` takes a dataclass, a pydantic (v2) model, a msgspec ``Struct`` or an attrs class. An adapter
(``ModelKind``) tells what the library knows: the fields with their annotations and defaults, how to make
an instance, whether it is frozen, and how the library validates values. pydantic and attrs are optional:
they are imported only when a class of theirs is given (then they are imported already), so a program
that uses neither never loads them.

``Model`` puts an adapter and the field types (``core.field_types``) together: the schema the class
declares, the stored JSON of an instance or of a mapping of its fields, and the conversions a view
makes on each read and write. Validation is the library's own where it has one: pydantic validates
every value it is given, msgspec validates as ``msgspec.convert`` does (types, ``Meta`` constraints,
``__post_init__``), attrs runs its validators and converters by making an instance; dataclasses have
none beyond the field types. A value the library refuses is a ``SchemaError`` naming the field, raised
before anything is kept.

One nullability rule (``declare``): a field a first ``add()`` inferred takes ``None`` until a model
declares it; then the declaration decides (its nullability, default and choices), whichever came first
and on whichever node.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from brainlessdb.core.field_types import FieldType, field_type
from brainlessdb.core.schema import RESERVED, FieldSpec, Schema
from brainlessdb.core.tracked import untrack
from brainlessdb.core.values import check_json
from brainlessdb.errors import SchemaError

NO_DEFAULT: Final = object()
"""The default of a field that has none (it must be given)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Declared:
    """One field as its model class declares it."""

    name: str
    annotation: Any
    default: Any = NO_DEFAULT
    factory: Callable[[], Any] | None = None


class ModelKind:
    """What one model library knows of its classes (the base is the dataclass adapter's shape)."""

    name: str = ""
    validates = False
    """True when the library checks values itself (``validate`` does something)."""

    def owns(self, cls: type) -> bool:
        raise NotImplementedError

    def fields(self, cls: type) -> list[Declared]:
        raise NotImplementedError

    def frozen(self, cls: type) -> bool:
        return False

    def make(self, cls: type, values: Mapping[str, Any]) -> Any:
        """An instance holding ``values`` (python values of every field), without validation."""
        raise NotImplementedError

    def validate(self, cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` as the library validates (and converts) them: every field's python value."""
        return dict(values)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError) as exc:
        raise SchemaError(f"cannot resolve the annotations of {cls.__qualname__}: {exc}") from exc


class DataclassKind(ModelKind):
    name = "dataclass"

    def owns(self, cls: type) -> bool:
        return dataclasses.is_dataclass(cls)

    def fields(self, cls: type) -> list[Declared]:
        hints = _hints(cls)
        out = []
        for item in dataclasses.fields(cls):
            if not item.init:
                continue
            factory = None if item.default_factory is dataclasses.MISSING else item.default_factory
            default = NO_DEFAULT if item.default is dataclasses.MISSING else item.default
            out.append(Declared(item.name, hints.get(item.name, Any), default, factory))
        return out

    def frozen(self, cls: type) -> bool:
        return bool(cls.__dataclass_params__.frozen)  # type: ignore[attr-defined]

    def make(self, cls: type, values: Mapping[str, Any]) -> Any:
        return cls(**values)


class PydanticKind(ModelKind):
    name = "pydantic"
    validates = True

    def owns(self, cls: type) -> bool:
        pydantic = sys.modules.get("pydantic")
        return pydantic is not None and issubclass(cls, pydantic.BaseModel)

    def fields(self, cls: type) -> list[Declared]:
        from pydantic_core import PydanticUndefined

        out = []
        for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
            default = NO_DEFAULT if info.default is PydanticUndefined else info.default
            factory = info.default_factory
            if factory is not None and getattr(info, "default_factory_takes_data", False):
                factory = _without_data(factory)
            out.append(Declared(name, info.annotation, default, factory))
        return out

    def frozen(self, cls: type) -> bool:
        return bool(cls.model_config.get("frozen", False))  # type: ignore[attr-defined]

    def make(self, cls: type, values: Mapping[str, Any]) -> Any:
        return cls.model_construct(**values)  # type: ignore[attr-defined]

    def validate(self, cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
        import pydantic

        fields = cls.model_fields  # type: ignore[attr-defined]
        # Given by the names a model validates by: a field's alias where it has one.
        given = {_pydantic_key(fields.get(name), name): value for name, value in values.items()}
        try:
            made = cls.model_validate(given)  # type: ignore[attr-defined]
        except pydantic.ValidationError as exc:
            errors = exc.errors()
            location = errors[0]["loc"] if errors else ()
            field = str(location[0]) if location else None
            raise SchemaError(_pydantic_message(cls, exc), field=field) from None
        return {name: getattr(made, name) for name in cls.model_fields}  # type: ignore[attr-defined]


def _pydantic_key(info: Any, name: str) -> str:
    """The key pydantic validates field ``name`` by (its validation alias or alias, if a plain name)."""
    if info is None:
        return name
    for alias in (info.validation_alias, info.alias):
        if isinstance(alias, str):
            return alias
    return name


def _without_data(factory: Callable[..., Any]) -> Callable[[], Any]:
    return lambda: factory({})


def _pydantic_message(cls: type, exc: Any) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(step) for step in error["loc"]) or cls.__qualname__
        parts.append(f"{where}: {error['msg']}")
    return f"{cls.__qualname__} refused the value: " + "; ".join(parts)


class MsgspecKind(ModelKind):
    name = "msgspec"
    validates = True

    def owns(self, cls: type) -> bool:
        import msgspec

        return issubclass(cls, msgspec.Struct)

    def fields(self, cls: type) -> list[Declared]:
        import msgspec

        out = []
        for info in msgspec.structs.fields(cls):
            default = NO_DEFAULT if info.default is msgspec.NODEFAULT else info.default
            factory = None if info.default_factory is msgspec.NODEFAULT else info.default_factory
            out.append(Declared(info.name, info.type, default, factory))
        return out

    def frozen(self, cls: type) -> bool:
        return bool(cls.__struct_config__.frozen)  # type: ignore[attr-defined]

    def make(self, cls: type, values: Mapping[str, Any]) -> Any:
        return cls(**values)

    def validate(self, cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
        import msgspec

        # Given by the names msgspec decodes by (a renamed Struct's encoded names).
        renamed = {info.name: info.encode_name for info in msgspec.structs.fields(cls)}
        given = {renamed.get(name, name): value for name, value in values.items()}
        try:
            made: Any = msgspec.convert(given, cls)
        except msgspec.ValidationError as exc:
            found = _MSGSPEC_FIELD.search(str(exc))
            named = None if found is None else found.group(1)
            named = next((name for name, key in renamed.items() if key == named), named)
            raise SchemaError(f"{cls.__qualname__} refused the value: {exc}", field=named) from None
        return {name: getattr(made, name) for name in cls.__struct_fields__}  # type: ignore[attr-defined]


_MSGSPEC_FIELD: Final = re.compile(r"at `\$\.([^.`\[]+)")
_QUOTED: Final = re.compile(r"'([^']+)'")


class AttrsKind(ModelKind):
    name = "attrs"
    validates = True

    def owns(self, cls: type) -> bool:
        attr = sys.modules.get("attr")
        return attr is not None and bool(attr.has(cls))

    def fields(self, cls: type) -> list[Declared]:
        import attr

        try:
            attr.resolve_types(cls)
        except (NameError, TypeError) as exc:
            raise SchemaError(f"cannot resolve the annotations of {cls.__qualname__}: {exc}") from exc
        out = []
        for item in attr.fields(cls):
            if not item.init:
                continue
            default, factory = item.default, None
            if default is attr.NOTHING:
                default = NO_DEFAULT
            elif isinstance(default, attr.Factory):  # type: ignore[arg-type]
                factory = _attrs_factory(default.factory, default.takes_self)
                default = NO_DEFAULT
            out.append(Declared(item.name, item.type or Any, default, factory))
        return out

    def frozen(self, cls: type) -> bool:
        setter = getattr(cls, "__setattr__", None)
        return getattr(setter, "__name__", "") == "_frozen_setattrs"

    def make(self, cls: type, values: Mapping[str, Any]) -> Any:
        return self._construct(cls, values)

    def validate(self, cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
        import attr

        try:
            made = self._construct(cls, values)
        except (TypeError, ValueError) as exc:
            message = str(exc.args[0]) if exc.args else type(exc).__name__
            named = next((arg.name for arg in exc.args if isinstance(arg, attr.Attribute)), None)
            if named is None:  # attrs' own validators name the field in quotes
                quoted = _QUOTED.findall(message)
                named = next((name for name in quoted if name in values), None)
            raise SchemaError(f"{cls.__qualname__} refused the value: {message}", field=named) from None
        return {item.name: getattr(made, item.name) for item in attr.fields(cls) if item.init}

    def _construct(self, cls: type, values: Mapping[str, Any]) -> Any:
        import attr

        arguments = {}
        for item in attr.fields(cls):
            if item.init and item.name in values:
                arguments[getattr(item, "alias", None) or item.name.lstrip("_")] = values[item.name]
        return cls(**arguments)


def _attrs_factory(made: Callable[..., Any], takes_self: bool) -> Callable[[], Any]:
    """An attrs default factory as one of no argument (one that takes the instance is given None)."""
    return (lambda: made(None)) if takes_self else made


# Checked in this order: a pydantic dataclass is a dataclass, and validated as one.
KINDS: Final[tuple[ModelKind, ...]] = (MsgspecKind(), PydanticKind(), AttrsKind(), DataclassKind())


@dataclasses.dataclass(frozen=True, slots=True)
class ModelField:
    """One stored field of a model: its declaration and its type."""

    name: str
    type: FieldType
    default: Any
    factory: Callable[[], Any] | None

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT and self.factory is None

    def default_value(self) -> Any:
        """The python value of the field where an entity does not hold it (``AttributeError`` if none)."""
        if self.factory is not None:
            return self.factory()
        if self.default is NO_DEFAULT:
            raise AttributeError(f"field {self.name!r} has no value and no default")
        return copy.deepcopy(self.default)


class Model:
    """A model class as ``typed()`` sees it: its stored fields, its schema and its conversions."""

    def __init__(self, cls: type, kind: ModelKind) -> None:
        self.cls = cls
        self.kind = kind
        declared = kind.fields(cls)
        self.has_uuid = any(item.name == "uuid" for item in declared)
        self.names = tuple(item.name for item in declared)
        """Every field the class declares, in order (its ``uuid`` too)."""
        self.fields: dict[str, ModelField] = {}
        _models[cls] = self  # a model nested in itself finds this one
        try:
            for item in declared:
                if item.name in RESERVED:
                    continue
                kind_of = field_type(item.annotation, item.name, model_of_class)
                self.fields[item.name] = ModelField(item.name, kind_of, item.default, item.factory)
        except BaseException:
            del _models[cls]
            raise
        self._specs = {
            name: FieldSpec(item.type.kind, nullable=item.type.nullable, choices=item.type.choices)
            for name, item in self.fields.items()
        }
        self.frozen = kind.frozen(cls)
        self.converts = any(item.type.converts for item in self.fields.values())
        self.plain = not self.converts and not kind.validates
        """True when values are stored as given, with no conversion and no validation of the library."""

    def __repr__(self) -> str:
        return f"<Model {self.cls.__qualname__} ({self.kind.name}): {', '.join(self.fields)}>"

    def schema(self) -> Schema:
        """The schema the class declares (its ``uuid`` field, if any, is the entity's uuid)."""
        fields: dict[str, FieldSpec] = {}
        for name, item in self.fields.items():
            kind = item.type
            if item.required:
                fields[name] = FieldSpec(kind.kind, True, kind.nullable, None, kind.choices)
                continue
            default = item.type.to_json(item.default_value(), name)
            check_json(name, default)
            fields[name] = FieldSpec(kind.kind, False, kind.nullable, default, kind.choices)
        return Schema(fields)

    # -- whole objects ---------------------------------------------------------------------------

    def prepare(
        self, values: Mapping[str, Any], uuid: str | None = None, complete: bool = False
    ) -> dict[str, Any]:
        """The stored form of ``values`` (the python values of fields, some missing), validated by the
        library and converted; keys that are not fields of the model are left for the schema to judge.

        A missing field with a default factory gets a value made now (the schema's default was made
        once, when the class was typed). ``complete``: the object is nested in a field, where no schema
        checks it: every field is checked here and missing ones get their defaults.
        """
        fields = self.fields
        given = {name: _unviewed(value) for name, value in values.items() if name in fields}
        for name, item in fields.items():
            if name not in given and item.factory is not None:
                given[name] = item.factory()
        if self.kind.validates:
            if self.has_uuid and uuid is not None:
                given["uuid"] = uuid
            checked = self.kind.validate(self.cls, given)
            given = {name: checked[name] for name in fields if name in checked}
        out = {name: value for name, value in values.items() if name not in fields}
        for name, value in given.items():
            out[name] = fields[name].type.to_json(value, name)
        if complete:
            for name, item in fields.items():
                if name in out:
                    self._check(name, out[name])
                elif item.required:
                    raise SchemaError(f"missing required field {name!r}", field=name)
                else:
                    out[name] = item.type.to_json(item.default_value(), name)
        return out

    def _check(self, name: str, stored: Any) -> None:
        """``SchemaError`` unless the stored form of field ``name`` fits its type (what the schema checks
        of a field, for the fields of a nested object)."""
        check_json(name, stored)
        spec = self._specs[name]
        if not spec.accepts(stored):
            got = "None" if stored is None else type(stored).__name__
            raise SchemaError(
                f"field {name!r} expects {spec.type}, got {got}", field=name, expected=spec.type
            )

    def dump(self, value: Any, name: str) -> dict[str, Any]:
        """An instance, a view or a mapping of this model as a stored JSON object (field ``name``)."""
        if isinstance(value, (self.cls, ModelView)):
            value = self.values_of(_unviewed(value))
        elif not isinstance(value, Mapping):
            got = type(value).__name__
            raise SchemaError(f"field {name!r} expects {self.cls.__qualname__}, got {got}", field=name)
        try:
            return self.prepare(_plain_mapping(value), complete=True)
        except SchemaError as exc:
            where = name if exc.field is None else f"{name}.{exc.field}"
            raise SchemaError(f"field {where!r}: {exc}", field=name, expected=exc.expected) from None

    def values_of(self, obj: Any) -> dict[str, Any]:
        """The python values of the fields of an instance (or of a view) of this model."""
        return {name: getattr(obj, name) for name in self.fields}

    def load(self, data: Mapping[str, Any], uuid: str | None = None) -> Any:
        """An instance of the class holding the stored JSON object ``data`` (not validated again)."""
        values = self.python_values(data)
        if self.has_uuid:
            values["uuid"] = uuid
        return self.kind.make(self.cls, values)

    def python_values(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The python value of every field of the stored JSON object ``data`` (defaults where absent)."""
        out: dict[str, Any] = {}
        for name, item in self.fields.items():
            if name in data:
                out[name] = item.type.from_json(_plain(data[name]))
            elif not item.required:
                out[name] = item.default_value()
        return out

    # -- one field -------------------------------------------------------------------------------

    def write(self, name: str, value: Any, data: Mapping[str, Any], uuid: str | None = None) -> Any:
        """The stored form of ``value`` for field ``name`` of an object now holding ``data``: validated by
        the library together with the other fields (as it validates an assignment), then converted."""
        item = self.fields[name]
        value = _unviewed(value)
        if self.kind.validates:
            values = self.python_values(data)
            values[name] = value
            if self.has_uuid:
                values["uuid"] = uuid
            try:
                value = self.kind.validate(self.cls, values)[name]
            except SchemaError as exc:
                if exc.field is None:
                    raise SchemaError(str(exc), field=name, expected=exc.expected) from None
                raise
        stored = item.type.to_json(value, name)
        self._check(name, stored)
        return stored

    def read(self, name: str, stored: Any) -> Any:
        """The python value of field ``name`` for its stored JSON ``stored``."""
        return self.fields[name].type.from_json(_plain(stored))


class ModelView:
    """Base of the live views of models: what a view is as a plain instance (see ``core.views``)."""

    __slots__ = ()

    def _brainless_snapshot(self) -> Any:
        """A plain instance of the model holding what the view shows now."""
        raise NotImplementedError


def _unviewed(value: Any) -> Any:
    """A view as a plain instance of its model (anything else as it is)."""
    if isinstance(value, ModelView):
        return value._brainless_snapshot()
    return value


def _plain(value: Any) -> Any:
    """A stored value without its tracking (a plain copy of tracked dicts and lists)."""
    if isinstance(value, (dict, list)):
        return untrack(value)
    return value


def _plain_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(item) for key, item in value.items()}


_models: dict[type, Model] = {}


def find_kind(cls: Any) -> ModelKind | None:
    """The adapter of the library that made ``cls`` (None if it is not a model class)."""
    if not isinstance(cls, type):
        return None
    for kind in KINDS:
        if kind.owns(cls):
            return kind
    return None


def model_of(cls: Any) -> Model:
    """The ``Model`` of a model class (made once); ``TypeError`` for anything else."""
    made = _models.get(cls) if isinstance(cls, type) else None
    if made is not None:
        return made
    kind = find_kind(cls)
    if kind is None:
        raise TypeError(
            f"typed() takes a dataclass, a pydantic model, a msgspec Struct or an attrs class, not {cls!r}"
        )
    return Model(cls, kind)


def declared_schema(cls: Any) -> Schema:
    """The schema the model class ``cls`` declares (its ``uuid`` field, if any, is the entity's uuid);
    ``TypeError`` for anything that is not a model class."""
    return model_of(cls).schema()


def model_of_class(cls: Any) -> Model | None:
    """``model_of`` for a model class, None for any other annotation."""
    made = _models.get(cls) if isinstance(cls, type) else None
    if made is not None:
        return made
    return Model(cls, kind) if (kind := find_kind(cls)) is not None else None


# -- the one nullability rule -----------------------------------------------------------------------


def inferred(spec: FieldSpec) -> bool:
    """Whether ``spec`` has the shape ``add()`` infers: required, nullable, with no choices."""
    return spec.required and spec.nullable and spec.choices is None


def declare(schema: Schema, declared: Schema, entities: Iterable[Mapping[str, Any]]) -> Schema:
    """``schema`` with ``declared``'s own spec for each field that ``add()`` inferred: the declaration
    decides type (where the first value was ``None``), nullability, default and choices, whichever came
    first. The result is then extended by the declaration as any schema is (``Schema.extend``).

    So ``typed(Call)`` then ``add(...)`` and ``add(...)`` then ``typed(Call)`` give the same schema. A
    declaration that the entities held here do not fit (``None`` where it is not nullable, a value that
    is not one of its choices or not of its type) is a ``SchemaError``, and nothing changes.
    """
    fields = dict(schema.fields)
    taken = []
    for name, spec in declared.fields.items():
        current = fields.get(name)
        if current is None or current == spec or not inferred(current):
            continue
        if current.type not in (spec.type, "any"):
            continue  # a type the declaration cannot take: Schema.extend tells why
        fields[name] = spec
        taken.append(name)
    if not taken:
        return schema
    for data in entities:
        for name in taken:
            if name in data and not fields[name].accepts(data[name]):
                raise SchemaError(
                    f"field {name!r}: an entity holds {data[name]!r}, which the declaration refuses",
                    field=name,
                )
    return dataclasses.replace(schema, fields=fields)


def declared_over(stored: Schema, local: Schema, entities: Iterable[Mapping[str, Any]]) -> Schema:
    """``stored`` (another node's schema) with this node's declaration of the fields it inferred: ``declare``
    as schemas meet between nodes, so that a node that called ``typed()`` before it saw a schema that
    another node's ``add()`` inferred still has the declaration decide. ``stored`` as it is where the
    entities held here do not fit the declaration."""
    try:
        return declare(stored, local, entities)
    except SchemaError:
        return stored
