"""The hybrid logical clock (Kulkarni et al., 2014) that stamps every field change.

A stamp is ``(hlc, node)``. ``hlc`` packs wall-clock milliseconds and a 16-bit logical counter into one
integer (``ms << 16 | counter``), so it stays close to real time, never runs backwards on one node, and
moves past every stamp the node has seen from others. Stamps are totally ordered as tuples; the node name
breaks ties between nodes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final

Stamp = tuple[int, str]

COUNTER_BITS: Final = 16
_COUNTER_MASK: Final = (1 << COUNTER_BITS) - 1


def wall_ms(stamp_hlc: int) -> int:
    """The wall-clock milliseconds part of a packed clock value."""
    return stamp_hlc >> COUNTER_BITS


def hlc_from_ms(ms: int) -> int:
    """The packed clock value of a wall-clock time, with counter zero."""
    return ms << COUNTER_BITS


class HybridLogicalClock:
    """A node's clock: ``tick()`` for a local change, ``observe()`` for a stamp seen from elsewhere."""

    __slots__ = ("_last", "_now_ms", "node", "replica")

    def __init__(
        self, node: str, now_ms: Callable[[], int] | None = None, replica: str | None = None
    ) -> None:
        self.node = node
        self.replica = f"{node}~{secrets.token_hex(4)}" if replica is None else replica
        """A name no other running database has (the node name and a random suffix): what a counter's
        tallies are kept under (see ``core.counters``), since several processes may share a node name."""
        self._now_ms = now_ms
        self._last = 0

    def tick(self) -> Stamp:
        """A fresh stamp, greater than every stamp this clock has issued or observed."""
        now_ms = self._now_ms
        # The system clock is read inline: a tick comes with every change (see docs/performance.md).
        physical = (_time_ns() // 1_000_000 if now_ms is None else now_ms()) << COUNTER_BITS
        last = self._last
        if physical > last:
            self._last = physical
        else:
            # Same millisecond, or the wall clock went back: count on from the last stamp.
            self._last = last + 1
        return (self._last, self.node)

    def now_ms(self) -> int:
        """The wall-clock time in Unix ms, as this clock reads it (deadlines are compared with it)."""
        now_ms = self._now_ms
        return _time_ns() // 1_000_000 if now_ms is None else now_ms()

    def observe(self, hlc: int) -> None:
        """Move past a clock value received from another node, so later local stamps win over it."""
        if hlc > self._last:
            self._last = hlc

    @property
    def last(self) -> int:
        """The greatest clock value issued or observed so far."""
        return self._last


_time_ns = time.time_ns
