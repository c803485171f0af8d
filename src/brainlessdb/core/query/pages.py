"""Pages of a query's answer: ``limit=`` and ``offset=`` checked, and the matches of a scan found in chunks.

A page is the slice ``answer[offset:offset + limit]`` of the answer the same query gives without them
(``limit=None``: to the end). ``filter``, ``exclude`` and ``order_by`` take the two as keyword arguments, so
in their criteria the names ``limit`` and ``offset`` are the page's, never a field's: a field so named is
matched with its explicit lookup (``limit__exact=5``). Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Final, NamedTuple, TypeVar

from brainlessdb.core.query.filtering import select
from brainlessdb.core.query.plan import Condition
from brainlessdb.errors import QueryError

T = TypeVar("T")

FIRST_CHUNK: Final = 256
"""Entities a paged scan matches at once at first; each further chunk is twice the size of the one before,
so a scan that must read everything makes about as many passes as ``select`` over the whole would
(a dozen at a million entities), and one that finds its page early stops early."""


class Page(NamedTuple):
    """A checked ``limit``/``offset``: ``stop`` is where the page ends in the whole answer (None: its end)."""

    offset: int
    limit: int | None

    @property
    def stop(self) -> int | None:
        return None if self.limit is None else self.offset + self.limit

    @property
    def whole(self) -> bool:
        """True when the page is the whole answer (no limit, no offset)."""
        return self.limit is None and self.offset == 0

    def cut(self, answer: Sequence[T]) -> list[T]:
        """The page of ``answer``, in a new list."""
        return list(answer[self.offset : self.stop])


WHOLE: Final = Page(0, None)


def page(limit: Any, offset: Any) -> Page:
    """``limit`` and ``offset`` checked: ints (never bools) of 0 or more; ``limit`` may be None (no limit).

    Raises:
        QueryError: another type, or a negative number (its ``key`` names the argument).
    """
    if limit is None and offset == 0 and type(offset) is int:
        return WHOLE
    return Page(_count(offset, "offset"), None if limit is None else _count(limit, "limit"))


def _count(value: Any, name: str) -> int:
    # A bool is an int to Python, but limit=True is a mistake, not a page of one.
    if not isinstance(value, int) or isinstance(value, bool):
        raise QueryError(f"{name} must be an int of 0 or more, got {value!r}", key=name)
    if value < 0:
        raise QueryError(f"{name} must be 0 or more, got {value}", key=name)
    return int(value)


def select_page(
    items: Iterable[T],
    conditions: Sequence[Condition],
    data_of: Callable[[T], Mapping[str, Any]],
    uuid_of: Callable[[T], str],
    stop: int,
    *,
    first_chunk: int = FIRST_CHUNK,
) -> list[T]:
    """The first ``stop`` items matching every condition, in the items' order: ``select(...)[:stop]``.

    The items are matched chunk by chunk with ``select`` (each chunk at C speed), so a page found among the
    first entities costs a fraction of a full scan.
    """
    found: list[T] = []
    if stop <= 0:
        return found
    source = iter(items)
    size = max(first_chunk, 2 * stop, 1)
    while len(found) < stop:
        chunk = list(islice(source, size))
        if not chunk:
            break
        found.extend(select(chunk, conditions, data_of, uuid_of))
        size *= 2
    del found[stop:]
    return found
