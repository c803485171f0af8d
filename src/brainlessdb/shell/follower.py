"""BucketFollower: keeps memory in step with one bucket by applying its watch as entries arrive.

The storage's watch replays the bucket, says when it has caught up, then streams live changes, and
survives reconnects by itself. The follower applies every entry through a callback (a collection's
``SyncState.apply``, or the schema handler), records the last applied revision, lets callers wait for the
first catch-up or for a given revision, and restarts the watch from the last applied revision with
backoff if it ever fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from brainlessdb.retry import Backoff, cancel_and_wait
from brainlessdb.storage.base import CaughtUp, Entry, Resumed, Storage

logger = logging.getLogger(__name__)

BACKOFF_START: Final = 0.1  # seconds before the first restart of a failed watch
BACKOFF_MAX: Final = 5.0


class BucketFollower:
    """One supervised watch of one bucket, applied through ``apply``."""

    def __init__(
        self,
        storage: Storage,
        bucket: str,
        apply: Callable[[Entry], None],
        resync: tuple[Callable[[], None], Callable[[], object]] | None = None,
        resync_after: float | None = None,
    ) -> None:
        self.bucket = bucket
        self._storage = storage
        self._apply = apply
        self._resync = resync
        self.resync_after = resync_after
        self.resyncs = 0
        self.resyncing = False
        """True during a full replay that may still drop what memory holds (no snapshot is taken then)."""
        self.applied = 0
        self.restarts = 0
        self.caught_up = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(BACKOFF_START, BACKOFF_MAX)

    def __repr__(self) -> str:
        state = "stopped" if self._task is None else "caught up" if self.caught_up.is_set() else "catching up"
        return (
            f"<BucketFollower {self.bucket} {state}, applied revision {self.applied}, "
            f"{self.restarts} restarts, {self.resyncs} resyncs, {self._backoff.failures} failures in a row "
            f"(next restart in {self._backoff.delay:g}s)>"
        )

    def start(self, *, after: int | None = None) -> None:
        """Follow the bucket: replay it whole, or (``after``: memory holds every entry up to that revision
        already, restored from a snapshot) only the entries after it."""
        if after is not None and after > self.applied:
            self.applied = after
        if self._task is None:
            self._task = asyncio.create_task(self._run(after), name=f"brainlessdb-watch-{self.bucket}")

    async def resync(self) -> None:
        """Replay the whole bucket again, and drop what it no longer holds (after a long outage)."""
        if self._resync is None:
            return
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._begin_resync()
        self._task = asyncio.create_task(
            self._run(None, resyncing=True), name=f"brainlessdb-resync-{self.bucket}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()

    async def wait_for(self, revision: int) -> None:
        """Wait until every entry up to ``revision`` has been applied."""
        await self.caught_up.wait()
        if self.applied >= revision:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, waiter))
        await waiter

    async def _run(self, after: int | None, *, resyncing: bool = False) -> None:
        backoff = self._backoff
        backoff.reset()
        apply = self._apply
        while True:
            restart_now = False
            try:
                # Batches: a load or a burst of writes is applied without a suspension per entry.
                async for batch in self._storage.watch_batches(self.bucket, after=after):
                    last = 0
                    for event in batch:
                        if isinstance(event, Entry):
                            try:
                                apply(event)
                            except Exception:
                                # One bad entry must not stop the bucket's replication.
                                logger.exception("%s: applying entry %s failed", self.bucket, event.key)
                            last = event.revision
                            continue
                        if last:
                            after = self._applied_up_to(last)
                            last = 0
                            backoff.reset()
                        if isinstance(event, Resumed):
                            if self._needs_resync(event):
                                # Deletes may have been forgotten while the watch was down: replay it all.
                                logger.warning(
                                    "%s: watch was down %.0fs, longer than deletes are kept: resyncing",
                                    self.bucket,
                                    event.stalled_for,
                                )
                                self._begin_resync()
                                resyncing, after, restart_now = True, None, True
                                break
                        elif isinstance(event, CaughtUp):
                            if resyncing and self._resync is not None:
                                resyncing = False
                                self._resync[1]()
                                self.resyncing = False
                            # Everything up to the bucket's last revision is in, even revisions whose
                            # entries are gone (overwritten or removed).
                            self.applied = max(self.applied, event.revision)
                            self.caught_up.set()
                            self._wake_waiters()
                    if restart_now:
                        break
                    if last:
                        after = self._applied_up_to(last)
                        backoff.reset()  # entries flow: a later failure starts its backoff anew
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._task is not asyncio.current_task():
                    # Stopped (or replaced by a resync), and closing the watch raised instead of the
                    # cancellation: end here, never restart a watch nobody wants.
                    return
                logger.exception("%s: watch failed; restarting", self.bucket)
            if restart_now:
                continue
            if resyncing:
                # A resync must see the whole bucket in one replay, or it would drop what it missed.
                self._begin_resync()
                after = None
            self.restarts += 1
            await asyncio.sleep(backoff.next())

    def _applied_up_to(self, revision: int) -> int:
        """Entries up to ``revision`` were applied: record it, wake who waits for it; the resume point."""
        if revision > self.applied:
            self.applied = revision
        if self._waiters:
            self._wake_waiters()
        return revision

    def _needs_resync(self, event: Resumed) -> bool:
        return (
            self._resync is not None
            and self.resync_after is not None
            and event.stalled_for > self.resync_after
        )

    def _begin_resync(self) -> None:
        if self._resync is not None:
            self.resyncs += 1
            self.resyncing = True
            self._resync[0]()

    def _wake_waiters(self) -> None:
        if not self.caught_up.is_set():
            return
        pending = []
        for revision, waiter in self._waiters:
            if self.applied >= revision:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                pending.append((revision, waiter))
        self._waiters = pending
