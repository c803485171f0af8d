"""Sorting entities by parsed ``order_by`` keys (``query.OrderKey``): stable, ``None`` and missing values
last in both directions, any mix of kinds in a fixed total order. Everything here is pure.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from itertools import compress, repeat
from operator import ge, le, not_
from typing import Any, Final, TypeVar, cast

import msgspec

from brainlessdb.core.query.plan import UUID_PATH, OrderKey, read_values, values_at
from brainlessdb.core.values import MISSING

T = TypeVar("T")

_NONE_TYPE: Final = type(None)
_MISSING_TYPE: Final = type(MISSING)
_canonical = msgspec.json.Encoder(order="sorted")

PRUNE_ONE_KEY: Final = 100
PRUNE_KEYS: Final = 4
"""``order_first`` sorts only the items that can be among the first ``n`` when there are at least this many
times ``n`` items (by one key, by several); nearer to all of them, sorting all costs less than finding
which. Finding them costs a read of the first key's values and a heap of ``n``, about what one sort by one
natural key costs in C; a sort by several keys makes one sort per key (docs/performance.md)."""


def order(
    items: Collection[T],
    keys: Sequence[OrderKey],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    field_of: Callable[[Any], Callable[[T], Any]] | None = None,
) -> list[T]:
    """``items`` sorted stably by ``keys``: ``None`` and missing values last in both directions.

    Values of one kind compare naturally (bools as numbers); mixed kinds rank numbers, then strings, then
    anything else by its canonical JSON text, so no mix of types raises. ``data_of`` and ``uuid_of`` give an
    item's data and uuid (an ``operator.attrgetter`` keeps them at C speed); each is called once per item
    and key, and once more for a key whose values turn out irregular (absent, None, mixed kinds).
    ``field_of(step)``, if given, makes a function reading an item's top-level field at the first step of
    a key's path (a name, or a position for keys ``on_rows``; raising ``KeyError`` or ``IndexError`` where
    absent, or giving ``MISSING``): one written for the items' class reads faster than ``data_of`` can.
    """
    if not keys:
        return list(items)
    result = items
    # Stable sorts from the last key to the first give the lexicographic order over all keys. Each pass
    # stores only references: a list of per-item tuples would wake the cyclic GC, which then walks every
    # entity in memory (see docs/performance.md). No list of the items is made beyond what each sort
    # makes: each is a pass over them (reference counts).
    for key in reversed(keys):
        result = _sorted_by(result, data_of, uuid_of, key, field_of)
    return cast("list[T]", result)


def order_first(
    items: Collection[T],
    keys: Sequence[OrderKey],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    n: int,
    field_of: Callable[[Any], Callable[[T], Any]] | None = None,
) -> list[T]:
    """The first ``n`` items of ``order(items, keys, ...)``, exactly, without sorting all of them.

    The first key alone decides most of it: an item whose value at the first key comes after the ``n``-th
    smallest such value (in the key's order) has ``n`` items before it whatever the other keys say. So the
    values at the first key are read at C speed, a heap finds that ``n``-th value (the cut), and only the
    items up to the cut, ties included, are sorted by every key, in their original order (the sort is
    stable). None and absent values come last, so when fewer than ``n`` values are present, nothing is cut.
    """
    if n <= 0:
        return []
    if not keys or not prunes(keys, n, len(items)):
        return order(items, keys, data_of, uuid_of, field_of)[:n]
    first = keys[0]
    try:
        values = list(read_values(items, data_of, uuid_of, first.path))
    except (KeyError, IndexError, TypeError):
        values = values_at(items, data_of, uuid_of, first.path)
    kept = _up_to_cut(values, first.descending, n)
    if kept is not None:
        items = list(compress(items, kept))
    return order(items, keys, data_of, uuid_of, field_of)[:n]


def prunes(keys: Sequence[OrderKey], n: int, count: int) -> bool:
    """Whether ``order_first`` of ``n`` among ``count`` items sorts only some of them (else it sorts all)."""
    return n * (PRUNE_ONE_KEY if len(keys) == 1 else PRUNE_KEYS) <= count


def _up_to_cut(values: list[Any], descending: bool, n: int) -> list[bool] | None:
    """Per value, whether it sorts no later than the ``n``-th present value (``_sorted_by_values``'s order);
    None when fewer than ``n + 1`` values are present (every item may be among the first ``n``)."""
    kinds = set(map(type, values))
    absent = _NONE_TYPE in kinds or _MISSING_TYPE in kinds
    present = [value for value in values if value is not None and value is not MISSING] if absent else values
    if len(present) <= n:
        return None
    kinds.discard(_NONE_TYPE)
    kinds.discard(_MISSING_TYPE)
    natural = kinds <= {str} or (kinds <= {int, float, bool} and not _has_nan(present, kinds))
    ranks = present if natural else list(map(_mixed_rank, present))
    best = heapq.nlargest(n, ranks) if descending else heapq.nsmallest(n, ranks)
    cut = best[-1]
    within = ge if descending else le
    if natural and not absent:
        return list(map(within, values, repeat(cut)))
    rank = _same if natural else _mixed_rank
    return [value is not None and value is not MISSING and within(rank(value), cut) for value in values]


def _same(value: Any) -> Any:
    return value


def _sorted_by(
    items: Collection[T],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    key: OrderKey,
    field_of: Callable[[Any], Callable[[T], Any]] | None = None,
) -> list[T]:
    """``items`` sorted stably by their values at ``key.path``, in a new list.

    list.sort computes each key once, in list order (CPython and PyPy alike), so an iterator over the
    values hands every item its own value at C speed: no Python call per item, and no index list to map
    back. reverse=True keeps the sort stable.
    """
    if key.natural:
        # The schema says the values are of one naturally ordered kind, None or absent. When all are
        # present and not None, a plain sort gives the specified order, reading each value as the sort
        # asks for its key. Otherwise it raises: KeyError or TypeError for an absent value, TypeError for
        # None (it compares with nothing, itself included, and a sort of two or more items compares every
        # item). A value breaking the schema raises TypeError the same way, unless it is a list among
        # lists only (lists compare with lists): then the values are ranked as below, so that the order
        # of any items never depends on which others are sorted with them (``order_first`` relies on it).
        path = key.path
        try:
            if field_of is not None and len(path) == 1 and path != UUID_PATH:
                result = sorted(items, key=field_of(path[0]), reverse=key.descending)
            else:
                values = read_values(items, data_of, uuid_of, path)
                result = sorted(items, key=partial(next, values), reverse=key.descending)
            if not result or type(values_at(result[:1], data_of, uuid_of, path)[0]) is not list:
                return result
        except (KeyError, IndexError, TypeError):
            pass  # sorted() sorted a copy: items are as they were
    try:
        every_value = list(read_values(items, data_of, uuid_of, key.path))
    except (KeyError, IndexError, TypeError):
        every_value = values_at(items, data_of, uuid_of, key.path)
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
    """Whether some value is NaN, where ``kinds`` (the values' types) are numbers only."""
    if float not in kinds:
        return False
    try:
        return any(map(math.isnan, values))  # in C; bools and ints are never NaN
    except OverflowError:  # an int too large for a float
        return any(value != value for value in values if type(value) is float)


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
