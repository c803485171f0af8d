"""Watches: each collection's memory following its bucket, from its first load on.

A collection is attached when the database starts or when it is first used afterwards: its bucket is
opened, its schema read, and a ``BucketFollower`` replays it into the collection's inbox, then keeps
applying live changes. An attach that fails because NATS is unavailable (an outage, an election) is tried
again with backoff until the bucket opens; queries meanwhile wait for it or raise its error. ``ready()``
is what every query awaits: one set lookup once a collection is loaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from brainlessdb.core.collection import Collection
from brainlessdb.core.names import SCHEMA_KEY
from brainlessdb.errors import UnavailableError
from brainlessdb.retry import Backoff
from brainlessdb.shell.follower import BucketFollower
from brainlessdb.storage.base import LocationStorage, Storage

ATTACH_RETRY_START: Final = 0.1  # seconds before opening a collection's bucket again after an outage
ATTACH_RETRY_MAX: Final = 5.0


class CollectionWatches:
    """The followers of a database's collections, attached on first use and retried through outages."""

    def __init__(
        self,
        storage: Storage,
        bucket_of: Callable[[str], str],
        resync_after: float,
        *,
        locations: LocationStorage | None = None,
        peers: tuple[str, ...] = (),
        restore: Callable[[Collection[Any], str], Awaitable[int | None]] | None = None,
    ) -> None:
        self._storage = storage
        # With snapshots: restores a collection before its watch starts, and says after which revision.
        self._restore = restore
        # With locations: the storage's other side, and the peers whose keys each bucket copies.
        self._locations = locations
        self._peers = peers
        self._bucket_of = bucket_of
        self._resync_after = resync_after
        self._followers: dict[str, BucketFollower] = {}
        self._collections: dict[str, Collection[Any]] = {}
        self._attaching: dict[str, asyncio.Task[None]] = {}
        self._stopped = False
        self.loaded: set[Collection[Any]] = set()
        """The collections whose first load is done (never rebound: the database reads it directly)."""

    def attach(self, collection: Collection[Any], retry: Backoff | None = None) -> None:
        """Start following the collection's bucket (once; again after a failure, with ``retry``)."""
        if self._stopped or (retry is None and collection.name in self._attaching):
            return
        delay = 0.0 if retry is None else retry.next()
        task = asyncio.create_task(
            self._follow(collection, delay), name=f"brainlessdb-attach-{collection.name}"
        )
        task.add_done_callback(lambda done: self._attached(collection, done, retry))
        self._attaching[collection.name] = task

    def _attached(self, collection: Collection[Any], task: asyncio.Task[None], retry: Backoff | None) -> None:
        if task.cancelled() or self._stopped:
            return
        if isinstance(task.exception(), UnavailableError):
            # An outage or an election, not a lasting failure: try again until the bucket opens (a read
            # of the collection meanwhile raises the error, or waits for the next attempt).
            if retry is None:
                # 0.1, 0.2, 0.4... up to ATTACH_RETRY_MAX seconds, without jitter.
                retry = Backoff(ATTACH_RETRY_START, ATTACH_RETRY_MAX, jitter=0.0)
            self.attach(collection, retry)

    async def _follow(self, collection: Collection[Any], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        bucket = self._bucket_of(collection.name)
        await self._storage.open_bucket(bucket)
        if self._locations is not None and self._peers:
            await self._locations.source_peers(bucket, self._peers)
        # The schema first: every entity of the replay is then checked against it, as on a running node
        # (the replay gives each key's last entry in revision order, the schema's maybe after entities).
        schema = await self._storage.get(bucket, SCHEMA_KEY)
        if schema is not None:
            collection.sync.schema.apply(schema)
        # From a snapshot, if there is a usable one: only the entries after it are replayed then.
        after = None if self._restore is None else await self._restore(collection, bucket)
        inbox = collection.sync.inbox
        follower = BucketFollower(
            self._storage,
            bucket,
            inbox.apply,
            resync=(inbox.begin_resync, inbox.end_resync),
            resync_after=self._resync_after,
        )
        self._followers[collection.name] = follower
        self._collections[collection.name] = collection
        follower.start(after=after)
        await follower.caught_up.wait()

    async def ready(self, collection: Collection[Any]) -> None:
        """Wait until the collection's first load is done (at once if it is not being attached).

        A collection stays loaded for good: a successful attach is never redone (only a failed one is
        retried), and stopped watches never start again.
        """
        task = self._attaching.get(collection.name)
        if task is None:
            return
        if task.done() and not task.cancelled() and task.exception() is None:
            self.loaded.add(collection)
            return
        await asyncio.shield(task)

    async def catch_up(self, collection: Collection[Any]) -> None:
        """Wait until everything the collection's bucket holds now has been applied."""
        await self.ready(collection)
        target = await self._storage.last_revision(self._bucket_of(collection.name))
        await self._followers[collection.name].wait_for(target)

    def followed(self) -> list[tuple[Collection[Any], str]]:
        """The collections whose bucket is followed, each with its bucket."""
        return [(self._collections[name], follower.bucket) for name, follower in self._followers.items()]

    def followers(self) -> list[tuple[Collection[Any], BucketFollower]]:
        """The collections whose bucket is followed, each with its follower."""
        return [(self._collections[name], follower) for name, follower in self._followers.items()]

    def follower(self, name: str) -> BucketFollower | None:
        """The follower of collection ``name``'s bucket (None until it is attached)."""
        return self._followers.get(name)

    def restarts(self, name: str) -> int:
        """How many times the watch of collection ``name`` was restarted."""
        follower = self._followers.get(name)
        return 0 if follower is None else follower.restarts

    @property
    def resyncs(self) -> int:
        """How many full replays of a bucket were made (after outages longer than the retention)."""
        return sum(follower.resyncs for follower in self._followers.values())

    async def resync(self) -> None:
        """Replay every followed bucket in full and drop what is no longer there."""
        await asyncio.gather(*(follower.resync() for follower in list(self._followers.values())))

    async def stop(self) -> None:
        """Stop every attach and every follower."""
        self._stopped = True
        for task in self._attaching.values():
            task.cancel()
        followers = list(self._followers.values())
        await asyncio.gather(*(follower.stop() for follower in followers), return_exceptions=True)

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return (
            f"<CollectionWatches {state}: {len(self._followers)} followed, {len(self.loaded)} loaded, "
            f"{len(self._attaching) - len(self._followers)} attaching>"
        )
