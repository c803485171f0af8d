"""Expiring entities: the deadline each one carries, how deadlines merge, and which entities are due.

An entity may carry an **expiry**: the wall-clock time (Unix milliseconds) after which it is gone, and the
stamp of the change that set it (``Expiry``). The expiry is part of the entity's stamped data (stored as the
member ``e``, see ``core.codec``), so it holds offline, on any server, and on a node that loads the bucket
later. Two versions merge it as one more last-writer-wins register: the expiry set last wins, whether it
extends, shortens or removes (a deadline of ``None``) the one before. Merging stays a pure join (it never
looks at the time); what time does is decided apart: a version whose deadline has passed counts as deleted,
so once a node has removed an expired entity its delete wins over every later version, as any delete
does (``core.merge``), and a stale write from a node that missed the expiry cannot bring it back.

``Deadlines`` is the heap a collection keeps of its entities' deadlines: the queries ask it first (nothing
past its deadline is ever returned, even before the shell's timer ran), and the timer asks it when to wake
(``shell.expiry``). ``ExpiryMode`` says who removes an expired entity from the bucket: the server, through
the per-message TTL each write of an expiring entity carries (``server_ttl``), or, where the bucket has no
such TTL, the nodes themselves by writing its delete.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Final, TypeAlias

from brainlessdb.core.clock import Stamp
from brainlessdb.errors import ExpiryError

Expiry: TypeAlias = tuple[int | None, Stamp]
"""An entity's expiry: its deadline in Unix milliseconds (None: it never expires), and the stamp of the
change that set it."""

GRACE_SECONDS: Final = 1
"""Added to the per-message TTL of a write: the server removes an entity no sooner than this after its
deadline, so that the nodes, which remove it at the deadline by their own clocks, tell it as expired."""
SKEW_MS: Final = 2000
"""How far before its deadline a removal of an entity by another node or by the server is still told as its
expiry (the clocks of the nodes and of the server differ a little)."""
MAX_SECONDS: Final = 10 * 365 * 86400
"""The longest expiry taken: ten years (beyond it, a number of seconds is a mistake, not a session)."""


def check_seconds(seconds: Any, what: str = "seconds") -> float:
    """``seconds`` as a float if it can be an expiry (a finite number above 0, at most ten years)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ExpiryError(f"{what} must be a number of seconds, not {type(seconds).__name__}")
    value = float(seconds)
    if math.isnan(value) or not 0 < value <= MAX_SECONDS:
        raise ExpiryError(f"{what} must be above 0 and at most {MAX_SECONDS} (ten years), got {seconds!r}")
    return value


def deadline_after(now_ms: int, seconds: float) -> int:
    """The deadline ``seconds`` after ``now_ms`` (rounded up to the next millisecond)."""
    return now_ms + math.ceil(seconds * 1000)


def wins(expiry: Expiry, other: Expiry) -> bool:
    """True when ``expiry`` beats ``other``: the greater stamp; under one stamp, the later deadline (a
    deadline beats none), so that every node picks the same."""
    if expiry[1] != other[1]:
        return expiry[1] > other[1]
    return _order(expiry[0]) > _order(other[0])


def _order(deadline: int | None) -> int:
    return -1 if deadline is None else deadline


def merge(a: Expiry | None, b: Expiry | None) -> Expiry | None:
    """The join of two versions' expiries (None: the version never had one)."""
    if a is None:
        return b
    if b is None or not wins(b, a):
        return a
    return b


def is_due(expiry: Expiry | None, now_ms: int) -> bool:
    """True when ``expiry`` has a deadline and it has passed at ``now_ms``."""
    return expiry is not None and expiry[0] is not None and expiry[0] <= now_ms


def server_ttl(deadline_ms: int, now_ms: int) -> int:
    """The per-message TTL (whole seconds, at least 1) of a write made at ``now_ms`` of an entity whose
    deadline is ``deadline_ms``: the time left, rounded up, and ``GRACE_SECONDS``."""
    return max(1, math.ceil((deadline_ms - now_ms) / 1000)) + GRACE_SECONDS


class ExpiryMode:
    """Who removes a collection's expired entities from its bucket.

    ``used`` once the collection has met an expiry (its own, another node's, or a default ``ttl``): only
    then is the bucket's per-message TTL worth asking for. ``server`` is None until the shell has asked,
    then True when the server removes expired entities (every write of one carries its TTL), False when
    the nodes do, by writing the delete. With the server's TTL, delete markers carry one too,
    ``marker_ttl`` (the delete retention): the server removes them even if no node is left to.
    """

    __slots__ = ("marker_ttl", "server", "used")

    def __init__(self) -> None:
        self.used = False
        self.server: bool | None = None
        self.marker_ttl: float | None = None

    @property
    def unknown(self) -> bool:
        """True when the collection uses expiry and the shell has not asked the bucket yet."""
        return self.used and self.server is None

    def __repr__(self) -> str:
        who = {None: "not asked", True: "the server", False: "the nodes"}[self.server]
        return f"<ExpiryMode {'used' if self.used else 'unused'}, removed by {who}>"


class Deadlines:
    """The deadlines of a collection's entities, in a heap: which are due, and when the next one is.

    ``schedule`` is called whenever an entity's expiry may have changed; only the deadline last scheduled
    for a uuid counts (older heap entries are skipped when they come up), so extending, shortening and
    removing cost one push each and nothing is searched.
    """

    __slots__ = ("_at", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._at: dict[str, int] = {}

    def schedule(self, uuid: str, deadline: int | None) -> None:
        """``uuid`` is due at ``deadline`` (None: never)."""
        if deadline is None:
            self._at.pop(uuid, None)
        elif self._at.get(uuid) != deadline:
            self._at[uuid] = deadline
            heapq.heappush(self._heap, (deadline, uuid))

    def forget(self, uuid: str) -> None:
        """``uuid`` is no longer held: it is not due any more."""
        self._at.pop(uuid, None)

    def deadline(self, uuid: str) -> int | None:
        """The deadline scheduled for ``uuid`` (None if none)."""
        return self._at.get(uuid)

    def next_at(self) -> int | None:
        """The earliest deadline scheduled (None if none)."""
        heap, at = self._heap, self._at
        while heap:
            deadline, uuid = heap[0]
            if at.get(uuid) == deadline:
                return deadline
            heapq.heappop(heap)  # replaced or forgotten since it was pushed
        return None

    def due(self, now_ms: int) -> list[str]:
        """The uuids whose deadline has passed at ``now_ms``, earliest first; they are no longer scheduled."""
        found: list[str] = []
        heap, at = self._heap, self._at
        while heap and heap[0][0] <= now_ms:
            deadline, uuid = heapq.heappop(heap)
            if at.get(uuid) == deadline:
                del at[uuid]
                found.append(uuid)
        return found

    def __len__(self) -> int:
        return len(self._at)

    def __bool__(self) -> bool:
        return bool(self._at)

    def clear(self) -> None:
        self._heap.clear()
        self._at.clear()

    def __repr__(self) -> str:
        return f"<Deadlines {len(self._at)} scheduled, next at {self.next_at()}>"
