"""Expiry in the background: each collection's expired entities removed at their deadlines, and each bucket
asked, once, whether the server removes them itself.

The core decides everything (``core.expiry``, ``SyncState.expire_due``); this module only keeps time.
``ExpiryTimer`` wakes at the earliest deadline of all collections (and at least every ``POLL`` seconds,
since deadlines also arrive from other nodes) and has the due entities removed, which tells the listeners
and, where the nodes remove expired entities, wakes the flusher to write their deletes.

``settle_mode`` asks a collection's bucket whether the server can remove expired entities (per-message TTL,
nats-server 2.11+, a bucket keeping one version per key): then every write of an expiring entity carries
its TTL and the server removes it even if no node runs at its deadline. It is asked only once the collection
meets an expiry (turning the TTL on cannot be undone), before the first write that would carry one. Not
with locations: a copy of another location's key keeps its TTL header, which a bucket that has none
refuses, so there the nodes remove expired entities.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

from brainlessdb.core.collection import Collection
from brainlessdb.retry import cancel_and_wait
from brainlessdb.storage.base import Storage

logger = logging.getLogger(__name__)

POLL: Final = 0.25
"""Seconds between two looks at the deadlines at most: one received from another node is met this late."""
MIN_SLEEP: Final = 0.001


class ExpiryTimer:
    """Removes the expired entities of a database's collections at their deadlines (give or take ``POLL``)."""

    def __init__(
        self, collections: Callable[[], Iterable[Collection[Any]]], now_ms: Callable[[], int]
    ) -> None:
        self._collections = collections
        self._now_ms = now_ms
        self.expired = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="brainlessdb-expiry")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                delay = self.expire_due()
            except Exception:
                logger.exception("removing expired entities failed; retrying")
                delay = POLL
            await asyncio.sleep(delay)

    def expire_due(self) -> float:
        """Remove what is due in every collection; the seconds until the next look."""
        earliest: int | None = None
        for collection in list(self._collections()):
            sync = collection.sync
            self.expired += sync.expire_due()
            next_at = sync.next_deadline()
            if next_at is not None and (earliest is None or next_at < earliest):
                earliest = next_at
        if earliest is None:
            return POLL
        return min(POLL, max(MIN_SLEEP, (earliest - self._now_ms()) / 1000))

    def __repr__(self) -> str:
        state = "running" if self._task is not None else "stopped"
        return f"<ExpiryTimer {state}, {self.expired} expired>"


async def settle_mode(
    storage: Storage, collection: Collection[Any], bucket: str, marker_ttl: float, *, allowed: bool
) -> None:
    """Decide, once, who removes the expired entities of ``collection`` from ``bucket``: the server (its
    per-message TTL, if the storage can turn it on and ``allowed``), else the nodes. Storage errors pass
    (asked again at the next write)."""
    mode = collection.sync.expiry
    if not mode.unknown:
        return
    allow_ttl = getattr(storage, "allow_ttl", None)
    if not allowed or allow_ttl is None:
        mode.server = False
    else:
        mode.server = bool(await allow_ttl(bucket, marker_ttl))
        mode.marker_ttl = marker_ttl if mode.server else None
    logger.debug(
        "%s: expired entities are removed by %s",
        collection.name,
        "the server" if mode.server else "the nodes",
    )
