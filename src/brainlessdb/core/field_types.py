"""Field types: what an annotation of a model field means for the schema and for the stored JSON.

Each annotation gives a ``FieldType``: the schema type (``str``, ``int``, ``float``, ``bool``, ``dict``,
``list`` or ``any``), whether ``None`` fits, the choices of an ``Enum`` or a ``Literal``, and the two
conversions between what the program holds and what is stored: ``dump`` (to JSON, checking the value)
and ``load`` (back to the declared type). Types that JSON holds as they are convert nothing (``dump``
and ``load`` are None), so fields of them cost nothing more than untyped ones. The others are stored in
plain JSON that any client reads:

- an ``Enum`` as its member's value, a ``Literal`` as itself (both checked against their choices);
- ``datetime`` and ``date`` as ISO 8601 strings; an aware ``datetime`` in UTC, so that stored strings
  sort in time order, a naive one as it is (it reads back naive);
- a ``UUID`` as its canonical string;
- a nested model as a JSON object (see ``core.models``);
- ``list[...]``, ``tuple[...]`` and ``dict[str, ...]`` item by item.

This module knows nothing of models; ``field_type`` is given a ``nested`` function that recognises one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
import uuid as uuids
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any, Final, Literal, Protocol, Union

from brainlessdb.core.values import JSON_TYPE_NAMES
from brainlessdb.errors import SchemaError

Dump = Callable[[Any, str], Any]
"""A value of the declared type (or its JSON form) to its JSON form; ``SchemaError`` naming the field."""
Load = Callable[[Any], Any]
"""A stored JSON value back to the declared type (left as it is where it does not convert)."""


class NestedModel(Protocol):
    """What a field type needs of a model nested in a field (``core.models.Model`` is one)."""

    cls: type

    def dump(self, value: Any, name: str) -> dict[str, Any]:
        """An instance, a view or a mapping of the model as its stored JSON object, checked."""

    def load(self, data: Mapping[str, Any]) -> Any:
        """An instance of the model holding the stored JSON object ``data``."""


Nested = Callable[[Any], "NestedModel | None"]
"""The model of an annotation that is a model class (None for anything else)."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldType:
    """What an annotation means: its schema type and the conversions of its values."""

    kind: str
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    dump: Dump | None = None
    load: Load | None = None
    model: NestedModel | None = None
    """The model of a nested object (a view of it is read for this field)."""

    @property
    def converts(self) -> bool:
        return self.dump is not None

    def to_json(self, value: Any, name: str) -> Any:
        """``value`` as stored (``None`` stays ``None``)."""
        if value is None or self.dump is None:
            return value
        return self.dump(value, name)

    def from_json(self, value: Any) -> Any:
        """A stored ``value`` as the declared type (``None`` stays ``None``)."""
        if value is None or self.load is None:
            return value
        return self.load(value)


# The schema type of each annotation that names one directly.
_PY_TYPES: Final[Mapping[Any, str]] = {**JSON_TYPE_NAMES, tuple: "list", Any: "any", object: "any"}
_SEQUENCES: Final = (list, tuple, Sequence, MutableSequence, typing.Sequence, typing.MutableSequence)
_MAPPINGS: Final = (dict, Mapping, MutableMapping, typing.Mapping, typing.MutableMapping)
_SCALAR_KINDS: Final[Mapping[type, str]] = {str: "str", bool: "bool", int: "int", float: "float"}


def annotation_type(annotation: Any, name: str) -> tuple[str, bool]:
    """The schema type and nullability of a type annotation made of JSON types only."""
    found = field_type(annotation, name)
    return found.kind, found.nullable


def field_type(annotation: Any, name: str, nested: Nested | None = None) -> FieldType:
    """What ``annotation`` means for field ``name``; ``SchemaError`` for a type JSON cannot hold."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return field_type(typing.get_args(annotation)[0], name, nested)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return _union(typing.get_args(annotation), name, nested)
    if annotation is type(None) or annotation is None or annotation is Any:
        return FieldType("any", nullable=True)
    if origin is Literal:
        return _literal(typing.get_args(annotation), name)
    if isinstance(annotation, type) and origin is None:
        special = _special(annotation, name, nested)
        if special is not None:
            return special
    base = origin if origin is not None else annotation
    if base in _SEQUENCES:
        return _sequence(annotation, name, nested)
    if base in _MAPPINGS:
        return _mapping(annotation, name, nested)
    if base in _PY_TYPES:
        return FieldType(_PY_TYPES[base])
    if isinstance(base, type):
        if issubclass(base, bool):
            return FieldType("bool")
        for kind, scalar in (("str", str), ("int", int), ("float", float)):
            if issubclass(base, scalar):
                return FieldType(kind)
        if issubclass(base, Mapping):
            return FieldType("dict")
        if issubclass(base, (list, tuple)):
            return FieldType("list")
    raise SchemaError(f"field {name!r}: unsupported annotation {annotation!r}", field=name)


def _union(args: tuple[Any, ...], name: str, nested: Nested | None) -> FieldType:
    nullable = type(None) in args
    rest = [arg for arg in args if arg is not type(None)]
    if len(rest) == 1:
        inner = field_type(rest[0], name, nested)
        return dataclasses.replace(inner, nullable=nullable or inner.nullable)
    inners = [field_type(arg, name, nested) for arg in rest]
    if any(inner.converts for inner in inners):
        raise SchemaError(
            f"field {name!r}: a union may join JSON types only (Optional[...] takes any type)", field=name
        )
    return FieldType("any", nullable=nullable or any(inner.nullable for inner in inners))


def _choice_kind(choices: tuple[Any, ...], name: str) -> str:
    kinds = set()
    for choice in choices:
        kind = _SCALAR_KINDS.get(type(choice))
        if kind is None:
            raise SchemaError(f"field {name!r}: choice {choice!r} is not a JSON scalar", field=name)
        kinds.add(kind)
    return kinds.pop() if len(kinds) == 1 else "any"


def _is_choice(value: Any, choices: tuple[Any, ...]) -> bool:
    """Whether ``value`` is one of ``choices``, as JSON tells them apart (``True`` is not ``1``)."""
    kind = type(value)
    return any(type(choice) is kind and choice == value for choice in choices)


def _literal(args: tuple[Any, ...], name: str) -> FieldType:
    values = tuple(arg.value if isinstance(arg, enum.Enum) else arg for arg in args)
    nullable = None in values
    choices = tuple(value for value in values if value is not None)
    kind = _choice_kind(choices, name)

    def dump(value: Any, name: str) -> Any:
        if isinstance(value, enum.Enum):
            value = value.value
        if not _is_choice(value, choices):
            raise _not_a_choice(name, value, choices)
        return value

    return FieldType(kind, nullable=nullable, choices=choices, dump=dump)


def _not_a_choice(name: str, value: Any, choices: tuple[Any, ...]) -> SchemaError:
    listed = ", ".join(map(repr, choices))
    return SchemaError(f"field {name!r} takes one of {listed}, got {value!r}", field=name, expected=choices)


def _special(cls: type, name: str, nested: Nested | None) -> FieldType | None:
    """The field type of a class that is not a JSON type (None for one that is)."""
    if issubclass(cls, enum.Enum):
        return _enum(cls, name)
    if issubclass(cls, dt.datetime):
        return FieldType("str", dump=_dump_datetime, load=_load_datetime)
    if issubclass(cls, dt.date):
        return FieldType("str", dump=_dump_date, load=_load_date)
    if issubclass(cls, uuids.UUID):
        return FieldType("str", dump=_dump_uuid, load=_load_uuid)
    model = None if nested is None else nested(cls)
    if model is not None:
        return FieldType("dict", dump=model.dump, load=model.load, model=model)
    return None


def _enum(cls: type[enum.Enum], name: str) -> FieldType:
    choices = tuple(member.value for member in cls)
    kind = _choice_kind(choices, name)

    def dump(value: Any, name: str) -> Any:
        if isinstance(value, cls):
            return value.value
        if not isinstance(value, enum.Enum) and _is_choice(value, choices):
            return value
        raise _not_a_choice(name, value, choices)

    def load(value: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            return value

    return FieldType(kind, choices=choices, dump=dump, load=load)


JSON_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
"""The exact types of values that are their own JSON form (``criterion_json`` leaves them alone)."""


def criterion_json(value: Any) -> Any:
    """The stored form of a value given to a query or a change: an ``Enum`` member's value, a ``datetime``
    or ``date`` as the ISO 8601 string a model field stores it as (an aware ``datetime`` in UTC), a
    ``UUID`` as its string; anything else as it is. So ``filter(state=State.WAITING)`` and
    ``created__lt=datetime.now(timezone.utc)`` compare with what typed fields store."""
    if isinstance(value, enum.Enum):
        return criterion_json(value.value)
    if isinstance(value, dt.datetime):
        return _dump_datetime(value, "")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuids.UUID):
        return str(value)
    return value


def _dump_datetime(value: Any, name: str) -> str:
    if isinstance(value, str):
        value = _parsed(dt.datetime.fromisoformat, value, name, "datetime")
    if not isinstance(value, dt.datetime):
        raise _wrong(name, "datetime", value)
    moment: dt.datetime = value
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.isoformat()


def _load_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(_zulu(value))
        except ValueError:
            return value
    return value


def _dump_date(value: Any, name: str) -> str:
    if isinstance(value, str):
        value = _parsed(dt.date.fromisoformat, value, name, "date")
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise _wrong(name, "date", value)
    return value.isoformat()


def _load_date(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value
    return value


def _dump_uuid(value: Any, name: str) -> str:
    if isinstance(value, str):
        value = _parsed(uuids.UUID, value, name, "UUID")
    if not isinstance(value, uuids.UUID):
        raise _wrong(name, "UUID", value)
    return str(value)


def _load_uuid(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return uuids.UUID(value)
        except ValueError:
            return value
    return value


def _zulu(text: str) -> str:
    """``text`` with a trailing ``Z`` spelled as an offset (which ``fromisoformat`` reads before 3.11)."""
    return text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text


def _parsed(parse: Callable[[str], Any], text: str, name: str, what: str) -> Any:
    try:
        return parse(_zulu(text) if what == "datetime" else text)
    except ValueError:
        raise SchemaError(f"field {name!r} expects an ISO 8601 {what}, got {text!r}", field=name) from None


def _wrong(name: str, expected: str, value: Any) -> SchemaError:
    got = "None" if value is None else type(value).__name__
    return SchemaError(f"field {name!r} expects {expected}, got {got}", field=name, expected=expected)


def _sequence(annotation: Any, name: str, nested: Nested | None) -> FieldType:
    args = typing.get_args(annotation)
    if len(args) == 2 and args[1] is Ellipsis:
        args = args[:1]
    items = [field_type(arg, name, nested) for arg in args]
    if not any(item.converts for item in items):
        return FieldType("list")
    if len(items) != 1:
        raise SchemaError(f"field {name!r}: a fixed tuple may hold JSON types only", field=name)
    item = items[0]

    def dump(value: Any, name: str) -> list[Any]:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
            raise _wrong(name, "list", value)
        return [item.to_json(one, name) for one in value]

    def load(value: Any) -> Any:
        return [item.from_json(one) for one in value] if isinstance(value, list) else value

    return FieldType("list", dump=dump, load=load)


def _mapping(annotation: Any, name: str, nested: Nested | None) -> FieldType:
    args = typing.get_args(annotation)
    if args and args[0] not in (str, Any):
        raise SchemaError(f"field {name!r}: a dict's keys are strings in JSON, not {args[0]!r}", field=name)
    item = field_type(args[1], name, nested) if len(args) == 2 else FieldType("any", nullable=True)
    if not item.converts:
        return FieldType("dict")

    def dump(value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _wrong(name, "dict", value)
        return {key: item.to_json(one, name) for key, one in value.items()}

    def load(value: Any) -> Any:
        return {key: item.from_json(one) for key, one in value.items()} if isinstance(value, dict) else value

    return FieldType("dict", dump=dump, load=load)
