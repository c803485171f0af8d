"""Snapshots: each collection's memory written to a local file now and then, and read back at start.

With ``snapshot_dir``, a node keeps one file per collection (``<dir>/<bucket>.snapshot``, see
``core.snapshot``). A background task writes the snapshot of every followed collection whose watch moved
since its last one, every ``interval`` seconds and once more at ``stop()``: the content is taken at once
(one consistent state), then written in a thread to a temporary file, flushed to disk and renamed over
the old one, so a crash at any moment leaves the previous snapshot or the new one, whole.

When a collection is attached, its snapshot is read, checked against the bucket (``core.snapshot.unusable``)
and restored; the watch then resumes after the snapshot's revision. A snapshot that cannot be used (missing,
corrupt, of another namespace or format, of a recreated bucket, of another schema version, or older than
what the bucket still holds) is set aside with a warning, and the bucket is replayed in full: a snapshot
makes a start faster, never different.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from brainlessdb.core import snapshot, snapshot_format
from brainlessdb.core.collection import Collection
from brainlessdb.errors import DecodeError
from brainlessdb.retry import cancel_and_wait
from brainlessdb.shell.follower import BucketFollower
from brainlessdb.storage.base import Retained, Storage

logger = logging.getLogger(__name__)

SUFFIX: Final = ".snapshot"
REFETCH_AT_ONCE: Final = 256  # reads of pending entities' stored versions in flight at once
T = TypeVar("T")


class Snapshots:
    """The snapshots of one database's collections: restored at attach, written in the background."""

    def __init__(
        self,
        directory: Path,
        storage: Storage,
        namespace: str,
        retention: float,
        now_ms: Callable[[], int],
        interval: float,
    ) -> None:
        self.directory = directory
        self.interval = interval
        self._storage = storage
        self._namespace = namespace
        self._retention_ms = retention * 1000
        self._now_ms = now_ms
        self._origins: dict[str, str] = {}
        self._written: dict[str, int] = {}  # revision of each bucket's last snapshot written
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.restored = 0
        """How many collections were restored from a snapshot (the others were replayed in full)."""
        self.refused = 0
        """How many snapshots were found but could not be used."""
        self.writes = 0
        self.failures = 0

    def path(self, bucket: str) -> Path:
        """The snapshot file of ``bucket``."""
        return self.directory / f"{bucket}{SUFFIX}"

    async def _retained(self, bucket: str) -> Retained | None:
        retained = getattr(self._storage, "retained", None)
        if retained is None:
            return None
        found: Retained = await retained(bucket)
        self._origins[bucket] = found.origin
        return found

    # -- restoring ---------------------------------------------------------------------------------

    async def restore(self, collection: Collection[Any], bucket: str) -> int | None:
        """Restore ``collection`` from its snapshot: the revision to resume its watch after, or None (no
        usable snapshot: replay the bucket in full). ``UnavailableError`` if NATS does not answer."""
        path = self.path(bucket)
        await asyncio.to_thread(remove_leftovers, path)
        retained = await self._retained(bucket)
        if retained is None:
            logger.warning("%s: the storage cannot tell what it retains: snapshots are not used", bucket)
            return None
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            logger.info("%s: no snapshot in %s, replaying the bucket", bucket, self.directory)
            return None
        except OSError as exc:
            self._refuse(path, f"it cannot be read ({exc})")
            return None
        try:
            found = await asyncio.to_thread(without_collector, snapshot_format.decode, data)
        except DecodeError as exc:
            self._refuse(path, str(exc))
            return None
        schema = collection.schema
        expected = snapshot.Expected(
            namespace=self._namespace,
            collection=collection.name,
            bucket=bucket,
            origin=retained.origin,
            first_revision=retained.first,
            last_revision=retained.last,
            schema_version=None if schema is None else schema.version,
            now_ms=self._now_ms(),
            retention_ms=self._retention_ms,
        )
        reason = snapshot.unusable(found, expected)
        if reason is not None:
            self._refuse(path, reason)
            return None
        without_collector(snapshot.restore, collection, found)
        # A change of these was pending when the snapshot was taken: what the bucket holds stands.
        apply, pending = collection.sync.inbox.apply, found.refetch
        for start in range(0, len(pending), REFETCH_AT_ONCE):
            keys = pending[start : start + REFETCH_AT_ONCE]
            for entry in await asyncio.gather(*(self._storage.get(bucket, uuid) for uuid in keys)):
                if entry is not None:
                    apply(entry)
        self.restored += 1
        self._written[bucket] = found.revision
        logger.info(
            "%s: %d entities restored from its snapshot of revision %d; replaying the %d after it",
            bucket,
            len(found.entities),
            found.revision,
            retained.last - found.revision,
        )
        return found.revision

    def _refuse(self, path: Path, reason: str) -> None:
        self.refused += 1
        logger.warning("snapshot %s not used, the bucket is replayed in full: %s", path, reason)

    # -- writing -----------------------------------------------------------------------------------

    def start(self, followed: Callable[[], list[tuple[Collection[Any], BucketFollower]]]) -> None:
        """Write the snapshots every ``interval`` seconds (``followed``: each collection and its watch)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(followed), name="brainlessdb-snapshots")

    async def _run(self, followed: Callable[[], list[tuple[Collection[Any], BucketFollower]]]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.write_all(followed())

    async def stop(self, followed: list[tuple[Collection[Any], BucketFollower]]) -> None:
        """Stop the background writes, then write each snapshot once more (those that moved)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.write_all(followed)

    async def write_all(self, followed: list[tuple[Collection[Any], BucketFollower]]) -> None:
        """Write the snapshot of each collection whose watch applied something since its last one."""
        for collection, follower in followed:
            try:
                await self.write(collection, follower)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The next round tries again; meanwhile the previous snapshot (or a full replay) serves.
                self.failures += 1
                logger.exception("%s: writing its snapshot failed", follower.bucket)

    async def write(self, collection: Collection[Any], follower: BucketFollower) -> bool:
        """Write the snapshot of ``collection`` if its watch moved since the last one; True if written."""
        bucket = follower.bucket
        async with self._lock:
            if self._stale(follower) or follower.applied == self._written.get(bucket):
                return False
            origin = self._origins.get(bucket)
            if origin is None:
                retained = await self._retained(bucket)
                if retained is None:
                    return False
                origin = retained.origin
            if self._stale(follower):
                return False
            # Taken at once, without a suspension: one consistent state, every entry up to ``revision`` in.
            revision = follower.applied
            taken = snapshot.capture(
                collection,
                namespace=self._namespace,
                bucket=bucket,
                origin=origin,
                revision=revision,
                now_ms=self._now_ms(),
            )
            data = snapshot_format.encode(taken)
            await asyncio.to_thread(write_atomically, self.path(bucket), data)
            self._written[bucket] = revision
            self.writes += 1
            return True

    @staticmethod
    def _stale(follower: BucketFollower) -> bool:
        """Whether memory may not stand for the bucket now: before the first load, or during a resync."""
        return not follower.caught_up.is_set() or follower.resyncing

    def stats(self) -> dict[str, int]:
        """Collections restored from a snapshot, snapshots refused, snapshots written, writes failed."""
        return {
            "restored": self.restored,
            "refused": self.refused,
            "written": self.writes,
            "failed": self.failures,
        }

    def __repr__(self) -> str:
        state = "writing" if self._task is not None else "idle"
        return (
            f"<Snapshots {self.directory} {state}: {self.restored} restored, {self.refused} refused, "
            f"{self.writes} written, {self.failures} failed>"
        )


def without_collector(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` with the cyclic garbage collector paused: a decode or restore of a million
    entities would make it scan the growing heap again and again (costing more than the work itself),
    and none of what they make is garbage."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return function(*args)
    finally:
        if collecting:
            gc.enable()


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files of writes of ``path`` that a crash cut off (one directory per node)."""
    for leftover in path.parent.glob(f"{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``: written beside it, flushed to disk, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: a write cut off by stop() may still run in its thread beside the final one.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    # The rename itself is durable once the directory is.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
