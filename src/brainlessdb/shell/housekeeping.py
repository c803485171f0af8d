"""Housekeeping: delete markers past their retention are removed from the buckets, in the background.

Every delete leaves a marker in its bucket, and every load replays the markers, so they cannot stay for
ever. Some time after ``delete_retention`` has passed, each remembered delete is checked against what its
key holds now (the decision is ``core.sync.tombstones.expiry_action``): its marker is removed, or the
delete is written again over a version the server brought back, or it is left to the sync state because
the key was written again since. With locations, a marker stays (and its delete is remembered) until
every other location has copied it and holds no version of the entity (``SourceMonitor.still_needed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from brainlessdb.core.collection import Collection
from brainlessdb.core.sync.tombstones import ExpiryAction, expiry_action
from brainlessdb.storage.base import Storage

logger = logging.getLogger(__name__)

MAX_INTERVAL: Final = 600.0  # seconds between two rounds at most
MIN_INTERVAL: Final = 0.05


class Housekeeper:
    """Removes the delete markers of a database's collections once they are past their retention."""

    def __init__(
        self,
        storage: Storage,
        collections: Callable[[], Iterable[tuple[Collection[Any], str]]],
        retention: Callable[[], float],
        changed: Callable[[Collection[Any], str], None],
        still_needed: Callable[[str, str, int | None], Awaitable[bool]] | None = None,
    ) -> None:
        self._storage = storage
        self._collections = collections
        self._retention = retention  # read at each round: the database's setting may change
        self._changed = changed
        self._still_needed = still_needed  # with locations: whether another location may still need it
        self.removed = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="brainlessdb-housekeeping")

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(MIN_INTERVAL, min(self._retention() / 4, MAX_INTERVAL)))
            try:
                await self.expire_deletes()
            except Exception:
                logger.exception("removing old delete markers failed; retrying later")

    async def expire_deletes(self) -> int:
        """One round: remove the markers of deletes older than the retention; returns how many."""
        cutoff_ms = int((time.time() - self._retention()) * 1000)
        removed = 0
        for collection, bucket in list(self._collections()):
            sync = collection.sync
            for uuid, revision in sync.tombstones.expired(cutoff_ms):
                current = await self._storage.get(bucket, uuid)
                action = expiry_action(revision, current)
                if action is ExpiryAction.DELETE_AGAIN:
                    assert current is not None
                    sync.delete_again(uuid, current.revision)
                    self._changed(collection, uuid)
                elif action is not ExpiryAction.KEEP:
                    marker = None if current is None else current.revision
                    if self._still_needed is not None and await self._still_needed(bucket, uuid, marker):
                        continue  # another location has not seen the delete yet: asked again next round
                    if action is ExpiryAction.REMOVE_MARKER:
                        await self._storage.forget(bucket, uuid)
                    sync.tombstones.forget(uuid)
                    removed += 1
        self.removed += removed
        return removed

    def __repr__(self) -> str:
        state = "running" if self._task is not None else "stopped"
        return f"<Housekeeper {state}, retention {self._retention():g}s, {self.removed} markers removed>"
