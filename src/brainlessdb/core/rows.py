"""Rows: an entity's field values in a tuple, in the order its collection's ``Layout`` gives the fields.

A dict per entity holds a hash table sized for growth: 272 bytes for seven fields, where a tuple of the
same seven values takes 96. A collection's fields are few and shared by all its entities, so each entity
holds a row, and the collection one ``Layout``: the field names in the order they were first seen, each at
a position that never changes. A field an entity does not have is ``MISSING`` in its row, and a row may be
shorter than its layout (it was made before the layout grew): every position past its end is ``MISSING``
too (so names and a row are zipped without ``strict``). Rows are never changed in place; a change makes a
new one (``with_value``).

Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import repeat
from typing import Any, TypeAlias

from brainlessdb.core.values import MISSING

Row: TypeAlias = tuple[Any, ...]
"""An entity's values by position (see ``Layout``); ``MISSING`` where it has no such field."""


class Layout:
    """The field names of one collection, each at a position of the rows of its entities.

    Only grows: a name keeps its position for the life of the process, even once no entity holds it (an
    evolution's removed or renamed field), so rows made before stay readable.
    """

    __slots__ = ("_keys", "_order", "names", "positions")

    def __init__(self, names: tuple[str, ...] | list[str] = ()) -> None:
        self.names: list[str] = []
        """The names by position (to be read only)."""
        self.positions: dict[str, int] = {}
        """Each name's position (to be read only)."""
        self._keys = self.positions.keys()
        self._order: tuple[str, ...] = ()  # the names, as a tuple: a dict in this order is a row at once
        for name in names:
            self.position(name)

    def position(self, name: str) -> int:
        """The position of ``name``, given the next one if the layout does not have it yet."""
        found = self.positions.get(name)
        if found is None:
            found = self.positions[name] = len(self.names)
            self.names.append(name)
            self._order = (*self._order, name)
        return found

    def row(self, data: Mapping[str, Any]) -> Row:
        """The row holding ``data``'s values (the layout takes names it did not have)."""
        if len(data) == len(self._order) and tuple(data) == self._order:
            # Every field, in layout order (a version this library wrote, decoded): its values are the row.
            return tuple(data.values())
        if not data.keys() <= self._keys:
            for name in data:
                self.position(name)
        names = self.names
        return tuple(map(data.get, names, repeat(MISSING, len(names))))

    def mapping(self, row: Row) -> dict[str, Any]:
        """A new dict of the values ``row`` holds, in layout order (containers as held, not copied)."""
        return {name: value for name, value in zip(self.names, row, strict=False) if value is not MISSING}

    def get(self, row: Row, name: str, default: Any = MISSING) -> Any:
        """The value of field ``name`` in ``row``, or ``default`` where it has none."""
        position = self.positions.get(name)
        if position is None or position >= len(row):
            return default
        value = row[position]
        return default if value is MISSING else value

    def holds(self, row: Row, name: str) -> bool:
        """Whether ``row`` has a value for field ``name``."""
        position = self.positions.get(name)
        return position is not None and position < len(row) and row[position] is not MISSING

    def present(self, row: Row) -> list[str]:
        """The names of the fields ``row`` has a value for, in layout order."""
        return [name for name, value in zip(self.names, row, strict=False) if value is not MISSING]

    def count(self, row: Row) -> int:
        """How many fields ``row`` has a value for."""
        return len(row) - row.count(MISSING)

    def items(self, row: Row) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of each field ``row`` has a value for, in layout order."""
        for name, value in zip(self.names, row, strict=False):
            if value is not MISSING:
                yield name, value

    def with_value(self, row: Row, name: str, value: Any) -> Row:
        """``row`` with field ``name`` set to ``value`` (``MISSING``: removed); a new tuple."""
        position = self.position(name)
        size = len(row)
        if position < size:
            # A list copy changed and frozen: half what slicing around the position costs.
            values = list(row)
            values[position] = value
            return tuple(values)
        if value is MISSING:
            return row
        return (*row, *repeat(MISSING, position - size), value)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Layout({self.names!r})"
