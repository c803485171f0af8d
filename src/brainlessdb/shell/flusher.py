"""Flusher: writes what collections changed, in the background and on demand.

One flush round takes every collection's pending writes (``SyncState.take_writes``), sends them all at once
through the storage (pipelined, acknowledgements gathered), and reports each outcome back. A conflicting
write is merged with what the bucket holds and retried within the same flush. Rounds never overlap (a
lock), so a manual ``flush()`` during a background round waits for it and then writes what is left: an
entity is never written twice for the same change. Failures never stop the loop: they are logged, kept
in the collection's sync state, retried with backoff, and raised by the next ``flush()``/``stop()``
that cannot write them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

from brainlessdb.core.collection import Collection
from brainlessdb.core.sync.outbox import PendingWrite
from brainlessdb.core.sync.schema_sync import decode_schema, encode_schema
from brainlessdb.errors import ConflictError, DecodeError, FlushError, SchemaError, StorageError
from brainlessdb.retry import Backoff, cancel_and_wait
from brainlessdb.storage.base import Storage, Write

logger = logging.getLogger(__name__)

CONFLICT_ROUNDS: Final = 8
BACKOFF_START: Final = 0.1  # seconds before the first retry of a failed background flush
BACKOFF_MAX: Final = 5.0


class Flusher:
    """Writes pending changes of a set of collections to a storage."""

    def __init__(
        self,
        storage: Storage,
        collections: Callable[[], Iterable[Collection[Any]]],
        bucket_of: Callable[[Collection[Any]], Awaitable[str]],
        schema_bucket: Callable[[], Awaitable[str]],
        interval: float,
        on_written: Callable[[Collection[Any], list[str]], None] | None = None,
    ) -> None:
        self._storage = storage
        self._collections = collections
        self._bucket_of = bucket_of
        self._schema_bucket = schema_bucket
        self.interval = interval
        self._on_written = on_written
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # Something changed: flush after the interval. Called for every change, hence bound directly.
        self.wake: Callable[[], None] = self._wake.set
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(BACKOFF_START, BACKOFF_MAX)
        self.stats = {"rounds": 0, "writes": 0, "conflicts": 0, "errors": 0}

    def __repr__(self) -> str:
        state = "stopped" if self._task is None else "flushing" if self._lock.locked() else "running"
        backoff = self._backoff
        stats = ", ".join(f"{name}={count}" for name, count in self.stats.items())
        return (
            f"<Flusher {state} every {self.interval:g}s, {backoff.failures} failed rounds in a row "
            f"(next retry in {backoff.delay:g}s), {stats}>"
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="brainlessdb-flusher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        backoff = self._backoff
        backoff.reset()
        while True:
            await self._wake.wait()
            # Changes made during the interval join this round: that is what batches them.
            await asyncio.sleep(self.interval)
            self._wake.clear()
            try:
                failed = await self.flush(raise_errors=False)
            except Exception:
                logger.exception("background flush failed")
                failed = True
            if failed:
                await asyncio.sleep(backoff.next())
                self._wake.set()
            else:
                backoff.reset()

    async def flush(
        self, collections: Sequence[Collection[Any]] | None = None, *, raise_errors: bool = True
    ) -> bool:
        """Write pending changes; True if errors left some unwritten (raised as FlushError if asked)."""
        chosen = list(self._collections()) if collections is None else list(collections)
        async with self._lock:
            self.stats["rounds"] += 1
            for _ in range(CONFLICT_ROUNDS):
                busy = [c for c in chosen if c.sync.has_pending()]
                if not busy:
                    break
                conflicts = await asyncio.gather(*(self._flush_collection(c) for c in busy))
                if not any(conflicts):
                    break
            else:
                # Still meeting newer revisions after every round: reported, and retried later.
                for collection, keys in zip(busy, conflicts, strict=True):
                    outbox = collection.sync.outbox
                    pending = set(outbox.pending_keys())
                    for key in keys:
                        if key in pending:
                            outbox.errors.setdefault(key, ConflictError(key, None))
        errors: dict[str, BaseException] = {}
        for collection in chosen:
            sync = collection.sync
            for key, error in sync.errors().items():
                errors[f"{collection.name}/{key}"] = error
            if sync.schema.error is not None:
                # Nothing of a collection is written before its schema is stored.
                for key in sync.outbox.pending_keys():
                    errors.setdefault(f"{collection.name}/{key}", sync.schema.error)
        if errors and raise_errors:
            first = next(iter(errors.values()))
            raise FlushError(f"{len(errors)} change(s) could not be written; first: {first}", errors)
        return bool(errors)

    async def _flush_collection(self, collection: Collection[Any]) -> list[str]:
        """One round for one collection; the keys whose conflict needs another round."""
        sync = collection.sync
        outbox = sync.outbox
        if sync.schema.pending:
            try:
                stored = await self._write_schema(collection)
            except StorageError as exc:
                sync.schema.failed(exc)
                stored = False
            if not stored:
                return []
        writes = outbox.take_writes()
        if not writes:
            return []
        try:
            bucket = await self._bucket_of(collection)
            results = await self._storage.write(bucket, writes)  # a PendingWrite is a Write
        except BaseException as exc:
            # Whatever happened (even cancellation by stop()), these writes are no longer in flight.
            for write in writes:
                outbox.failed(write, exc)
            if isinstance(exc, StorageError):
                self.stats["errors"] += len(writes)
                logger.warning("%s: %d change(s) not written: %s", collection.name, len(writes), exc)
                return []
            raise
        self.stats["writes"] += len(writes)
        conflicts: list[PendingWrite] = []
        for write, result in zip(writes, results, strict=True):
            if isinstance(result, ConflictError):
                conflicts.append(write)
            elif isinstance(result, BaseException):
                self.stats["errors"] += 1
                outbox.failed(write, result)
                logger.warning("%s/%s not written: %s", collection.name, write.key, result)
            else:
                outbox.written(write, result)
        if self._on_written is not None:
            self._on_written(collection, [w.key for w in writes])
        if not conflicts:
            return []
        self.stats["conflicts"] += len(conflicts)
        try:
            currents = await asyncio.gather(
                *(self._storage.get(bucket, w.key) for w in conflicts), return_exceptions=True
            )
        except BaseException as exc:
            for write in conflicts:
                outbox.failed(write, exc)
            raise
        for write, current in zip(conflicts, currents, strict=True):
            if isinstance(current, BaseException):
                outbox.failed(write, current)
            else:
                sync.conflicted(write, current)
        return [write.key for write in conflicts]

    async def _write_schema(self, collection: Collection[Any]) -> bool:
        """Store the collection's schema (merged with a stored one); False if it cannot be, for now."""
        sync = collection.sync.schema
        schema = collection.schema
        if schema is None:
            return True
        bucket = await self._schema_bucket()
        for _ in range(CONFLICT_ROUNDS):
            [result] = await self._storage.write(
                bucket, [Write(collection.name, encode_schema(schema), sync.revision or 0)]
            )
            if isinstance(result, int):
                sync.stored(schema, result)
                return True
            if not isinstance(result, ConflictError):
                sync.failed(result)
                return False
            current = await self._storage.get(bucket, collection.name)
            if current is None:
                sync.lost()
                continue
            try:
                stored = decode_schema(current.value)
            except (DecodeError, SchemaError) as exc:
                sync.failed(exc)
                return False
            merged = sync.conflicted(stored, current.revision)
            if merged is None:
                return True
            schema = merged
        return False
