"""Tombstones: the deletes a collection remembers, and when their delete markers may go.

A deleted uuid is remembered with the stamp of its delete, the last revision seen of its key, and whether
its delete marker still has to be written (``pending``). While it is remembered, any version of the uuid
that arrives is ignored (a delete wins) or deleted again. Delete markers cannot stay in the bucket for
ever (every load replays them): past a retention, housekeeping removes a marker and forgets the delete,
after checking what the key holds now (``expiry_action``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from brainlessdb.core.clock import Stamp, wall_ms
from brainlessdb.storage.base import Entry, Op


@dataclass(slots=True)
class Tombstone:
    """A deleted uuid: when it was deleted, the last revision seen, and whether its marker is unwritten."""

    stamp: Stamp
    revision: int | None
    pending: bool


class ExpiryAction(enum.Enum):
    """What to do with a delete past its retention, given what its key holds now."""

    KEEP = "keep"
    """The key was written again since the delete: the sync state deals with it as it arrives."""
    DELETE_AGAIN = "delete again"
    """The key holds a version older than the delete (brought back by the server): write the delete again."""
    REMOVE_MARKER = "remove marker"
    """Remove the marker from the bucket, then forget the delete."""
    FORGET = "forget"
    """The marker is gone already: forget the delete."""


def expiry_action(revision: int | None, current: Entry | None) -> ExpiryAction:
    """The action for a delete past its retention whose key was last seen at ``revision``."""
    if current is None:
        return ExpiryAction.FORGET
    if current.op is Op.PUT and current.revision < (revision or 0):
        # NATS brought back a version the delete had replaced (a hard kill of nats-server after another
        # node removed the marker, see docs/reliability.md).
        return ExpiryAction.DELETE_AGAIN
    if current.op is Op.PUT or (revision is not None and current.revision > revision):
        return ExpiryAction.KEEP
    return ExpiryAction.REMOVE_MARKER


class Tombstones:
    """The remembered deletes of one collection, by uuid."""

    def __init__(self) -> None:
        self._by_uuid: dict[str, Tombstone] = {}

    def get(self, uuid: str) -> Tombstone | None:
        return self._by_uuid.get(uuid)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._by_uuid

    def __len__(self) -> int:
        return len(self._by_uuid)

    def add(self, uuid: str, stamp: Stamp, revision: int | None, *, pending: bool) -> None:
        """Remember the delete of ``uuid`` (replacing what was remembered of it)."""
        self._by_uuid[uuid] = Tombstone(stamp, revision, pending)

    def items(self) -> Iterator[tuple[str, Tombstone]]:
        """Every remembered delete (a snapshot holds those whose marker is written)."""
        return iter(self._by_uuid.items())

    def pending(self) -> Iterator[tuple[str, Tombstone]]:
        """The deletes whose marker is still to be written."""
        return ((uuid, tomb) for uuid, tomb in self._by_uuid.items() if tomb.pending)

    def pending_count(self) -> int:
        return sum(1 for tomb in self._by_uuid.values() if tomb.pending)

    def is_settled(self, uuid: str) -> bool:
        """True unless the delete of ``uuid`` still has its marker to write."""
        tomb = self._by_uuid.get(uuid)
        return tomb is None or not tomb.pending

    def expired(self, before_ms: int) -> list[tuple[str, int | None]]:
        """Written deletes older than ``before_ms`` (wall-clock ms), with their last known revision."""
        return [
            (uuid, tomb.revision)
            for uuid, tomb in self._by_uuid.items()
            if not tomb.pending and wall_ms(tomb.stamp[0]) < before_ms
        ]

    def delete_again(self, uuid: str, revision: int) -> None:
        """Write the delete of ``uuid`` once more, over the older version the bucket holds at ``revision``."""
        tomb = self._by_uuid.get(uuid)
        if tomb is not None:
            tomb.revision = revision
            tomb.pending = True

    def forget(self, uuid: str) -> None:
        """Forget a delete whose marker was removed from the bucket (a pending one is kept)."""
        tomb = self._by_uuid.get(uuid)
        if tomb is not None and not tomb.pending:
            del self._by_uuid[uuid]

    def clear(self) -> None:
        self._by_uuid.clear()

    def __repr__(self) -> str:
        return f"<Tombstones {len(self._by_uuid)} remembered, {self.pending_count()} pending>"
