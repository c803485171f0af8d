"""Matching entities against parsed criteria (``query.Condition``).

``select`` matches many items in one pass per condition with the per-item loop in C: at 10,000 entities a
Python call per entity costs more than the whole plain-Python equivalent. ``compile_filter`` gives the
same answers item by item. Each fast path answers exactly as ``lookups.LOOKUPS`` defines the lookup (the
tests compare them). Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from itertools import compress, repeat
from operator import eq, is_, is_not, ne
from typing import Any, Final, TypeAlias, TypeVar, cast

from brainlessdb.core.query.lookups import LOOKUPS
from brainlessdb.core.query.plan import UUID_PATH, Condition, read_values, resolve_in, values_at
from brainlessdb.core.values import MISSING, freeze, is_number

T = TypeVar("T")

Predicate: TypeAlias = Callable[[str, Any], bool]
"""A compiled filter: called with an entity's uuid and data (its row, for conditions ``on_rows``)."""


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
    if path == UUID_PATH:

        def on_uuid(uuid: str, data: Mapping[str, Any]) -> bool:
            return test(uuid)

        return on_uuid
    first: str | int = path[0]
    if type(first) is int:
        return _compile_on_row(path, condition.lookup, condition.value, test)
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


def _compile_on_row(
    path: tuple[Any, ...], lookup: str, expected: Any, test: Callable[[Any], bool]
) -> Predicate:
    """The predicate of a condition on rows (its path starts at a position: see ``plan.on_rows``)."""
    position: int = path[0]
    rest = path[1:]
    if not rest:
        if lookup == "exact" and type(expected) is str:

            def exact_str(uuid: str, row: Any) -> bool:
                return position < len(row) and bool(row[position] == expected)

            return exact_str

        def on_field(uuid: str, row: Any) -> bool:
            return test(row[position] if position < len(row) else MISSING)

        return on_field

    def on_path(uuid: str, row: Any) -> bool:
        return test(resolve_in(row[position] if position < len(row) else MISSING, rest))

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
    in C: the values at the condition's path are read by ``map`` over ``itemgetter`` (``read_values``), and
    ``compress`` keeps the items whose value passes the test (``_mask``). A query over regular data makes
    no Python call per item for the commonest lookups.
    """
    result = list(items) if not conditions else items
    for condition in conditions:
        try:
            values = list(read_values(result, data_of, uuid_of, condition.path))
        except (KeyError, IndexError, TypeError):
            values = values_at(result, data_of, uuid_of, condition.path)
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
