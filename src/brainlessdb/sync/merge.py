"""Merging two versions of an entity: the rules that make every node converge to the same state.

An entity's state is a map of fields, each holding a value and the stamp (see ``sync.clock``) of the change
that wrote it, plus an optional delete stamp. Two versions merge field by field: the value with the greater
stamp wins (a last-writer-wins register per field, so concurrent edits of *different* fields both survive).
Equal stamps with different values can only come from two writers sharing a node name within one clock
tick; the greater canonical JSON encoding wins then, so the choice is still the same everywhere.

A delete absorbs everything: merging anything with a deleted version gives a deleted version whose stamp is
the greater delete stamp, and no fields. That is what makes a delete win over concurrent and later updates
(no resurrection), and it keeps the merge a join: commutative, associative and idempotent, so messages may
arrive late, twice, or in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import msgspec

from brainlessdb.sync.clock import Stamp

_canonical = msgspec.json.Encoder(order="sorted")

Stamps: TypeAlias = Stamp | dict[str, Stamp]
"""The stamps of a live entity's fields as held in memory: one ``Stamp`` when every field has that stamp
(an entity just added or loaded, the common case, with no dict to hold), else one per field."""


def field_stamps(stamps: Stamps, data: dict[str, Any]) -> dict[str, Stamp]:
    """The stamp of each field of ``data``: ``stamps`` itself if it is per field (not a copy)."""
    if isinstance(stamps, dict):
        return stamps
    return dict.fromkeys(data, stamps)


@dataclass(slots=True)
class Record:
    """One version of an entity: field values, the stamp of each field, and the delete stamp if deleted."""

    data: dict[str, Any] = field(default_factory=dict)
    stamps: dict[str, Stamp] = field(default_factory=dict)
    deleted: Stamp | None = None
    shared: Stamp | None = field(default=None, compare=False)
    """Set by the decoder when every field has this one stamp (``stamps`` still has them all)."""

    @property
    def compact_stamps(self) -> Stamps:
        """The stamps in the form an entity holds them: ``shared`` when set, else ``stamps``."""
        return self.stamps if self.shared is None else self.shared

    @property
    def is_deleted(self) -> bool:
        return self.deleted is not None

    def max_stamp(self) -> Stamp | None:
        """The newest stamp in this version (the delete stamp for a deleted one)."""
        if self.deleted is not None:
            return self.deleted
        return max(self.stamps.values(), default=None)


def field_wins(stamp: Stamp, value: Any, other_stamp: Stamp, other_value: Any) -> bool:
    """True when ``(stamp, value)`` beats ``(other_stamp, other_value)`` for one field."""
    if stamp != other_stamp:
        return stamp > other_stamp
    # Not ``value == other_value``: Python finds 0 == False == 0.0 == -0.0, which JSON tells apart.
    return bool(_canonical.encode(value) > _canonical.encode(other_value))


def _same_value(value: Any, other: Any) -> bool:
    """True when two field values are the same JSON value (``1``, ``1.0`` and ``True`` all differ)."""
    return bool(_canonical.encode(value) == _canonical.encode(other))


def merge_records(a: Record, b: Record) -> Record:
    """The join of two versions of one entity (a new record; the inputs are not changed)."""
    if a.deleted is not None or b.deleted is not None:
        deletes = [s for s in (a.deleted, b.deleted) if s is not None]
        return Record(deleted=max(deletes))
    data = dict(a.data)
    stamps = dict(a.stamps)
    for name, stamp in b.stamps.items():
        mine = stamps.get(name)
        if mine is None or field_wins(stamp, b.data.get(name), mine, data.get(name)):
            data[name] = b.data.get(name)
            stamps[name] = stamp
    return Record(data=data, stamps=stamps)


def merge_into(data: dict[str, Any], stamps: dict[str, Stamp], incoming: Record) -> dict[str, Any]:
    """Merge a live (not deleted) incoming version into ``data``/``stamps`` in place.

    Returns the fields that changed, mapped to their previous value (absent fields map to ``MISSING``).
    The caller deals with deletes itself, since they remove the entity rather than change it.
    """
    changed: dict[str, Any] = {}
    for name, stamp in incoming.stamps.items():
        mine = stamps.get(name)
        value = incoming.data.get(name)
        if mine is None or field_wins(stamp, value, mine, data.get(name)):
            if mine is None or not _same_value(data.get(name), value):
                changed[name] = data.get(name, MISSING)
            data[name] = value
            stamps[name] = stamp
    return changed


def dominates(local: Record, remote: Record) -> bool:
    """True when ``local`` holds something ``remote`` does not, so it must still be written."""
    merged = merge_records(local, remote)
    return (
        merged.deleted != remote.deleted
        or merged.stamps != remote.stamps
        or any(not _same_value(value, remote.data.get(name)) for name, value in merged.data.items())
    )


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
