"""Replicator: keeps memory in step with one bucket by applying its watch as entries arrive.

The storage's watch replays the bucket, says when it has caught up, then streams live changes, and
survives reconnects by itself. The replicator applies every entry through a callback (a collection's
``Replica.apply``, or the schema handler), records the last applied revision, lets callers wait for the
first catch-up or for a given revision, and restarts the watch from the last applied revision with
backoff if it ever fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Final

from brainlessdb.storage.base import CaughtUp, Entry, Storage

logger = logging.getLogger(__name__)

BACKOFF_START: Final = 0.1
BACKOFF_MAX: Final = 5.0


class Replicator:
    """One supervised watch of one bucket, applied through ``apply``."""

    def __init__(self, storage: Storage, bucket: str, apply: Callable[[Entry], None]) -> None:
        self.bucket = bucket
        self._storage = storage
        self._apply = apply
        self.applied = 0
        self.restarts = 0
        self.caught_up = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"brainlessdb-watch-{self.bucket}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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

    async def _run(self) -> None:
        backoff = BACKOFF_START
        after: int | None = None
        while True:
            try:
                async for event in self._storage.watch(self.bucket, after=after):
                    if isinstance(event, CaughtUp):
                        self.caught_up.set()
                        self._wake_waiters()
                        continue
                    try:
                        self._apply(event)
                    except Exception:
                        # One bad entry must not stop the bucket's replication.
                        logger.exception("%s: applying entry %s failed", self.bucket, event.key)
                    after = event.revision
                    if event.revision > self.applied:
                        self.applied = event.revision
                    if self._waiters:
                        self._wake_waiters()
                    backoff = BACKOFF_START
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: watch failed; restarting", self.bucket)
            self.restarts += 1
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX)

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
