"""Counters: an integer field that every node may increment at once, converging to the sum of them all.

``coll.increment(item, "attempts", 1)`` does not write the field's value: it adds to this node's own tally
of the field (``Counts``: for each writer, what it added and what it took away, two totals that only grow).
Tallies merge by taking each writer's greater totals, so increments made concurrently on several nodes all
count, and one delivered twice counts once. A writer is one running database (its location and a random
suffix), so that two processes sharing a location never share a tally.

The field's value stays a plain number, what readers and other clients see: the value of the field's last
write (its *base*) plus every tally. Tallies count from that write: writing the field (``item.attempts =
0``) starts it again, and a merge keeps the tallies of the newer write only, like any field's value
(increments a node made before it saw the newer write are dropped with the write they counted from). The
base is not stored: it is the value less the tallies.

Counts are integers, kept exact in an IEEE double (within ±2^53), so a JavaScript client reads them as
they are.
"""

from __future__ import annotations

from typing import Final, TypeAlias

Counts: TypeAlias = dict[str, tuple[int, int]]
"""One field's tallies: writer name to (added, taken away), both totals that only grow."""

LIMIT: Final = 2**53 - 1
"""The greatest magnitude of a counter's value and of a writer's totals (exact in a double)."""


def total(counts: Counts) -> int:
    """What the tallies add to the field's base."""
    return sum(added - taken for added, taken in counts.values())


def merge(a: Counts, b: Counts) -> Counts:
    """The tallies of two versions counting from the same write: each writer's greater totals."""
    merged = dict(a)
    for writer, (added, taken) in b.items():
        mine = merged.get(writer)
        if mine is None:
            merged[writer] = (added, taken)
        elif mine != (added, taken):
            merged[writer] = (max(mine[0], added), max(mine[1], taken))
    return merged


def add(counts: Counts | None, writer: str, delta: int) -> Counts:
    """The tallies after ``writer`` added ``delta`` (negative: took it away)."""
    counts = {} if counts is None else dict(counts)
    added, taken = counts.get(writer, (0, 0))
    if delta >= 0:
        added += delta
    else:
        taken -= delta
    counts[writer] = (added, taken)
    return counts


def is_counter_value(value: object) -> bool:
    """True for a value tallies may count on: an integer (not a bool) exact in a double."""
    return type(value) is int and -LIMIT <= value <= LIMIT
