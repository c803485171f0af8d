"""Lazy equality indexes over one collection: ``freeze(value at path)`` → the uuids holding that value.

An index for a path is built from the collection's entities the first time an ``exact`` or ``in``
criterion on that path is asked, and from then on kept current through ``on_add``, ``on_remove`` and
``on_change``, which the collection calls for every change it makes. Keys are ``freeze()`` keys, the same
ones ``exact`` compares, so an answer through an index always equals a full scan, and dict or list values
index like any other. Entities where the path is absent are not indexed. A bucket holding a single uuid
stores the bare string instead of a one-element set: most indexed fields (channel ids, tokens) are
unique, and a one-element set costs some 200 bytes where the string costs none (it is shared).

The set also keeps the last few whole-collection orders ``order_by`` made (``kept_order``/``keep_order``),
dropped as soon as an entity is added or removed or a field they read changes: sorting a large collection
costs a Python call per entity, and an unchanged collection asked again in the same order needs none.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Final, TypeAlias

from brainlessdb.core.query.lookups import LOOKUP_SEP
from brainlessdb.core.query.plan import UUID_FIELD, Condition, resolve_in
from brainlessdb.core.rows import Layout, Row
from brainlessdb.core.values import MISSING, freeze

ORDERS_KEPT: Final = 4
"""The whole-collection orders kept at most (the oldest is dropped for a new one): each holds a list of
every entity, 8 bytes per entity."""

INDEXED_LOOKUPS: Final = frozenset({"exact", "in"})
"""Lookups that ``candidates`` answers exactly: conditions using them need no further check."""

Path: TypeAlias = tuple[str, ...]
Bucket: TypeAlias = str | set[str]
Source: TypeAlias = Callable[[], Iterable[tuple[str, Row]]]
"""Gives every ``(uuid, row)`` of the collection."""
Index: TypeAlias = dict[Hashable, Bucket]


class IndexSet:
    """The equality indexes of one collection, built lazily per path."""

    __slots__ = ("_indexed", "_indexes", "_layout", "_orders", "fields")

    def __init__(self, layout: Layout) -> None:
        self._layout = layout  # where the entities' rows hold each field
        self._indexes: dict[Path, Index] = {}
        self._indexed: set[str] = set()  # the top-level fields some index reads
        self._orders: dict[Hashable, tuple[frozenset[str], list[Any]]] = {}
        self.fields: set[str] = set()
        """The top-level fields some index or kept order reads (to be read only): a change of any other
        field is no business of this set, and needs no ``on_change`` call."""

    def __repr__(self) -> str:
        return f"<IndexSet [{', '.join(LOOKUP_SEP.join(path) for path in self._indexes)}]>"

    @property
    def paths(self) -> list[Path]:
        """The paths indexed so far, in the order they were built."""
        return list(self._indexes)

    def covers(self, field: str) -> bool:
        """True when some index reads the top-level ``field``, so its changes must come with the old value."""
        return field in self._indexed

    def kept_order(self, key: Hashable) -> list[Any] | None:
        """The whole collection in the order ``key`` names, as ``keep_order`` was given it, if no entity
        was added or removed and none of the fields it reads changed since; else None. Only to be read."""
        kept = self._orders.get(key)
        return None if kept is None else kept[1]

    def keep_order(self, key: Hashable, fields: Iterable[str], ordered: list[Any]) -> None:
        """Keep ``ordered``, every entity of the collection in the order ``key`` names (an order that only
        the values of the top-level ``fields`` decide), until it may no longer be that order. The list is
        kept as it is: the caller must not change it afterwards."""
        if key not in self._orders and len(self._orders) >= ORDERS_KEPT:
            del self._orders[next(iter(self._orders))]
        read = frozenset(fields)
        self._orders[key] = (read, ordered)
        self.fields.update(read)

    def candidates(self, conditions: Sequence[Condition], source: Source) -> set[str] | None:
        """The uuids that can match: the intersection of every ``exact`` and ``in`` condition's answer.

        A missing index is built from ``source()`` (every ``(uuid, row)`` of the collection) on first use.
        ``uuid`` conditions are answered without an index, so the result may name uuids the collection
        does not hold; the caller skips those and checks the remaining conditions itself.

        Returns:
            ``None`` when no condition can use an index. Otherwise a set the caller must only read: with a
            single indexed condition it is the index's own bucket (O(1), no copy), valid until the next
            ``on_*`` call.
        """
        answers: list[set[str]] = []
        for condition in conditions:
            if condition.lookup == "exact":
                answer = self._exact(condition, source)
            elif condition.lookup == "in":
                answer = self._any_of(condition, source)
            else:
                continue
            if not answer:
                return set()
            answers.append(answer)
        if not answers:
            return None
        if len(answers) == 1:
            return answers[0]
        answers.sort(key=len)
        return answers[0].intersection(*answers[1:])

    def first(self, path: Path, value: Any, source: Source) -> str | None:
        """A uuid holding ``value`` at ``path``, or None: ``find``'s answer to one ``exact`` criterion.

        Gives the first uuid of what ``candidates`` gives for that one condition (the index is built on
        first use the same way), without making a set for a unique value or a condition object: ``find``
        needs one entity, and this lookup is most of its time. ``path`` must not be ``("uuid",)``.
        """
        index = self._indexes.get(path)
        if index is None:
            index = self._index(path, source)
        # freeze() of a str is the str itself: skip the call for the commonest key.
        bucket = index.get(value if type(value) is str else freeze(value))
        if bucket is None or isinstance(bucket, str):
            return bucket
        for uuid in bucket:
            return uuid
        return None  # pragma: no cover - empty buckets are removed

    def _exact(self, condition: Condition, source: Source) -> set[str]:
        if condition.path == (UUID_FIELD,):
            value = condition.value
            return {value} if isinstance(value, str) else set()
        bucket = self._index(condition.path, source).get(freeze(condition.value))
        if bucket is None:
            return set()
        if isinstance(bucket, str):
            return {bucket}
        return bucket

    def _any_of(self, condition: Condition, source: Source) -> set[str]:
        if condition.path == (UUID_FIELD,):
            return {value for value in condition.value if isinstance(value, str)}
        index = self._index(condition.path, source)
        answer: set[str] = set()
        for key in set(map(freeze, condition.value)):
            bucket = index.get(key)
            if bucket is None:
                continue
            if isinstance(bucket, str):
                answer.add(bucket)
            else:
                answer.update(bucket)
        return answer

    def _index(self, path: Path, source: Source) -> Index:
        index = self._indexes.get(path)
        if index is None:
            index = _build(self._layout, path, source)
            self._indexes[path] = index
            self._indexed.add(path[0])
            self.fields.add(path[0])
        return index

    def on_add(self, uuid: str, row: Row) -> None:
        """Index a new entity, holding ``row``."""
        if self._orders:
            self._orders.clear()
        for path, index in self._indexes.items():
            _insert(index, uuid, _resolve(self._layout, row, path))

    def on_remove(self, uuid: str, row: Row) -> None:
        """Forget an entity; ``row`` must be what it held when last indexed."""
        if self._orders:
            self._orders.clear()
        for path, index in self._indexes.items():
            _discard(index, uuid, _resolve(self._layout, row, path))

    def on_change(self, uuid: str, field: str, old: Any, new: Any) -> None:
        """Move an entity whose top-level ``field`` went from ``old`` to ``new`` (either may be ``MISSING``).

        ``old`` must be the value as it was before the change: after an in-place edit of a nested value,
        pass a snapshot taken before it, or the old key cannot be found.
        """
        if self._orders:
            for key in [key for key, (read, _) in self._orders.items() if field in read]:
                del self._orders[key]
        for path, index in self._indexes.items():
            if path[0] != field:
                continue
            rest = path[1:]
            old_value = resolve_in(old, rest)
            new_value = resolve_in(new, rest)
            if (
                old_value is not MISSING
                and new_value is not MISSING
                and freeze(old_value) == freeze(new_value)
            ):
                continue
            _discard(index, uuid, old_value)
            _insert(index, uuid, new_value)

    def clear(self) -> None:
        """Drop every index and kept order; each is made again the next time a query needs it."""
        self._indexes.clear()
        self._indexed.clear()
        self._orders.clear()
        self.fields.clear()


def _resolve(layout: Layout, row: Row, path: Path) -> Any:
    """The value at ``path`` of the entity holding ``row``, or ``MISSING``."""
    value = layout.get(row, path[0])
    return value if len(path) == 1 else resolve_in(value, path[1:])


def _build(layout: Layout, path: Path, source: Source) -> Index:
    index: Index = {}
    if len(path) == 1:
        # Top-level paths are the common case: read without a call per entity.
        position = layout.position(path[0])
        for uuid, row in source():
            value = row[position] if position < len(row) else MISSING
            if value is not MISSING:
                _insert_key(index, uuid, freeze(value))
    else:
        for uuid, row in source():
            _insert(index, uuid, _resolve(layout, row, path))
    return index


def _insert(index: Index, uuid: str, value: Any) -> None:
    if value is not MISSING:
        _insert_key(index, uuid, freeze(value))


def _insert_key(index: Index, uuid: str, key: Hashable) -> None:
    bucket = index.get(key)
    if bucket is None:
        index[key] = uuid
    elif isinstance(bucket, str):
        if bucket != uuid:
            index[key] = {bucket, uuid}
    else:
        bucket.add(uuid)


def _discard(index: Index, uuid: str, value: Any) -> None:
    if value is not MISSING:
        _discard_key(index, uuid, freeze(value))


def _discard_key(index: Index, uuid: str, key: Hashable) -> None:
    bucket = index.get(key)
    if bucket is None:
        return
    if isinstance(bucket, str):
        if bucket == uuid:
            del index[key]
        return
    bucket.discard(uuid)
    if len(bucket) == 1:
        # Back to the compact form, so memory follows the data after a crowd of equal values has left.
        index[key] = next(iter(bucket))
    elif not bucket:
        del index[key]
