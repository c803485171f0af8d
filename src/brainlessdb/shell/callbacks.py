"""Callbacks: change and delete events delivered to the listeners of a database's collections.

A plain function is called at once, inside the change that caused it; a coroutine function's coroutine
runs as a task. A callback that raises is logged and counted, and never stops the change or the sync
that caused it. Tasks still running when the database stops are cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from brainlessdb.events import Event, Listener

logger = logging.getLogger(__name__)


class CallbackRunner:
    """Runs listeners' callbacks; counts those that fail."""

    def __init__(self) -> None:
        self.errors = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def emit(self, listener: Listener, event: Event) -> None:
        """Deliver ``event`` to ``listener``."""
        try:
            result = listener.callback(event)
        except Exception:
            self.errors += 1
            logger.exception("change callback %r failed", listener.callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            logger.error("change callback failed", exc_info=task.exception())

    def cancel(self) -> None:
        """Cancel the callbacks still running."""
        for task in list(self._tasks):
            task.cancel()

    def __repr__(self) -> str:
        return f"<CallbackRunner {len(self._tasks)} running, {self.errors} failed>"
