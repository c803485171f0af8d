"""The lookup operators of queries (``exact``, ``lt``, ``in``, ``icontains``, ...).

``LOOKUPS`` maps each Django-style lookup name to a pure ``(actual, expected) -> bool`` function, where
``actual`` is the value found at a criterion's path or ``MISSING`` when the path is absent. Every function
answers ``False`` rather than raising on values of the wrong type, because entities of one collection may
disagree (a foreign writer, an ``any`` field). Equality compares ``freeze()`` keys (``core.values``), as
the indexes do. ``check_lookup_value()`` rejects an expected value that could never be meant (``in``
with a string, ``isnull`` with a non-bool) before any entity is looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from brainlessdb.core.values import MISSING, freeze, is_number
from brainlessdb.errors import QueryError

LOOKUP_SEP: Final = "__"


def _is_comparable(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str)
    return is_number(actual) and is_number(expected)


def _exact(actual: Any, expected: Any) -> bool:
    return actual is not MISSING and freeze(actual) == freeze(expected)


def _ne(actual: Any, expected: Any) -> bool:
    return not _exact(actual, expected)


def _lt(actual: Any, expected: Any) -> bool:
    return _is_comparable(actual, expected) and bool(actual < expected)


def _lte(actual: Any, expected: Any) -> bool:
    return _is_comparable(actual, expected) and bool(actual <= expected)


def _gt(actual: Any, expected: Any) -> bool:
    return _is_comparable(actual, expected) and bool(actual > expected)


def _gte(actual: Any, expected: Any) -> bool:
    return _is_comparable(actual, expected) and bool(actual >= expected)


def _in(actual: Any, expected: Any) -> bool:
    if actual is MISSING:
        return False
    key = freeze(actual)
    return any(key == freeze(candidate) for candidate in expected)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        key = freeze(expected)
        return any(freeze(element) == key for element in actual)
    if isinstance(actual, Mapping):
        try:
            return expected in actual
        except TypeError:  # an unhashable expected value is never a key
            return False
    return False


def _icontains(actual: Any, expected: Any) -> bool:
    if not isinstance(expected, str):
        return False
    if isinstance(actual, str):
        return expected.casefold() in actual.casefold()
    if isinstance(actual, list):
        folded = expected.casefold()
        return any(isinstance(element, str) and element.casefold() == folded for element in actual)
    return False


def _startswith(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)


def _endswith(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and isinstance(expected, str) and actual.endswith(expected)


def _isnull(actual: Any, expected: Any) -> bool:
    return (actual is None or actual is MISSING) == bool(expected)


LOOKUPS: Final[Mapping[str, Callable[[Any, Any], bool]]] = MappingProxyType(
    {
        "exact": _exact,
        "ne": _ne,
        "lt": _lt,
        "lte": _lte,
        "gt": _gt,
        "gte": _gte,
        "in": _in,
        "contains": _contains,
        "icontains": _icontains,
        "startswith": _startswith,
        "endswith": _endswith,
        "isnull": _isnull,
    }
)

_ORDERING: Final = frozenset({"lt", "lte", "gt", "gte"})
_STRING_ONLY: Final = frozenset({"startswith", "endswith", "icontains"})


def check_lookup_value(lookup: str, value: Any, key: str) -> None:
    """Raise ``QueryError`` when ``value`` is not a meaningful expected value for ``lookup``.

    Raises:
        QueryError: the lookup is unknown, or ``value`` could never match (``key`` names the criterion).
    """
    if lookup not in LOOKUPS:
        raise QueryError(f"{key!r}: unknown lookup {lookup!r}", key=key)
    if lookup == "in":
        if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
            raise QueryError(
                f"{key!r}: 'in' needs a list, tuple or set of values, not {type(value).__name__}", key=key
            )
    elif lookup == "isnull":
        if type(value) is not bool:
            raise QueryError(f"{key!r}: 'isnull' needs True or False, not {value!r}", key=key)
    elif lookup in _ORDERING:
        if not (isinstance(value, str) or is_number(value)):
            raise QueryError(
                f"{key!r}: {lookup!r} compares numbers or strings, not {type(value).__name__}", key=key
            )
    elif lookup in _STRING_ONLY and not isinstance(value, str):
        raise QueryError(f"{key!r}: {lookup!r} needs a string, not {type(value).__name__}", key=key)
