"""How far each collection's memory is behind its bucket, as far as this node knows without asking NATS.

A watch applies the bucket's entries in revision order, so "behind" is a count of revisions: those the
bucket is known to hold past the last one applied here. The bucket's last revision is learnt for free when
NATS acknowledges one of this node's writes (the write's revision), and by asking when ``synced()`` does.
Other nodes' writes that this node has not seen are, by nature, unknown to it until it asks: during an
outage, the figures stay at what was last learnt, and the write side (pending changes and their age) is
what grows. Reading the figures costs no I/O, so ``stats()`` and the metrics can read them at any time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple


class Lag(NamedTuple):
    """One collection's watch against its bucket."""

    applied: int
    """The last revision of the bucket applied to memory."""
    behind: int
    """Revisions the bucket is known to hold past ``applied`` (0: caught up with all that is known)."""
    behind_seconds: float
    """How long ``behind`` has been above 0 without a break (0.0 when it is 0)."""


class WatchLag:
    """The last revision known of each collection's bucket, and since when the watch has been behind it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._known: dict[str, int] = {}
        self._behind_since: dict[str, float] = {}

    def learnt(self, name: str, revision: int, applied: int) -> None:
        """Collection ``name``'s bucket holds ``revision`` (a write's, or its last); ``applied`` so far."""
        known = self._known.get(name, 0)
        if known <= applied:
            self._behind_since.pop(name, None)  # caught up with all that was known: a new gap starts now
        if revision > known:
            self._known[name] = known = revision
        if known > applied:
            self._behind_since.setdefault(name, self._clock())

    def of(self, name: str, applied: int) -> Lag:
        """The figures of collection ``name`` whose watch has applied up to revision ``applied``."""
        behind = self._known.get(name, 0) - applied
        if behind <= 0:
            self._behind_since.pop(name, None)
            return Lag(applied, 0, 0.0)
        since = self._behind_since.setdefault(name, self._clock())
        return Lag(applied, behind, self._clock() - since)

    def __repr__(self) -> str:
        return f"<WatchLag known={self._known}, behind since={self._behind_since}>"
