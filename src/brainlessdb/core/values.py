"""JSON values as the core sees them: the ``MISSING`` sentinel, canonical keys, and the one JSON check.

``MISSING`` stands for a value that is absent (a field an entity does not have, a path that leads
nowhere), as distinct from a present ``None``; it is the ``old`` of a field new to an entity in every
``Change`` event, and what lookups see at a missing path. ``freeze()`` turns a JSON-like value into the
hashable key that both ``exact`` lookups and the indexes compare, so an indexed answer always equals a
full scan: ``True`` is not ``1``, while ``1`` and ``1.0`` are the same number. ``copy_json()`` is the one
walk that checks a value can be stored as JSON and copies it (``check_json`` when no copy is needed).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from typing import Any, Final

from brainlessdb.errors import SchemaError


class _Missing(enum.Enum):
    """The type of ``MISSING``; an enum so the sentinel survives copy and pickle as the same object."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __str__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""The value of a path that is not present in an entity (distinct from a present ``None``)."""

# Tags lead the tuples freeze() builds. A frozen value is never a bare tuple otherwise (user tuples are
# frozen as lists), so a tagged tuple cannot collide with anything a user stores.
_DICT_TAG: Final = "d"
_LIST_TAG: Final = "l"
_REPR_TAG: Final = "r"
_TRUE_KEY: Final = ("b", True)
_FALSE_KEY: Final = ("b", False)
# NaN is unequal to itself, which would make an indexed answer differ from a scan; one key for all NaNs.
_NAN_KEY: Final = ("nan",)


def freeze(value: Any) -> Hashable:
    """The canonical hashable key of a JSON-like value: equal keys iff equal JSON values (bool is not int)."""
    cls = type(value)
    if cls is str or cls is int or value is None:
        scalar: Hashable = value
        return scalar
    if cls is float:
        number: float = value
        return number if number == number else _NAN_KEY
    if cls is bool:
        return _TRUE_KEY if value else _FALSE_KEY
    if cls is dict:
        return _freeze_mapping(value)
    if cls is list or cls is tuple:
        return (_LIST_TAG, tuple(map(freeze, value)))
    return _freeze_other(value)


def _freeze_mapping(value: Mapping[Any, Any]) -> Hashable:
    items = [(key if type(key) is str else freeze(key), freeze(item)) for key, item in value.items()]
    try:
        items.sort(key=_first)
    except TypeError:
        # Only non-JSON mappings get here (keys of mixed types); any fixed order keeps the key canonical.
        items.sort(key=_first_repr)
    return (_DICT_TAG, tuple(items))


def _first(item: tuple[Any, Any]) -> Any:
    return item[0]


def _first_repr(item: tuple[Any, Any]) -> tuple[str, str]:
    return type(item[0]).__name__, repr(item[0])


def _freeze_other(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return _freeze_mapping(value)
    if isinstance(value, (list, tuple)):
        return (_LIST_TAG, tuple(map(freeze, value)))
    try:
        hash(value)
    except TypeError:
        return (_REPR_TAG, repr(value))
    hashable: Hashable = value
    return hashable


def is_number(value: Any) -> bool:
    """True for an int or a float, but not for a bool."""
    cls = type(value)
    return cls is int or cls is float or (isinstance(value, (int, float)) and cls is not bool)


JSON_TYPE_NAMES: Final[Mapping[type, str]] = {
    bool: "bool",  # before int: a bool is an int to isinstance()
    int: "int",
    float: "float",
    str: "str",
    dict: "dict",
    list: "list",
}
"""The schema type name of each JSON value type (``None`` aside: a null tells no type)."""


def json_type(value: Any) -> str:
    """The schema type name of a JSON-like value (``"any"`` for None)."""
    if value is None:
        return "any"
    for kind, name in JSON_TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    raise SchemaError(f"unsupported value type {type(value).__name__}")


def check_json(name: str, value: Any) -> None:
    """``SchemaError`` unless ``value`` is JSON-like all the way down (str keys, no NaN, finite depth)."""
    copy_json(name, value)


def copy_json(name: str, value: Any, _depth: int = 0) -> Any:
    """A plain deep copy of a JSON-like value (tracked dicts and lists become plain ones); ``SchemaError``
    unless it is JSON-like all the way down (str keys, no NaN or infinity, no lone surrogates, finite
    depth). One walk both checks and copies."""
    kind = type(value)
    if kind is dict or kind is list:
        if _depth > 64:
            raise SchemaError(f"field {name!r} is nested too deeply", field=name)
        if kind is list:
            return [copy_json(name, item, _depth + 1) for item in value]
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not (type(key) is str and key.isascii()) and not (isinstance(key, str) and is_utf8(key)):
                raise SchemaError(f"field {name!r}: dict keys must be strings, got {key!r}", field=name)
            kind = type(item)
            if (kind is str and item.isascii()) or kind is int or kind is bool or item is None:
                out[key] = item
            else:
                out[key] = copy_json(name, item, _depth + 1)
        return out
    if kind is str:
        if not value.isascii() and not is_utf8(value):
            raise surrogate_error(name)
        return value
    if value is None or kind is int or kind is bool:
        return value
    if isinstance(value, float):
        if value - value != 0.0:
            raise not_finite_error(name, value)
        return value
    if isinstance(value, int):
        return value  # an int subclass (IntEnum): stored as its number
    if isinstance(value, str):
        if not is_utf8(value):
            raise surrogate_error(name)
        return value
    if isinstance(value, (dict, list)):
        # A subclass (a tracked dict or list, most likely): copied as the plain container.
        return copy_json(name, dict(value) if isinstance(value, dict) else list(value), _depth)
    raise SchemaError(
        f"field {name!r}: {type(value).__name__} values cannot be stored (use JSON types)", field=name
    )


def surrogate_error(name: str) -> SchemaError:
    return SchemaError(f"field {name!r}: a string with lone surrogates cannot be stored", field=name)


def not_finite_error(name: str, value: float) -> SchemaError:
    return SchemaError(f"field {name!r}: {value} cannot be stored as JSON", field=name)


def is_utf8(text: str) -> bool:
    """False for a string UTF-8 cannot encode (lone surrogates): JSON could not store it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
