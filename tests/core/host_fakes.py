"""A collection's database without one, for the core tests: the ``Host`` a ``Collection`` calls, with a clock
the test sets (``now_ms``), every event recorded, everything loaded and nothing written; and ``run()``, which
answers a query coroutine without an event loop."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.collection import Collection
from brainlessdb.core.ids import location_node
from brainlessdb.events import Event, Listener
from tests.core.sync_fakes import START_MS

R = TypeVar("R")


class Host:
    """What a collection asks of its database: the clock reads ``now_ms``, events land in ``events``."""

    def __init__(self, location: str = "prague-1", now_ms: int = START_MS) -> None:
        self.now_ms = now_ms
        self.clock = HybridLogicalClock(location, lambda: self.now_ms)
        self.uuid_node = location_node(location)
        self.events: list[Event] = []

    def changed(self, collection: Collection[Any], uuid: str | None = None) -> None:
        pass

    def emit(self, listener: Listener, event: Event) -> None:
        self.events.append(event)

    async def ready(self, collection: Collection[Any]) -> None:
        pass


def run(coroutine: Coroutine[Any, Any, R]) -> R:
    """The result of a query coroutine that never suspends (its host is always ready)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the query suspended")
