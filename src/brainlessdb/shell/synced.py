"""``db.synced()``: waiting until this node and NATS agree, on both sides of the sync.

Two halves, each cheap where nothing is outstanding. Writes: every change pending at the call is
acknowledged by NATS (a flush, repeated through an outage until it writes everything). Reads: each
collection's watch has applied its bucket up to the bucket's last revision, read once the writes are in
(so this node's own writes are among what it waits for; later writes of other nodes are not). Failures
that may pass (an outage, an election) are waited out with backoff; what can never succeed is raised.
The caller bounds the whole with a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from brainlessdb.core.collection import Collection
from brainlessdb.errors import FlushError, UnavailableError
from brainlessdb.retry import Backoff
from brainlessdb.shell.flusher import Flusher, can_never_be_written
from brainlessdb.shell.lag import WatchLag
from brainlessdb.shell.watches import CollectionWatches
from brainlessdb.storage.base import Storage

RETRY_START: Final = 0.05  # seconds before asking NATS again after it did not answer
RETRY_MAX: Final = 2.0


class Syncing:
    """What ``synced()`` needs of a started database: its flusher, watches, storage and lag figures."""

    def __init__(
        self,
        flusher: Flusher,
        watches: CollectionWatches,
        storage: Storage,
        bucket_of: Callable[[str], str],
        ready: Callable[[Collection[Any]], Awaitable[None]],
        lag: WatchLag,
    ) -> None:
        self._flusher = flusher
        self._watches = watches
        self._storage = storage
        self._bucket_of = bucket_of
        self._ready = ready
        self._lag = lag

    async def synced(self, collections: Iterable[Collection[Any]]) -> None:
        """Wait until the changes pending now are written and every collection caught up with its bucket.

        Raises:
            FlushError: changes that can never be written as they are (too large, or refused by the stored
                schema): waiting would not make them acknowledged.
            StorageError: a lasting failure (a permission denied); an outage is waited out instead.
        """
        await self._written()
        await asyncio.gather(*(self._caught_up(collection) for collection in list(collections)))

    async def _written(self) -> None:
        backoff = Backoff(RETRY_START, RETRY_MAX)
        while True:
            try:
                await self._flusher.flush()
                return
            except FlushError as error:
                if all(can_never_be_written(cause) for cause in error.errors.values()):
                    raise
            await asyncio.sleep(backoff.next())

    async def _caught_up(self, collection: Collection[Any]) -> None:
        backoff = Backoff(RETRY_START, RETRY_MAX)
        while True:
            try:
                await self._ready(collection)  # its first load (retried by the watches through an outage)
                last = await self._storage.last_revision(self._bucket_of(collection.name))
                break
            except UnavailableError:
                await asyncio.sleep(backoff.next())
        follower = self._watches.follower(collection.name)
        if follower is None:  # pragma: no cover - a loaded collection is followed
            return
        self._lag.learnt(collection.name, last, follower.applied)
        await follower.wait_for(last)
