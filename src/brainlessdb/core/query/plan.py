"""Queries over entities, parsed: criteria such as ``caller__city="Prague"`` or ``last_seen__lt=t`` become
conditions, and ``order_by`` keys such as ``"-priority"`` become order keys. Keys are split on
``LOOKUP_SEP``; a trailing registered lookup name is the operator, every other segment walks into nested
mappings, and the top-level ``uuid`` names the entity's own uuid (which its data does not hold). When the
collection's schema is known, a key that names no field, or that walks into a field that has nothing
inside it, is a ``QueryError`` at parse time, never a silently empty result. Parsing is separate from
matching (``filtering``) and sorting (``ordering``), so a query is validated once (and its parsed form
cached). This module also reads the values at a path of many items at once, for both. Everything here is
pure: it reads the mappings it is given and never changes them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, NamedTuple, TypeVar, cast

from brainlessdb.core.field_types import JSON_SCALARS, criterion_json
from brainlessdb.core.query.lookups import LOOKUP_SEP, LOOKUPS, check_lookup_value
from brainlessdb.core.values import MISSING
from brainlessdb.errors import QueryError

T = TypeVar("T")


UUID_FIELD: Final = "uuid"

# Schema types whose values have no named parts to walk into; resolve() never walks into lists either,
# so a path through one could only ever yield an empty answer.
_LEAF_TYPES: Final = frozenset({"str", "int", "float", "bool", "list"})
# Schema types whose values compare naturally with each other: one kind each, and never NaN (the schema
# refuses NaN, and JSON cannot carry it); int and float mix naturally.
_NATURAL_TYPES: Final = frozenset({"str", "int", "float", "bool"})
UUID_PATH: Final = (UUID_FIELD,)


class Condition(NamedTuple):
    """One criterion: the value at ``path`` compared by ``lookup`` with ``value``.

    A named tuple rather than a frozen dataclass: one is bound per criterion and query, and a frozen
    dataclass sets each field through ``object.__setattr__`` (see docs/performance.md).
    """

    key: str
    path: tuple[str, ...]
    lookup: str
    value: Any

    def matches(self, uuid: str, data: Mapping[str, Any]) -> bool:
        """True when the entity ``uuid`` holding ``data`` satisfies this condition."""
        return LOOKUPS[self.lookup](resolve(uuid, data, self.path), self.value)


_new_condition: Final = partial(tuple.__new__, Condition)
"""``Condition`` from one tuple of its fields, without the generated ``__new__``'s Python call."""


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One ``order_by`` key: the value at ``path``, ascending or descending.

    ``natural`` is set when the schema types the path's field ``str``, ``int``, ``float`` or ``bool`` (or
    the path is ``uuid``): its values are then of one kind that compares naturally, or ``None``, or absent.
    ``order`` then tries a plain sort first, which is exact because ``None`` and absent values cannot be
    compared and make it raise ``TypeError`` (see ``_sorted_by``).
    """

    key: str
    path: tuple[str, ...]
    descending: bool
    natural: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """Parsed criteria keys, without their values: depends on the keys and the schema only, so it is cached.

    ``steps`` holds ``(key, path, lookup)`` per criterion. ``exact_key`` is set when the plan is a single
    ``exact`` criterion on one top-level field (``find(channel_id=x)``, the commonest query): the criterion's
    key, with ``exact_path`` the field's path, so that ``find`` can answer from the field's index with one
    lookup and no ``Condition`` at all.
    """

    steps: tuple[tuple[str, tuple[str, ...], str], ...]
    exact_key: str | None = None
    exact_path: tuple[str, ...] = ()


def resolve(uuid: str, data: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` in an entity, or ``MISSING`` when a key is absent or a step is not a mapping."""
    if len(path) == 1 and path[0] == UUID_FIELD:
        return uuid
    return resolve_in(data, path)


def resolve_in(value: Any, path: Sequence[str | int]) -> Any:
    """The value at ``path`` inside ``value`` (no ``uuid`` special case), or ``MISSING``.

    A step may also be a position (an int) into a row (see ``on_rows``)."""
    for name in path:
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(name, MISSING)
        elif type(value) is tuple and type(name) is int:
            value = value[name] if name < len(value) else MISSING
        else:
            return MISSING
    return value


def parse_criteria(criteria: Mapping[str, Any], fields: Mapping[str, str] | None) -> tuple[Condition, ...]:
    """Validate keyword criteria and turn them into conditions.

    Args:
        criteria: ``{"caller__city": "Prague", "last_seen__lt": 1700000000.0}``.
        fields: the schema's field name → type name, or ``None`` when the collection has no schema yet
            (then any path is accepted).

    Raises:
        QueryError: an empty key or segment, an unknown field, a path into a field with nothing inside
            (``age__gtt`` on an int field: an unknown lookup), or a value the lookup cannot use.
    """
    return bind_criteria(plan_criteria(tuple(criteria), fields), criteria)


def plan_criteria(keys: Sequence[str], fields: Mapping[str, str] | None) -> Plan:
    """The parsed form of criteria keys: depends on the keys and the schema only, so it can be cached."""
    steps = []
    for key in keys:
        path = _split_key(key, "criterion")
        has_lookup = len(path) > 1 and path[-1] in LOOKUPS
        lookup = path.pop() if has_lookup else "exact"
        # Without a registered lookup, "age__gtt" most likely meant one: say so in the error.
        _check_path(key, path, fields, lookup_expected=not has_lookup and len(path) == 2)
        steps.append((key, tuple(path), lookup))
    if len(steps) == 1:
        only_key, only_path, only_lookup = steps[0]
        if only_lookup == "exact" and len(only_path) == 1 and only_path != UUID_PATH:
            return Plan(tuple(steps), only_key, only_path)
    return Plan(tuple(steps))


def bind_criteria(plan: Plan, criteria: Mapping[str, Any]) -> tuple[Condition, ...]:
    """The conditions of a plan with the criteria's values (checked against their lookups)."""
    conditions = []
    for key, path, lookup in plan.steps:
        value = criteria[key]
        if lookup == "in":
            check_lookup_value(lookup, value, key)
            # A one-shot iterator must survive being read once per entity.
            value = tuple(item if type(item) in JSON_SCALARS else criterion_json(item) for item in value)
        else:
            if type(value) not in JSON_SCALARS:
                value = criterion_json(value)  # an Enum, a datetime...: compared in its stored form
            if lookup != "exact":  # any value is a valid expected value for exact
                check_lookup_value(lookup, value, key)
        conditions.append(_new_condition((key, path, lookup, value)))
    return tuple(conditions)


def parse_order(keys: Sequence[str], fields: Mapping[str, str] | None) -> tuple[OrderKey, ...]:
    """Validate ``order_by`` keys (``"priority"``, ``"-created_at"``, ``"caller__name"``).

    Raises:
        QueryError: a key that is not a string, is empty or a bare ``"-"``, names an unknown field, walks
            into a field with nothing inside, or ends with a lookup name.
    """
    if isinstance(keys, str):
        raise TypeError("order keys must be a sequence of strings, not one string")
    result = []
    for key in keys:
        if not isinstance(key, str):
            raise QueryError(f"order key {key!r} is not a string", key=None)
        descending = key.startswith("-")
        path = _split_key(key[1:] if descending else key, "order key", key)
        if len(path) > 1 and path[-1] in LOOKUPS:
            raise QueryError(f"{key!r}: an order key cannot use the lookup {path[-1]!r}", key=key)
        _check_path(key, path, fields, lookup_expected=False)
        result.append(OrderKey(key, tuple(path), descending, _is_natural(path, fields)))
    return tuple(result)


def _is_natural(path: Sequence[str], fields: Mapping[str, str] | None) -> bool:
    """True when the schema says every value at ``path`` is one scalar kind, ``None`` or absent."""
    if len(path) != 1:
        return False
    if path[0] == UUID_FIELD:
        return True
    return fields is not None and fields.get(path[0]) in _NATURAL_TYPES


def _split_key(text: str, what: str, key: str | None = None) -> list[str]:
    key = text if key is None else key
    if not isinstance(text, str):
        raise QueryError(f"{what} {text!r} is not a string", key=None)
    path = text.split(LOOKUP_SEP)
    if "" in path:
        raise QueryError(f"{what} {key!r} has an empty part", key=key)
    return path


def _check_path(
    key: str, path: Sequence[str], fields: Mapping[str, str] | None, *, lookup_expected: bool
) -> None:
    first = path[0]
    if first == UUID_FIELD:
        kind = "str"
    elif fields is None:
        return
    elif first not in fields:
        raise QueryError(f"{key!r}: unknown field {first!r}", key=key)
    else:
        kind = fields[first]
    if len(path) == 1 or kind not in _LEAF_TYPES:
        return
    if lookup_expected:
        raise QueryError(
            f"{key!r}: unknown lookup {path[1]!r} (field {first!r} is {kind}, with nothing inside)", key=key
        )
    raise QueryError(f"{key!r}: field {first!r} is {kind} and has no {path[1]!r} inside", key=key)


def read_values(
    items: Iterable[T],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    path: tuple[str, ...],
) -> Iterator[Any]:
    """The value at ``path`` of each item, lazily, at C speed; raises for data ``values_at`` must read.

    Raises (when consumed):
        KeyError: an item lacks a key of the path.
        TypeError: a step meets a value that is no mapping (None, a number, a str, a list).
    Entity data and the dicts in it are plain dicts or ``TrackedDict`` (neither has ``__missing__``), so
    where no error is raised, ``value[name]`` reads what ``resolve`` does.
    """
    if path == UUID_PATH:
        return map(uuid_of, items)
    values: Iterator[Any] = map(data_of, items)
    for name in path:
        values = map(itemgetter(name), values)
    return values


def values_at(
    items: Iterable[T],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    path: tuple[str, ...],
) -> list[Any]:
    """The value at ``path`` of each item, in order, ``MISSING`` where absent (what ``resolve`` gives)."""
    if path == UUID_PATH:
        return list(map(uuid_of, items))
    values: list[Any] = list(map(data_of, items))
    for name in path:
        values = _step(values, name)
    return values


_dict_get: Final = dict.get


def _step(values: list[Any], name: str | int) -> list[Any]:
    """``value.get(name, MISSING)`` for each value that is a mapping, ``MISSING`` for the others (and
    the value at a position of each row, for a position: see ``on_rows``)."""
    if isinstance(name, int):
        return [value[name] if name < len(value) else MISSING for value in values]
    try:
        # Unbound, dict.get reads at C speed, but raises TypeError for anything that is not a dict.
        return list(map(_dict_get, values, repeat(name), repeat(MISSING)))
    except TypeError:
        return [
            value.get(name, MISSING) if type(value) is dict or isinstance(value, Mapping) else MISSING
            for value in values
        ]


def on_rows(conditions: Iterable[Condition], position: Callable[[str], int]) -> tuple[Condition, ...]:
    """``conditions`` on entities whose values are rows (see ``core.rows``): the first step of each path
    (a field) becomes its ``position`` in the rows, so that ``read_values`` reads it at C speed.

    Such conditions are for the functions that take ``data_of`` (``filtering.select``,
    ``filtering.compile_filter``, ``ordering``), given a ``data_of`` that returns an item's row; indexes
    take conditions by field names.
    """
    return tuple(
        condition
        if condition.path == UUID_PATH
        else condition._replace(path=_row_path(condition.path, position))
        for condition in conditions
    )


def keys_on_rows(keys: Iterable[OrderKey], position: Callable[[str], int]) -> tuple[OrderKey, ...]:
    """``keys`` on entities whose values are rows, as ``on_rows`` makes conditions."""
    return tuple(
        key if key.path == UUID_PATH else dataclasses.replace(key, path=_row_path(key.path, position))
        for key in keys
    )


def _row_path(path: tuple[str, ...], position: Callable[[str], int]) -> tuple[str, ...]:
    # A position where a field name was: the steps that read a path take either (see ``resolve_in``).
    return cast("tuple[str, ...]", (position(path[0]), *path[1:]))
