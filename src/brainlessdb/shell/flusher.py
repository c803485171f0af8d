"""Flusher: writes what collections changed, in the background and on demand.

One flush round takes every collection's pending writes (``SyncState.take_writes``), sends them all at once
through the storage (pipelined, acknowledgements gathered), and reports each outcome back. A conflicting
write is merged with what the bucket holds and retried within the same flush. Rounds never overlap (a
lock), so a manual ``flush()`` during a background round waits for it and then writes what is left: an
entity is never written twice for the same change. Failures never stop the loop: they are kept in the
collection's sync state, retried with backoff, and raised by the next ``flush()``/``stop()`` that cannot
write them (see ``Flusher.flush`` for which).

Logging stays quiet under an outage: one summary line per round that left changes unwritten (how many,
in which collections, the causes, the next retry), never one per entity; each entity's failure is logged
at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from brainlessdb.core.collection import Collection
from brainlessdb.core.names import SCHEMA_KEY
from brainlessdb.core.sync.outbox import PendingWrite
from brainlessdb.core.sync.schema_sync import decode_schema, encode_schema
from brainlessdb.errors import (
    ConflictError,
    DecodeError,
    EncodeError,
    FlushError,
    SchemaError,
    StorageError,
    TooLargeError,
)
from brainlessdb.retry import Backoff, cancel_and_wait
from brainlessdb.storage.base import Op, Storage, Write

logger = logging.getLogger(__name__)

CONFLICT_ROUNDS: Final = 8
BACKOFF_START: Final = 0.1  # seconds before the first retry of a failed background flush
BACKOFF_MAX: Final = 5.0
SUMMARY_NAMES: Final = 4  # collections and causes named in a round's summary line

NEVER_WRITTEN: Final = (SchemaError, EncodeError, TooLargeError)
"""Errors of a version that can never be written as it is (too large, not fitting the stored schema): only
a new change of the entity can cure them, so they are not retried with backoff, and reported once."""


def can_never_be_written(error: BaseException) -> bool:
    return isinstance(error, NEVER_WRITTEN)


class Flusher:
    """Writes pending changes of a set of collections to a storage."""

    def __init__(
        self,
        storage: Storage,
        collections: Callable[[], Iterable[Collection[Any]]],
        bucket_of: Callable[[Collection[Any]], Awaitable[str]],
        interval: float,
        on_written: Callable[[Collection[Any], list[str]], None] | None = None,
    ) -> None:
        self._storage = storage
        self._collections = collections
        self._bucket_of = bucket_of
        self.interval = interval
        self._on_written = on_written
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # Something changed: flush after the interval. Called for every change, hence bound directly.
        self.wake: Callable[[], None] = self._wake.set
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(BACKOFF_START, BACKOFF_MAX)
        self.stats: dict[str, float] = {"rounds": 0, "writes": 0, "conflicts": 0, "errors": 0, "seconds": 0.0}
        # Per collection: since when (monotonic) the rounds have found it with changes waiting, unbroken.
        self._pending_since: dict[str, float] = {}
        # Per unwritable key, the version already raised by a flush() / already logged as a warning.
        self._raised: dict[str, object] = {}
        self._warned: dict[str, object] = {}
        # What the last round left unwritten (of which collections), and the versions of what can never be
        # written as it is.
        self._unwritten: dict[str, BaseException] = {}
        self._unwritten_versions: dict[str, object] = {}
        self._unwritten_names: set[str] = set()

    def __repr__(self) -> str:
        state = "stopped" if self._task is None else "flushing" if self._lock.locked() else "running"
        backoff = self._backoff
        stats = ", ".join(f"{name}={count:g}" for name, count in self.stats.items())
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
                retry = await self.flush(raise_errors=False)
            except Exception:
                logger.exception("background flush failed")
                self._unwritten = {}
                retry = True
            if retry:
                delay = backoff.next()
                self._log_round(f"next retry in {delay:.1f}s")
                await asyncio.sleep(delay)
                self._wake.set()
            else:
                self._log_round("retried when the entities change")
                backoff.reset()

    async def flush(
        self,
        collections: Sequence[Collection[Any]] | None = None,
        *,
        raise_errors: bool = True,
        report_all: bool = False,
    ) -> bool:
        """Write pending changes; True if some are left unwritten that a retry may write.

        With ``raise_errors``, what is left unwritten is raised as a ``FlushError`` mapping each change to
        its cause, with one exception, so that one entity nobody can write does not fail every caller: an
        entity version that can never be written as it is (too large for the storage, or not fitting the
        schema another node stored: ``NEVER_WRITTEN``) fails the first flush that meets it, and after that
        only the flushes that had nothing else to write. A flush that was called with changes of its own
        pending (anything but such entities) and wrote them all returns, whatever such an entity holds;
        it stays pending, in ``sync.errors()``, ``stats()`` and the log, until it changes. A failure that
        may pass (an outage, a conflict, a denial) fails every flush. ``report_all`` (``stop()``) raises
        everything unwritten.
        """
        chosen = list(self._collections()) if collections is None else list(collections)
        own = _has_own_changes(chosen)  # pending at the call: what this caller waits for
        async with self._lock:
            started = time.monotonic()
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
            done = time.monotonic()
            self.stats["seconds"] += done - started
            for collection in chosen:
                if collection.sync.has_pending():
                    self._pending_since.setdefault(collection.name, started)
                else:
                    self._pending_since.pop(collection.name, None)
        errors: dict[str, BaseException] = {}
        versions: dict[str, object] = {}
        for collection in chosen:
            sync = collection.sync
            unwritten = sync.errors()
            if sync.schema.error is not None:
                # Nothing of a collection is written before its schema is stored.
                for key in sync.outbox.pending_keys():
                    unwritten.setdefault(key, sync.schema.error)
            for key, error in unwritten.items():
                errors[f"{collection.name}/{key}"] = error
                if can_never_be_written(error):
                    # Raised once per version: the entity's, or the error itself for the schema.
                    entity = collection.entities.get(key)
                    versions[f"{collection.name}/{key}"] = str(error) if entity is None else entity._version
        names = {collection.name for collection in chosen}
        self._unwritten = errors
        self._unwritten_versions = versions
        self._unwritten_names = names
        retry = any(not can_never_be_written(error) for error in errors.values())
        if not raise_errors:
            return retry
        fresh = any(self._raised.get(key) != version for key, version in versions.items())
        raising = bool(errors) and (report_all or retry or fresh or not own)
        if raising:
            self._raised = _replaced(self._raised, names, versions)
        if retry:
            self._wake.set()  # retried in the background, with backoff
        self._log_round("raised by flush()" if raising else "left out of flush(): reported before")
        if raising:
            first = next(iter(errors.values()))
            raise FlushError(f"{len(errors)} change(s) could not be written; first: {first}", errors)
        return retry

    def pending_for(self, name: str) -> float:
        """Seconds collection ``name`` has had changes waiting without a break, as the flush rounds saw it
        (0 when the last round wrote everything): the age of its oldest pending change, within a round."""
        since = self._pending_since.get(name)
        return 0.0 if since is None else time.monotonic() - since

    def _log_round(self, outcome: str) -> None:
        """One line for the round just made, if it left changes unwritten: a warning, unless all of them are
        versions that can never be written and were logged as a warning already."""
        errors = self._unwritten
        if not errors:
            return
        versions = self._unwritten_versions
        fresh = [key for key in errors if key not in versions or self._warned.get(key) != versions[key]]
        self._warned = _replaced(self._warned, self._unwritten_names, versions)
        level = logging.WARNING if fresh else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "flush round %d: %s; %s", self.stats["rounds"], summary(errors), outcome)

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
        if sync.expiry.unknown:
            # Asked before taking the writes, which then carry their TTL if the server removes expired ones.
            with contextlib.suppress(StorageError):
                await self._bucket_of(collection)
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
                if logger.isEnabledFor(logging.DEBUG):
                    for write in writes:
                        logger.debug("%s/%s not written: %r", collection.name, write.key, exc)
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
                logger.debug("%s/%s not written: %r", collection.name, write.key, result)
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
        if any(not isinstance(current, BaseException) and current is not None for current in currents):
            # What was met may have been written under a schema this node's watch has not brought yet (an
            # evolution): that schema was stored before it, so it is read now, and what was met under it.
            await self._refresh_schema(collection, bucket)
        for write, current in zip(conflicts, currents, strict=True):
            if isinstance(current, BaseException):
                outbox.failed(write, current)
            else:
                sync.conflicted(write, current)
        return [write.key for write in conflicts]

    async def _refresh_schema(self, collection: Collection[Any], bucket: str) -> None:
        """Apply the collection's stored schema now, if newer than the one this node knows (best effort:
        if it cannot be read, the watch brings it)."""
        try:
            entry = await self._storage.get(bucket, SCHEMA_KEY)
        except StorageError:
            return
        if entry is not None:
            collection.sync.schema.apply(entry)

    async def _write_schema(self, collection: Collection[Any]) -> bool:
        """Store the collection's schema (merged with a stored one); False if it cannot be, for now."""
        sync = collection.sync.schema
        schema = collection.schema
        if schema is None:
            return True
        bucket = await self._bucket_of(collection)
        for _ in range(CONFLICT_ROUNDS):
            [result] = await self._storage.write(
                bucket, [Write(SCHEMA_KEY, encode_schema(schema), sync.revision or 0)]
            )
            if isinstance(result, int):
                sync.stored(schema, result)
                return True
            if not isinstance(result, ConflictError):
                sync.failed(result)
                return False
            current = await self._storage.get(bucket, SCHEMA_KEY)
            if current is None or current.op is not Op.PUT:
                sync.lost(None if current is None else current.revision)
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


def _has_own_changes(collections: Iterable[Collection[Any]]) -> bool:
    """Whether anything is pending in ``collections`` besides entities that can never be written as they
    are (what a flush called now has of its caller's to write)."""
    for collection in collections:
        sync = collection.sync
        if sync.schema.error is not None and can_never_be_written(sync.schema.error):
            continue  # nothing of it is written before its schema is
        if sync.schema.pending:
            return True
        errors = sync.outbox.errors
        for key in sync.outbox.pending_keys():
            error = errors.get(key)
            if error is None or not can_never_be_written(error):
                return True
    return False


def _replaced(
    known: dict[str, object], names: Iterable[str], versions: Mapping[str, object]
) -> dict[str, object]:
    """``known`` with the keys of the collections ``names`` replaced by ``versions``."""
    prefixes = tuple(f"{name}/" for name in names)
    kept = {key: version for key, version in known.items() if not key.startswith(prefixes)}
    kept.update(versions)
    return kept


def summary(errors: Mapping[str, BaseException]) -> str:
    """What a round left unwritten, in one line: how many, in which collections, and why."""
    collections = Counter(key.partition("/")[0] for key in errors)
    causes = Counter(type(error).__name__ for error in errors.values())
    example: dict[str, BaseException] = {}
    for error in errors.values():
        example.setdefault(type(error).__name__, error)
    where = ", ".join(f"{name} {count}" for name, count in collections.most_common(SUMMARY_NAMES))
    if len(collections) > SUMMARY_NAMES:
        where += f" and {len(collections) - SUMMARY_NAMES} more collections"
    why = "; ".join(
        f"{count} {name} (e.g. {example[name]})" for name, count in causes.most_common(SUMMARY_NAMES)
    )
    if len(causes) > SUMMARY_NAMES:
        why += f"; {len(causes) - SUMMARY_NAMES} more kinds of errors"
    return f"{len(errors)} change(s) not written ({where}): {why}"
