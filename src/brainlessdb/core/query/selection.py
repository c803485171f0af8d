"""Selection: the entities of one collection that match criteria, as ``Collection``'s queries ask for them.

Given the collection's table (its entities, indexes and cached plans), a ``Selection`` parses and binds
criteria (plans cached per criteria keys: they depend on the keys and the schema only), answers from an
index where one covers a criterion and by a scan otherwise, cuts pages without matching every entity, and
keeps whole-collection orders between changes (``IndexSet.keep_order``). ``Collection`` adds the public
API over it: arguments, results as entities or typed views. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, ValuesView
from itertools import islice
from operator import attrgetter
from typing import Any, Final

from brainlessdb.core.entity import Entity
from brainlessdb.core.query.filtering import compile_filter, select
from brainlessdb.core.query.index import INDEXED_LOOKUPS
from brainlessdb.core.query.ordering import order, prunes
from brainlessdb.core.query.pages import Page, select_page
from brainlessdb.core.query.plan import (
    Condition,
    OrderKey,
    Plan,
    bind_criteria,
    keys_on_rows,
    on_rows,
    plan_criteria,
)
from brainlessdb.core.rows import Row
from brainlessdb.core.table import EntityTable

PLANS_KEPT: Final = 256
"""Parsed criteria kept per collection (all dropped when full: a program asks a few shapes of query)."""


class Selection:
    """Finds a collection's entities by criteria (see the module's description)."""

    def __init__(self, table: EntityTable) -> None:
        self._table = table
        # The table never rebinds these: held here for the queries' hot paths.
        self._entities = table.entities
        self._indexes = table.indexes
        self._plans = table.plans
        self._position = table.layout.position

    def whole_order(self, order_keys: tuple[OrderKey, ...], stop: int | None) -> list[Entity] | None:
        """Every entity in ``order_keys``' order, kept from an earlier ``order_by`` while nothing it
        depends on changed (``IndexSet.keep_order``; docs/performance.md). None for a page small enough
        that ``order_first`` sorts only what can be in it, unless an order is kept. Only to be read."""
        indexes = self._indexes
        kept = indexes.kept_order(order_keys)
        if kept is not None:
            return kept
        if stop is not None and prunes(order_keys, stop, len(self._entities)):
            return None
        ordered = order(
            self._entities.values(), self.keys_on_rows(order_keys), data_of, uuid_of, field_reader
        )
        indexes.keep_order(order_keys, (key.path[0] for key in order_keys), ordered)
        return ordered

    def select(self, criteria: Mapping[str, Any]) -> list[Entity] | ValuesView[Entity]:
        """The entities matching ``criteria``: the live values view without criteria, else a new list."""
        if not criteria:
            return self._entities.values()
        conditions = self.conditions(criteria)
        candidates = self._indexes.candidates(conditions, self.scan_source)
        if candidates is None:
            return select(self._entities.values(), on_rows(conditions, self._position), data_of, uuid_of)
        return self._candidates_matching(candidates, conditions)

    def _candidates_matching(
        self, candidates: Iterable[str], conditions: tuple[Condition, ...]
    ) -> list[Entity]:
        """The entities among an index's ``candidates`` that meet every condition."""
        # Candidates may name uuids this collection no longer holds; the index answered exact and in
        # conditions exactly, so only the others remain to check.
        found = [entity for entity in map(self._entities.get, candidates) if entity is not None]
        rest = [c for c in conditions if c.lookup not in INDEXED_LOOKUPS]
        if not rest:
            return found
        return select(found, on_rows(rest, self._position), data_of, uuid_of)

    def select_window(self, criteria: Mapping[str, Any], window: Page) -> list[Entity]:
        """``_select(criteria)`` cut to ``window``: a scan stops once it has matched the page's end."""
        stop = window.stop
        if not criteria:
            return list(islice(self._entities.values(), window.offset, stop))
        conditions = self.conditions(criteria)
        candidates = self._indexes.candidates(conditions, self.scan_source)
        if candidates is not None:
            return window.cut(self._candidates_matching(candidates, conditions))
        on_row = on_rows(conditions, self._position)
        if stop is None:
            found = select(self._entities.values(), on_row, data_of, uuid_of)
        else:
            # The scan _select makes, in chunks, up to the page's end.
            found = select_page(self._entities.values(), on_row, data_of, uuid_of, stop)
        return found[window.offset :]

    def any_match(self, criteria: Mapping[str, Any]) -> bool:
        """Whether ``_select(criteria)`` is not empty, stopping at the first match."""
        conditions = self.conditions(criteria)
        candidates = self._indexes.candidates(conditions, self.scan_source)
        if candidates is None:
            return bool(
                select_page(self._entities.values(), on_rows(conditions, self._position), data_of, uuid_of, 1)
            )
        matches = compile_filter(
            on_rows([c for c in conditions if c.lookup not in INDEXED_LOOKUPS], self._position)
        )
        entities = self._entities
        for uuid in candidates:
            entity = entities.get(uuid)
            if entity is not None and matches(uuid, entity._row):
                return True
        return False

    def scan_source(self) -> Iterable[tuple[str, Row]]:
        return ((uuid, entity._row) for uuid, entity in self._entities.items())

    def keys_on_rows(self, keys: tuple[OrderKey, ...]) -> tuple[OrderKey, ...]:
        """``keys`` read from the entities' rows (see ``plan.on_rows``), for ``order`` and ``order_first``
        given ``data_of`` and ``field_reader``."""
        return keys_on_rows(keys, self._position)

    def conditions(self, criteria: Mapping[str, Any]) -> tuple[Condition, ...]:
        keys = tuple(criteria)
        return bind_criteria(self._plans.get(keys) or self.plan(keys), criteria)

    def plan(self, keys: tuple[str, ...]) -> Plan:
        """The parsed criteria keys (cached: they depend on the keys and the schema only)."""
        plan = self._plans.get(keys)
        if plan is None:
            if len(self._plans) >= PLANS_KEPT:
                self._plans.clear()
            plan = self._plans[keys] = plan_criteria(keys, self._table.field_types)
        return plan


data_of = attrgetter("_row")
"""An entity's row: what the query functions read, with conditions and keys ``on_rows``."""


def field_reader(position: int) -> Callable[[Entity], Any]:
    """Reads the field at ``position`` of an entity's row (``MISSING`` where absent, ``IndexError`` past
    the row's end): a sort key for keys ``on_rows``, written out because CPython specializes both steps of
    this function, not a composition of ``attrgetter``/``itemgetter``."""

    def read(entity: Entity) -> Any:
        return entity._row[position]

    return read


uuid_of = attrgetter("_uuid")
