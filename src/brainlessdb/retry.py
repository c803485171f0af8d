"""Two helpers the shell and the NATS storage share: jittered exponential backoff, and stopping a task.

Outside the layers on purpose: it imports nothing of brainlessdb, so the storage may use it as well as
the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any


class Backoff:
    """How long to wait after each failure: ``start``, then twice as long each time, up to ``max``.

    ``next()`` gives the wait after a failure, ``delay`` scaled by a random factor between ``1 - jitter``
    and 1 (so that nodes failing together do not retry together), and doubles ``delay``. ``reset()``
    after a success starts again from ``start``.
    """

    __slots__ = ("delay", "failures", "jitter", "max", "start")

    def __init__(self, start: float, max: float, *, jitter: float = 0.5) -> None:
        if not 0 < start <= max:
            raise ValueError(f"expected 0 < start <= max, got start={start}, max={max}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        self.start = start
        self.max = max
        self.jitter = jitter
        self.delay = start  # the wait after the next failure, before jitter
        self.failures = 0  # since the last reset()

    def next(self) -> float:
        """The wait after one more failure (in seconds); the following one will be twice as long."""
        wait = self.delay * random.uniform(1.0 - self.jitter, 1.0) if self.jitter else self.delay
        self.delay = min(self.delay * 2, self.max)
        self.failures += 1
        return wait

    def reset(self) -> None:
        """A success: the next failure waits ``start`` again."""
        self.delay = self.start
        self.failures = 0

    def __repr__(self) -> str:
        return f"<Backoff {self.delay:g}s next, {self.failures} failures, {self.start:g}s..{self.max:g}s>"


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended; its cancellation is not raised here.

    Any other exception it ends with is. ``None`` (no task) does nothing.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
