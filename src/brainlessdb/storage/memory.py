"""``MemoryStorage``: the storage contract kept in process memory, for the in-memory mode and for tests.

It is a real implementation, not a mock: every bucket has one revision counter (like a stream's sequence),
compare-and-set follows NATS' ``Nats-Expected-Last-Subject-Sequence`` rule (a delete or purge marker is an
entry with its own revision; ``0`` means the key has no entry at all), and ``purge`` leaves a ``PURGE``
marker as a NATS KV purge does, so both backends pass the same contract tests. One entry (the last) is kept
per key, which is NATS with ``history=1``. Several nodes of one process may share the buckets: either use
the same instance, or give each node its own handle from ``share()`` so that its ``close()`` ends only its
own watches.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Final

from brainlessdb.errors import ConflictError, StorageError, TooLargeError
from brainlessdb.storage.base import (
    CaughtUp,
    Entry,
    Op,
    Retained,
    WatchBatch,
    WatchEvent,
    Write,
    check_key,
    flatten,
    validate_bucket,
)

DEFAULT_MAX_VALUE_SIZE: Final = 1024 * 1024
"""The largest value a write may carry by default: 1 MiB, NATS' default ``max_payload``."""


class _Closed:
    """Queue item that ends one watch."""


_CLOSED: Final = _Closed()


@dataclass(eq=False)
class _Watch:
    owner: MemoryStorage
    queue: asyncio.Queue[Entry | _Closed] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class _Bucket:
    revision: int = 0
    entries: dict[str, Entry] = field(default_factory=dict)
    watches: set[_Watch] = field(default_factory=set)
    expiring: bool = False
    deadlines: dict[str, float] = field(default_factory=dict)  # monotonic time a key's value expires
    origin: str = field(default_factory=lambda: secrets.token_hex(8))  # tells a recreated bucket apart

    def append(self, key: str, value: bytes, op: Op, ttl: float | None = None) -> Entry:
        self.revision += 1
        entry = Entry(key=key, revision=self.revision, value=value, op=op, time_ns=time.time_ns())
        self.entries[key] = entry
        if ttl is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = time.monotonic() + ttl
        for watch in self.watches:
            # Unbounded on purpose: a writer in the same process must never wait for a slow reader.
            watch.queue.put_nowait(entry)
        return entry

    def last(self, key: str) -> Entry | None:
        """The key's last entry, unless its ttl has passed (it is then removed, as NATS removes it)."""
        deadline = self.deadlines.get(key)
        if deadline is not None and time.monotonic() >= deadline:
            del self.deadlines[key]
            self.entries.pop(key, None)
        return self.entries.get(key)


class MemoryStorage:
    """The storage contract in process memory: buckets, revisions, compare-and-set and watches."""

    def __init__(self, *, max_value_size: int = DEFAULT_MAX_VALUE_SIZE) -> None:
        self.max_value_size = max_value_size
        """The largest value a write may carry; a larger one fails with ``TooLargeError``, as on NATS."""
        self._buckets: dict[str, _Bucket] = {}
        self._watches: set[_Watch] = set()
        self._closed = False

    def share(self) -> MemoryStorage:
        """Another handle on the same buckets, with its own watches and its own ``close()``."""
        other = MemoryStorage(max_value_size=self.max_value_size)
        other._buckets = self._buckets
        return other

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._watches)} watches"
        return f"<MemoryStorage {len(self._buckets)} buckets, {state}>"

    async def open_bucket(self, bucket: str, *, create: bool = True, expiring: bool = False) -> bool:
        """Make sure ``bucket`` exists (creating it when ``create``); False if absent and not created."""
        self._check_open()
        validate_bucket(bucket)
        if bucket not in self._buckets:
            if not create:
                return False
            self._buckets[bucket] = _Bucket(expiring=expiring)
        elif expiring and not self._buckets[bucket].expiring:
            raise StorageError(f"bucket {bucket!r} exists without per-message ttl")
        return True

    async def list_buckets(self, prefix: str) -> list[str]:
        """The names of the existing buckets that start with ``prefix``, sorted."""
        self._check_open()
        return sorted(name for name in self._buckets if name.startswith(prefix))

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        """Apply the writes in order; for each, its new revision or the error (a ``ConflictError`` on CAS)."""
        data = self._bucket(bucket)
        results: list[int | Exception] = []
        for write in writes:
            error = check_key(write.key)
            if error is not None:
                results.append(error)
                continue
            if len(write.value) > self.max_value_size:
                results.append(TooLargeError(write.key, len(write.value), self.max_value_size))
                continue
            if write.ttl is not None and not data.expiring:
                results.append(StorageError(f"bucket {bucket!r} takes no ttl"))
                continue
            last = data.last(write.key)
            if write.expected_revision is not None:
                actual = 0 if last is None else last.revision
                if actual != write.expected_revision:
                    results.append(ConflictError(write.key, write.expected_revision))
                    continue
            op = Op.DELETE if write.delete else Op.PUT
            results.append(data.append(write.key, write.value, op, write.ttl).revision)
        return results

    async def get(self, bucket: str, key: str) -> Entry | None:
        """The last entry of ``key`` (possibly a delete or purge marker), or None if the key has none."""
        data = self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        return data.last(key)

    async def last_revision(self, bucket: str) -> int:
        """The greatest revision in the bucket (0 when it never had an entry)."""
        return self._bucket(bucket).revision

    async def retained(self, bucket: str) -> Retained:
        """The bucket's first retained revision, its last, and its origin (see ``Retained``)."""
        data = self._bucket(bucket)
        first = min((entry.revision for entry in data.entries.values()), default=data.revision + 1)
        return Retained(first, data.revision, data.origin)

    async def purge(self, bucket: str, key: str) -> None:
        """Replace every entry of ``key`` by one ``PURGE`` marker, as a NATS KV purge does."""
        data = self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        data.append(key, b"", Op.PURGE)

    async def forget(self, bucket: str, key: str) -> None:
        """Remove every entry of ``key``, leaving nothing behind (as a NATS stream purge by subject)."""
        data = self._bucket(bucket)
        data.entries.pop(key, None)

    def watch(self, bucket: str, *, after: int | None = None) -> AsyncGenerator[WatchEvent, None]:
        """Entries of ``bucket`` forever: first a replay, then a ``CaughtUp``, then live changes.

        ``after=None`` replays the last entry of every key; ``after=n`` every entry with a revision above
        ``n``. The iterator ends when this storage is closed.
        """
        return flatten(self.watch_batches(bucket, after=after))

    async def watch_batches(
        self, bucket: str, *, after: int | None = None
    ) -> AsyncGenerator[WatchBatch, None]:
        """``watch()`` in batches: the whole replay and its ``CaughtUp``, then what arrived meanwhile."""
        data = self._bucket(bucket)
        # Snapshot and registration happen without an await in between, so no entry is missed or doubled.
        caught_up = data.revision
        entries = sorted(
            (entry for entry in data.entries.values() if after is None or entry.revision > after),
            key=lambda entry: entry.revision,
        )
        replay: WatchBatch = [*entries, CaughtUp(caught_up)]
        watch = _Watch(owner=self)
        data.watches.add(watch)
        self._watches.add(watch)
        queue = watch.queue
        try:
            yield replay
            while True:
                item = await queue.get()
                batch: WatchBatch = []
                while not isinstance(item, _Closed):
                    batch.append(item)
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    yield batch
                if isinstance(item, _Closed):
                    return
        finally:
            data.watches.discard(watch)
            self._watches.discard(watch)

    async def close(self) -> None:
        """End every watch of this handle; the buckets stay for the other handles that share them."""
        self._closed = True
        for watch in list(self._watches):
            watch.queue.put_nowait(_CLOSED)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the storage is closed")

    def _bucket(self, bucket: str) -> _Bucket:
        self._check_open()
        validate_bucket(bucket)
        try:
            return self._buckets[bucket]
        except KeyError:
            raise StorageError(f"no bucket {bucket!r}: open_bucket() it first") from None
