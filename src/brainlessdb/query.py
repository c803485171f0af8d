"""Queries over entities: criteria such as ``caller__city="Prague"`` or ``last_seen__lt=t`` become
predicates, and ``order_by`` keys such as ``"-priority"`` become a stable multi-key sort. Keys are split on
``LOOKUP_SEP``; a trailing registered lookup name is the operator, every other segment walks into nested
mappings, and the top-level ``uuid`` names the entity's own uuid (which its data does not hold). When the
collection's schema is known, a key that names no field, or that walks into a field that has nothing
inside it, is a ``QueryError`` at parse time, never a silently empty result. Parsing is separate from
matching, so a query is validated once (and its parsed form cached). Many items are matched and sorted
a pass per criterion or key with the per-item loop in C (``select``, ``order``): at 10,000 entities a
Python call per entity costs more than the whole plain-Python equivalent. ``compile_filter`` gives the
same answers item by item. Everything here is pure: it reads the mappings it is given and never changes
them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import eq, is_, is_not, itemgetter, ne, not_
from typing import Any, Final, NamedTuple, TypeAlias, TypeVar, cast

import msgspec

from brainlessdb.errors import QueryError
from brainlessdb.lookups import LOOKUP_SEP, LOOKUPS, MISSING, check_lookup_value, freeze, is_number

T = TypeVar("T")

Predicate: TypeAlias = Callable[[str, Mapping[str, Any]], bool]
"""A compiled filter: called with an entity's uuid and data."""

UUID_FIELD: Final = "uuid"

# Schema types whose values have no named parts to walk into; resolve() never walks into lists either,
# so a path through one could only ever yield an empty answer.
_LEAF_TYPES: Final = frozenset({"str", "int", "float", "bool", "list"})
# Schema types whose values compare naturally with each other: one kind each, and never NaN (the schema
# refuses NaN, and JSON cannot carry it); int and float mix naturally.
_NATURAL_TYPES: Final = frozenset({"str", "int", "float", "bool"})
_UUID_PATH: Final = (UUID_FIELD,)
_NONE_TYPE: Final = type(None)
_MISSING_TYPE: Final = type(MISSING)
_canonical = msgspec.json.Encoder(order="sorted")


class Condition(NamedTuple):
    """One criterion: the value at ``path`` compared by ``lookup`` with ``value``.

    A named tuple rather than a frozen dataclass: one is bound per criterion and query, and a tuple is
    built several times faster (a frozen dataclass sets each field through ``object.__setattr__``).
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


def resolve_in(value: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` inside ``value`` (no ``uuid`` special case), or ``MISSING``."""
    for name in path:
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(name, MISSING)
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
        if only_lookup == "exact" and len(only_path) == 1 and only_path != _UUID_PATH:
            return Plan(tuple(steps), only_key, only_path)
    return Plan(tuple(steps))


def bind_criteria(plan: Plan, criteria: Mapping[str, Any]) -> tuple[Condition, ...]:
    """The conditions of a plan with the criteria's values (checked against their lookups)."""
    conditions = []
    for key, path, lookup in plan.steps:
        value = criteria[key]
        if lookup == "in":
            check_lookup_value(lookup, value, key)
            value = tuple(value)  # a one-shot iterator must survive being read once per entity
        elif lookup != "exact":  # any value is a valid expected value for exact
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


def compile_filter(conditions: Sequence[Condition]) -> Predicate:
    """One predicate that is true when every condition holds (always true for no conditions).

    For one item at a time; ``select`` answers the same for many items at once, faster.
    """
    predicates = [_compile_condition(condition) for condition in conditions]
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates

        def both(uuid: str, data: Mapping[str, Any]) -> bool:
            return first(uuid, data) and second(uuid, data)

        return both

    def every(uuid: str, data: Mapping[str, Any]) -> bool:
        for predicate in predicates:  # noqa: SIM110 - all() would build a generator per entity
            if not predicate(uuid, data):
                return False
        return True

    return every


def _always(uuid: str, data: Mapping[str, Any]) -> bool:
    return True


def _compile_condition(condition: Condition) -> Predicate:
    test = _compile_test(condition.lookup, condition.value)
    path = condition.path
    if path == _UUID_PATH:

        def on_uuid(uuid: str, data: Mapping[str, Any]) -> bool:
            return test(uuid)

        return on_uuid
    if len(path) == 1:
        name = path[0]
        expected = condition.value
        if condition.lookup == "exact" and type(expected) is str:
            # The commonest criterion (state="waiting"): a str equals only an equal str, so no freeze().
            def exact_str(uuid: str, data: Mapping[str, Any]) -> bool:
                return bool(data.get(name, MISSING) == expected)

            return exact_str

        def on_field(uuid: str, data: Mapping[str, Any]) -> bool:
            return test(data.get(name, MISSING))

        return on_field

    if len(path) == 2:
        outer, inner = path

        # The commonest nested criterion (caller__city=...): the walk of resolve_in, unrolled.
        def on_pair(uuid: str, data: Mapping[str, Any]) -> bool:
            value = data.get(outer, MISSING)
            if type(value) is dict or isinstance(value, Mapping):
                return test(value.get(inner, MISSING))
            return test(MISSING)

        return on_pair

    def on_path(uuid: str, data: Mapping[str, Any]) -> bool:
        return test(resolve_in(data, path))

    return on_path


def _compile_test(lookup: str, expected: Any) -> Callable[[Any], bool]:
    # Each fast path below must answer exactly as LOOKUPS[lookup] does; the tests compare them.
    if lookup == "exact" or lookup == "ne":
        equal = _compile_exact(expected)
        if lookup == "exact":
            return equal
        return lambda actual: not equal(actual)
    if lookup == "in":
        keys = frozenset(map(freeze, expected))
        return lambda actual: actual is not MISSING and freeze(actual) in keys
    if lookup == "isnull":
        if expected:
            return lambda actual: actual is None or actual is MISSING
        return lambda actual: actual is not None and actual is not MISSING
    if lookup == "startswith" and isinstance(expected, str):
        return lambda actual: isinstance(actual, str) and actual.startswith(expected)
    if lookup == "endswith" and isinstance(expected, str):
        return lambda actual: isinstance(actual, str) and actual.endswith(expected)
    function = LOOKUPS[lookup]
    return lambda actual: function(actual, expected)


def _compile_exact(expected: Any) -> Callable[[Any], bool]:
    if expected is None:
        return lambda actual: actual is None
    if expected is True or expected is False:
        return lambda actual: actual is expected
    if type(expected) is str:
        return lambda actual: bool(actual == expected)
    if is_number(expected) and expected == expected:
        # Numbers equal across int and float, but a bool is never a number here (True is not 1).
        return lambda actual: actual is not True and actual is not False and bool(actual == expected)
    key = freeze(expected)
    return lambda actual: actual is not MISSING and freeze(actual) == key


def select(
    items: Collection[T],
    conditions: Sequence[Condition],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
) -> list[T]:
    """The items matching every condition, in their order.

    Gives exactly what ``compile_filter`` gives item by item, but in one pass per condition with the loop
    in C: the values at the condition's path are read by ``map`` over ``itemgetter`` (``_read``), and
    ``compress`` keeps the items whose value passes the test (``_mask``). A query over regular data makes
    no Python call per item for the commonest lookups.
    """
    result = list(items) if not conditions else items
    for condition in conditions:
        try:
            values = list(_read(result, data_of, uuid_of, condition.path))
        except (KeyError, TypeError):
            values = _values_at(result, data_of, uuid_of, condition.path)
        result = list(compress(result, _mask(condition.lookup, condition.value, values)))
        if not result:
            break
    return cast("list[T]", result)


def _mask(lookup: str, expected: Any, values: list[Any]) -> Iterable[Any]:
    """Truthy where a value passes ``lookup`` against ``expected``, exactly as ``LOOKUPS[lookup]`` answers."""
    if type(expected) is str:
        # A str equals only an equal str (never a number, a container or MISSING): == answers as the
        # freeze() keys of exact do, in C.
        if lookup == "exact":
            return map(eq, values, repeat(expected))
        if lookup == "ne":
            return map(ne, values, repeat(expected))
    elif expected is None or expected is True or expected is False:
        # None, True and False equal only themselves (True is not 1).
        if lookup == "exact":
            return map(is_, values, repeat(expected))
        if lookup == "ne":
            return map(is_not, values, repeat(expected))
    if lookup in _STRING_LOOKUPS:
        answers = _answers_by_value(lookup, expected, values)
        if answers is not None:
            return map(answers.__getitem__, values)
        if type(expected) is str and (lookup == "startswith" or lookup == "endswith"):
            method = str.startswith if lookup == "startswith" else str.endswith
            try:
                # The unbound method raises TypeError for anything but a str (None, a number, MISSING, a
                # list), where the lookup answers False; the general test sorts those out.
                return list(map(method, values, repeat(expected)))
            except TypeError:
                pass
    return map(_compile_test(lookup, expected), values)


_STRING_LOOKUPS: Final = frozenset({"startswith", "endswith", "contains", "icontains"})
"""Lookups that give the same answer for equal hashable values (only a str can pass them)."""
_FEW_DISTINCT: Final = 4
"""``_answers_by_value`` pays off when each distinct value occurs at least this often on average."""


def _answers_by_value(lookup: str, expected: Any, values: list[Any]) -> dict[Any, bool] | None:
    """The lookup's answer for each distinct value, when values repeat enough for that to pay off.

    Many fields hold a few values many times (a city, a state): testing each distinct value once, in
    Python, then looking every value up in C costs a fraction of testing every value. Values that are equal
    as dict keys get one answer, which is exact for the string lookups only: equal strs pass alike, and
    every other hashable value (1, 1.0 and True are one key) fails them all. None when a value is
    unhashable (a dict or a list: the lookups look into those) or most values are distinct.
    """
    try:
        distinct = set(values)
    except TypeError:
        return None
    if len(distinct) * _FEW_DISTINCT > len(values):
        return None
    test = LOOKUPS[lookup]
    return {value: test(value, expected) for value in distinct}


def _read(
    items: Iterable[T],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    path: tuple[str, ...],
) -> Iterator[Any]:
    """The value at ``path`` of each item, lazily, at C speed; raises for data ``_values_at`` must read.

    Raises (when consumed):
        KeyError: an item lacks a key of the path.
        TypeError: a step meets a value that is no mapping (None, a number, a str, a list).
    Entity data and the dicts in it are plain dicts or ``TrackedDict`` (neither has ``__missing__``), so
    where no error is raised, ``value[name]`` reads what ``resolve`` does.
    """
    if path == _UUID_PATH:
        return map(uuid_of, items)
    values: Iterator[Any] = map(data_of, items)
    for name in path:
        values = map(itemgetter(name), values)
    return values


def order(
    items: Collection[T],
    keys: Sequence[OrderKey],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    field_of: Callable[[str], Callable[[T], Any]] | None = None,
) -> list[T]:
    """``items`` sorted stably by ``keys``: ``None`` and missing values last in both directions.

    Values of one kind compare naturally (bools as numbers); mixed kinds rank numbers, then strings, then
    anything else by its canonical JSON text, so no mix of types raises. ``data_of`` and ``uuid_of`` give an
    item's data and uuid (an ``operator.attrgetter`` keeps them at C speed); each is called once per item
    and key, and once more for a key whose values turn out irregular (absent, None, mixed kinds).
    ``field_of(name)``, if given, makes a function reading an item's top-level field ``name`` (raising
    ``KeyError`` where absent): one written for the items' class reads faster than ``data_of`` can.
    """
    if not keys:
        return list(items)
    result = items
    # Stable sorts from the last key to the first give the lexicographic order over all keys. Each pass
    # stores only references: a list of per-item tuples would wake the cyclic GC, which then walks every
    # entity in memory (that alone tripled the time of a 100k-entity sort). Each list of the items costs
    # a pass over them (reference counts), so none is made beyond what each sort makes.
    for key in reversed(keys):
        result = _sorted_by(result, data_of, uuid_of, key, field_of)
    return cast("list[T]", result)


def _values_at(
    items: Iterable[T],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    path: tuple[str, ...],
) -> list[Any]:
    """The value at ``path`` of each item, in order, ``MISSING`` where absent (what ``resolve`` gives)."""
    if path == _UUID_PATH:
        return list(map(uuid_of, items))
    values: list[Any] = list(map(data_of, items))
    for name in path:
        values = _step(values, name)
    return values


_dict_get: Final = dict.get


def _step(values: list[Any], name: str) -> list[Any]:
    """``value.get(name, MISSING)`` for each value that is a mapping, ``MISSING`` for the others."""
    try:
        # Unbound, dict.get reads at C speed, but raises TypeError for anything that is not a dict.
        return list(map(_dict_get, values, repeat(name), repeat(MISSING)))
    except TypeError:
        return [
            value.get(name, MISSING) if type(value) is dict or isinstance(value, Mapping) else MISSING
            for value in values
        ]


def _sorted_by(
    items: Collection[T],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    key: OrderKey,
    field_of: Callable[[str], Callable[[T], Any]] | None = None,
) -> list[T]:
    """``items`` sorted stably by their values at ``key.path``, in a new list.

    list.sort computes each key once, in list order (CPython and PyPy alike), so an iterator over the
    values hands every item its own value at C speed: no Python call per item, and no index list to map
    back (which cost as much as the sort). reverse=True keeps the sort stable.
    """
    if key.natural:
        # The schema says the values are of one naturally ordered kind, None or absent. When all are
        # present and not None, a plain sort gives the specified order, reading each value as the sort
        # asks for its key. Otherwise it raises: KeyError or TypeError for an absent value, TypeError for
        # None (it compares with nothing, itself included, and a sort of two or more items compares every
        # item). A value breaking the schema raises TypeError the same way, unless it is a list among
        # lists only, which the schema rules out.
        path = key.path
        try:
            if field_of is not None and len(path) == 1 and path != _UUID_PATH:
                return sorted(items, key=field_of(path[0]), reverse=key.descending)
            values = _read(items, data_of, uuid_of, path)
            return sorted(items, key=partial(next, values), reverse=key.descending)
        except (KeyError, TypeError):
            pass  # sorted() sorted a copy: items are as they were
    try:
        every_value = list(_read(items, data_of, uuid_of, key.path))
    except (KeyError, TypeError):
        every_value = _values_at(items, data_of, uuid_of, key.path)
    return _sorted_by_values(items, every_value, key.descending)


def _sorted_by_values(items: Collection[T], values: list[Any], descending: bool) -> list[T]:
    """``items`` sorted by ``values`` (the value of each item at the same position) as ``order`` specifies."""
    kinds = set(map(type, values))
    present = list(items)
    absent: list[T] = []
    if _NONE_TYPE in kinds or _MISSING_TYPE in kinds:
        kinds.discard(_NONE_TYPE)
        kinds.discard(_MISSING_TYPE)
        is_present = [value is not None and value is not MISSING for value in values]
        absent = list(compress(present, map(not_, is_present)))
        present = list(compress(present, is_present))
        values = list(compress(values, is_present))
    if not (kinds <= {str} or (kinds <= {int, float, bool} and not _has_nan(values, kinds))):
        values = list(map(_mixed_rank, values))
    present.sort(key=partial(next, iter(values)), reverse=descending)
    present.extend(absent)
    return present


def _has_nan(values: list[Any], kinds: set[type]) -> bool:
    return float in kinds and any(value != value for value in values if type(value) is float)


def _mixed_rank(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)):
        if value != value:
            return (1, 0)  # NaN: after every number, so the order stays total
        return (0, value)
    if isinstance(value, str):
        return (2, value)
    return (3, _canonical_text(value))


def _canonical_text(value: Any) -> bytes:
    try:
        return _canonical.encode(value)
    except (TypeError, ValueError, msgspec.EncodeError):
        # Not JSON at all; repr is still a fixed text, which is all a total order needs.
        return repr(value).encode()
