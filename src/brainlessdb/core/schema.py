"""Collection schemas: inferred from the first ``add()`` or declared by a ``typed()`` model, then locked.

A schema maps each field to a JSON type (``str``, ``int``, ``float``, ``bool``, ``dict``, ``list`` or
``any``), whether it must be given, whether it may be ``None``, and its default. Every ``add()`` and every
assignment is checked against it before anything is kept. Schemas are stored in NATS (as ``to_json()``)
so that every node enforces the same one. A schema only ever grows on its own: ``extend()`` accepts a
newer declaration that adds optional fields and keeps every existing field's type. Anything else (a field
removed, renamed or widened) is an evolution, a deliberate act (``core.evolution``): the schema then
remembers its version and the names it took out of use, so that entities stored before read back under it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from brainlessdb.core.values import (
    JSON_TYPE_NAMES,
    check_json,
    copy_json,
    is_utf8,
    json_type,
    not_finite_error,
    surrogate_error,
)
from brainlessdb.errors import SchemaError

FIELD_TYPES: Final = ("str", "int", "float", "bool", "dict", "list", "any")
SCALAR_TYPES: Final = frozenset({"str", "int", "float", "bool"})
RESERVED: Final = frozenset({"uuid"})
SCHEMA_FORMAT: Final = 1

_NO_DEFAULT: Final = object()

# The exact types of decoded JSON values, by schema type (None: a null).
_DECODED_TYPES: Final[Mapping[type, str | None]] = {**JSON_TYPE_NAMES, type(None): None}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a schema."""

    type: str
    required: bool = True
    nullable: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    """The values the field takes (an ``Enum``'s or a ``Literal``'s), None: any value of its type."""

    def accepts(self, value: Any) -> bool:
        """True when ``value`` (already known to be JSON-like) fits this field."""
        if value is None:
            return self.nullable
        if self.choices is not None:
            return any(type(choice) is type(value) and choice == value for choice in self.choices)
        kind = self.type
        if kind == "any":
            return True
        if kind == "str":
            return isinstance(value, str)
        if kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if kind == "float":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "bool":
            return isinstance(value, bool)
        if kind == "dict":
            return isinstance(value, dict)
        return isinstance(value, list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "required": self.required, "nullable": self.nullable}
        if not self.required:
            out["default"] = self.default
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True, slots=True)
class Schema:
    """The locked fields of a collection."""

    fields: Mapping[str, FieldSpec]
    version: int = 0
    """How many evolutions (``core.evolution``) made this schema: each step stored adds one."""
    renamed: Mapping[str, str] = field(default_factory=dict)
    """The former names of renamed fields, each to the field's name now: stored entities may still hold
    values under them, which are read as the new name's."""
    removed: frozenset[str] = frozenset()
    """The names of removed fields: stored entities may still hold values under them, which are dropped."""
    ttl: float | None = None
    """The default expiry in seconds of every entity added (``core.expiry``); None: they do not expire."""
    _accepted: tuple[tuple[str, frozenset[type], frozenset[type]], ...] = field(
        init=False, repr=False, compare=False
    )
    _containers: dict[str, frozenset[type]] = field(init=False, repr=False, compare=False)
    exact_types: dict[str, frozenset[type]] = field(init=False, repr=False, compare=False)
    """Per field, the exact types of the values it takes with at most a cheap check (str: UTF-8 encodable,
    which ASCII always is; float: finite); values of other types need ``accept()``."""

    def __post_init__(self) -> None:
        # Per field, the exact types whose values it takes after at most a cheap check (see check_new).
        # Per field, the exact types of the scalars it takes and of the containers it takes (copied).
        accepted = tuple(
            (name, _exact_types(spec), _CONTAINER_TYPES.get(spec.type, _NO_TYPES))
            for name, spec in self.fields.items()
        )
        object.__setattr__(self, "_accepted", accepted)
        object.__setattr__(self, "exact_types", {name: exact for name, exact, _ in accepted})
        object.__setattr__(self, "_containers", {name: kinds for name, _, kinds in accepted})
        object.__setattr__(self, "retired", frozenset(self.renamed) | self.removed)

    retired: frozenset[str] = field(init=False, repr=False, compare=False)
    """The names this schema's history took out of use (renamed or removed): never a field's again."""

    @classmethod
    def infer(cls, data: Mapping[str, Any]) -> Schema:
        """The schema a first ``add()`` implies: every field required, typed by its value.

        A ``None`` value gives a field of any type; inferred fields accept ``None`` later on, since a first
        example cannot tell whether they may be empty.
        """
        fields: dict[str, FieldSpec] = {}
        for name, value in data.items():
            check_field_name(name)
            check_json(name, value)
            fields[name] = FieldSpec(type=json_type(value), required=True, nullable=True)
        return cls(fields)

    @classmethod
    def from_json(cls, raw: Any) -> Schema:
        """A schema read back from storage."""
        if (
            not isinstance(raw, dict)
            or raw.get("v") != SCHEMA_FORMAT
            or not isinstance(raw.get("fields"), dict)
        ):
            raise SchemaError(f"unreadable stored schema: {raw!r}")
        fields: dict[str, FieldSpec] = {}
        for name, spec in raw["fields"].items():
            if not isinstance(spec, dict) or spec.get("type") not in FIELD_TYPES:
                raise SchemaError(f"unreadable stored schema field {name!r}: {spec!r}", field=name)
            fields[name] = FieldSpec(
                type=spec["type"],
                required=bool(spec.get("required", True)),
                nullable=bool(spec.get("nullable", False)),
                default=spec.get("default"),
                choices=_choices_from_json(name, spec.get("choices")),
            )
        version, renamed, removed = _history_from_json(raw)
        return cls(fields, version=version, renamed=renamed, removed=removed, ttl=_ttl_from_json(raw))

    def to_json(self) -> dict[str, Any]:
        """The stored form of this schema (its history only once it has one: a schema never evolved is
        stored as before evolutions existed)."""
        out: dict[str, Any] = {
            "v": SCHEMA_FORMAT,
            "fields": {name: spec.to_json() for name, spec in self.fields.items()},
        }
        if self.version:
            out["version"] = self.version
        if self.renamed:
            out["renamed"] = dict(self.renamed)
        if self.removed:
            out["removed"] = sorted(self.removed)
        if self.ttl is not None:
            out["ttl"] = self.ttl
        return out

    def field_types(self) -> dict[str, str]:
        """Field name to type name, as the query parser wants it."""
        return {name: spec.type for name, spec in self.fields.items()}

    def check_new(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The data of a new entity, in field order, with defaults filled in and private copies of its
        dicts and lists; ``SchemaError`` if it does not fit."""
        fields = self.fields
        if not fields.keys() >= data.keys():
            if not self.retired.isdisjoint(data):
                # Code written for a version before an evolution: its data under the names of this one.
                return self.check_new(self.current_names(data))
            name = next(name for name in data if name not in fields)
            raise self.unknown(name)
        out: dict[str, Any] = {}
        for name, accepted, containers in self._accepted:
            value = data.get(name, _NO_DEFAULT)
            kind = type(value)
            if kind in accepted:
                # A scalar of an exact type the field takes: the common case, with no call. Two checks
                # remain: text UTF-8 can encode (ASCII always can) and a finite float.
                if kind is str:
                    if not value.isascii() and not is_utf8(value):
                        raise surrogate_error(name)
                elif kind is float and value - value != 0.0:
                    raise not_finite_error(name, value)
                out[name] = value
            elif kind in containers:
                out[name] = copy_json(name, value)
            elif value is _NO_DEFAULT:
                spec = fields[name]
                if spec.required:
                    raise SchemaError(f"missing required field {name!r}", field=name, expected=spec.type)
                out[name] = copy.deepcopy(spec.default)
            else:
                out[name] = self.accept(name, value)
        return out

    def accept(self, name: str, value: Any) -> Any:
        """What field ``name`` stores for ``value``: the value, or a plain private copy of a dict or list.

        Raises:
            SchemaError: an unknown field, a value JSON cannot hold, or one of a type the field does not take.
        """
        spec = self.fields.get(name)
        if spec is None:
            raise self.unknown(name)
        kind = type(value)
        if kind in self.exact_types[name] and kind is not str and kind is not float:
            return value
        if kind in self._containers[name]:
            return copy_json(name, value)
        value = copy_json(name, value)
        if not spec.accepts(value):
            got = "None" if value is None else type(value).__name__
            raise SchemaError(
                f"field {name!r} expects {spec.type}, got {got}", field=name, expected=spec.type
            )
        return value

    def check_stored(self, data: Mapping[str, Any]) -> None:
        """``SchemaError`` unless data read from storage fits (unknown fields or wrong types)."""
        fields = self.fields
        for name, value in data.items():
            spec = fields.get(name)
            if spec is None:
                raise self.unknown(name)
            self.accept(name, value)

    def unknown(self, name: str) -> SchemaError:
        """The error for a field this schema does not have: saying what became of it if an evolution
        renamed or removed it."""
        now = self.renamed.get(name)
        if now is not None:
            return SchemaError(
                f"field {name!r} was renamed to {now!r} (schema version {self.version})", field=name
            )
        if name in self.removed:
            return SchemaError(f"field {name!r} was removed (schema version {self.version})", field=name)
        return SchemaError(f"unknown field {name!r} (fields: {', '.join(self.fields)})", field=name)

    def current_names(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` given under names of an earlier version, under this one's: a renamed field's value
        under its new name (unless given under it too), a removed field's dropped."""
        renamed = self.renamed
        out = {name: value for name, value in data.items() if name not in self.retired}
        for name, value in data.items():
            now = renamed.get(name)
            if now is not None and now not in out:
                out[now] = value
        return out

    def check_stored_types(self, data: Mapping[str, Any]) -> None:
        """``SchemaError`` for a value in the stored format whose type its field does not take.

        One lookup per field, for loads and watches. A field the schema does not know is let through if
        its name is valid: another node may have extended the schema before this node saw it.
        """
        self.check_stored_version(data)

    def check_stored_version(self, data: Mapping[str, Any]) -> bool:
        """``check_stored_types``, and True when ``data`` holds exactly the schema's fields (as many, none
        it does not know): then every required field is there, with no lookup per field."""
        fields = self.fields
        exact_types = self.exact_types
        containers = self._containers
        unknown = False
        for name, value in data.items():
            decoded = type(value)
            exact = exact_types.get(name)
            if exact is not None and (decoded in exact or decoded in containers[name]):
                continue  # the common case: a type the field takes (a subset of what the rules below take)
            spec = fields.get(name)
            if spec is None:
                check_field_name(name)
                unknown = True
                continue
            kind = _DECODED_TYPES.get(decoded, "?")
            expected = spec.type
            if kind == expected or expected == "any" or (kind == "int" and expected == "float"):
                continue
            if kind is None and spec.nullable:
                continue
            got = "None" if value is None else type(value).__name__
            raise SchemaError(f"field {name!r} expects {expected}, got {got}", field=name, expected=expected)
        return not unknown and len(data) == len(fields)

    def extend(self, newer: Schema) -> Schema:
        """This schema grown by ``newer``'s extra optional fields; ``SchemaError`` if incompatible.

        Only ever adds: a field ``newer`` lacks, renames or types otherwise is a ``SchemaError`` that
        names the deliberate step (``evolve()``, see ``core.evolution``) that would make the change.
        """
        if newer == self:
            return self
        for name, spec in self.fields.items():
            other = newer.fields.get(name)
            if other is None:
                if spec.required:
                    raise SchemaError(
                        f"field {name!r} is required by the stored schema but not declared: declare it, "
                        f"or remove or rename it with evolve()",
                        field=name,
                    )
                continue
            if other.type != spec.type and other.type != "any":
                widening = spec.type == "int" and other.type == "float"
                hint = "widen it with evolve()" if widening else f"{other.type} cannot hold every {spec.type}"
                raise SchemaError(
                    f"field {name!r} is {spec.type} in the stored schema, not {other.type}: {hint}",
                    field=name,
                    expected=spec.type,
                )
        fields = dict(self.fields)
        for name, other in newer.fields.items():
            if name in fields:
                continue
            if name in self.retired:
                raise SchemaError(
                    f"field {name!r} was renamed or removed by an evolution of the stored schema: its name "
                    f"cannot be a field again",
                    field=name,
                )
            if other.required:
                raise SchemaError(
                    f"new field {name!r} needs a default to extend the stored schema (if it is a renamed "
                    f"field, declare renamed_from and call evolve())",
                    field=name,
                )
            fields[name] = other
        # A default expiry stored wins; a schema stored without one takes the newer declaration's.
        return dataclasses.replace(self, fields=fields, ttl=newer.ttl if self.ttl is None else self.ttl)


def _ttl_from_json(raw: Mapping[str, Any]) -> float | None:
    """The default expiry of a stored schema (member ``ttl``, seconds; absent: none)."""
    ttl = raw.get("ttl")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise SchemaError(f"unreadable stored schema ttl: {ttl!r}")
    return float(ttl)


def _history_from_json(raw: Mapping[str, Any]) -> tuple[int, dict[str, str], frozenset[str]]:
    """The evolution history of a stored schema (members ``version``, ``renamed``, ``removed``; each may
    be absent, as in a schema stored before evolutions existed)."""
    version = raw.get("version", 0)
    renamed = raw.get("renamed", {})
    removed = raw.get("removed", [])
    if type(version) is not int or version < 0:
        raise SchemaError(f"unreadable stored schema version: {version!r}")
    if not isinstance(renamed, dict) or not all(
        isinstance(old, str) and isinstance(new, str) for old, new in renamed.items()
    ):
        raise SchemaError(f"unreadable stored schema renames: {renamed!r}")
    if not isinstance(removed, list) or not all(isinstance(name, str) for name in removed):
        raise SchemaError(f"unreadable stored schema removals: {removed!r}")
    return version, renamed, frozenset(removed)


_EXACT_TYPES: Final[Mapping[str, frozenset[type]]] = {
    "str": frozenset({str}),
    "int": frozenset({int}),
    "float": frozenset({int, float}),
    "bool": frozenset({bool}),
    "any": frozenset({str, int, float, bool}),
    "dict": frozenset(),
    "list": frozenset(),
}


_NO_TYPES: Final[frozenset[type]] = frozenset()
_CONTAINER_TYPES: Final[Mapping[str, frozenset[type]]] = {
    "dict": frozenset({dict}),
    "list": frozenset({list}),
    "any": frozenset({dict, list}),
}


def _choices_from_json(name: str, raw: Any) -> tuple[Any, ...] | None:
    """The choices of a stored field (absent: None)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(type(choice) in (str, int, float, bool) for choice in raw):
        raise SchemaError(f"unreadable stored schema choices of field {name!r}: {raw!r}", field=name)
    return tuple(raw)


def _exact_types(spec: FieldSpec) -> frozenset[type]:
    """The exact scalar types a field takes (``None``'s too if nullable); dicts and lists are walked. A
    field with choices has none: each value is checked against them."""
    exact = _EXACT_TYPES[spec.type] if spec.choices is None else frozenset()
    return exact | {type(None)} if spec.nullable else exact


def check_field_name(name: Any) -> None:
    """``SchemaError`` for a field name that cannot be an entity attribute."""
    if not isinstance(name, str) or not name or not is_utf8(name):
        raise SchemaError(f"field names must be non-empty strings, got {name!r}")
    if name in RESERVED:
        raise SchemaError(f"{name!r} is the entity's own key, not a field", field=name)
    if name.startswith("_") or "__" in name:
        raise SchemaError(f"field {name!r}: names may not start with '_' or contain '__'", field=name)
