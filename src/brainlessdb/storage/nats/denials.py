"""Permission denials: failing fast what waits on a subject the server refused to let this client publish to.

NATS reports a denied publish asynchronously, through the connection's error callback ("Permissions
Violation for Publish to ..."), and never answers the request itself: without this, the caller would wait
for its timeout and report the server as unavailable. ``ErrorFanOut`` passes a caller-owned client's error
callback to every storage over it, and ``Guards`` fails the requests waiting on a denied subject.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from nats.aio.client import Client

from brainlessdb.errors import PermissionDeniedError

T = TypeVar("T")
ErrorCallback = Callable[[Exception], Awaitable[None]]


class DenialHandler(Protocol):
    def handle_denial(self, exc: BaseException) -> bool:
        """Fail what waits on the subject of a permissions violation; False if ``exc`` is not one."""
        ...


class ErrorFanOut:
    """The error callback of a client connected by the caller: its own callback, and each storage's check.

    nats-py keeps a client's error callback in ``_error_cb``; wrapping it once per client lets the storages
    over it fail denied publishes fast too, while the caller's callback still sees every error. A client
    without that attribute is left alone: denied writes then time out as unavailable.
    """

    def __init__(self, original: ErrorCallback) -> None:
        self.original = original
        self.storages: weakref.WeakSet[DenialHandler] = weakref.WeakSet()

    @classmethod
    def install(cls, nc: Client) -> ErrorFanOut | None:
        current: ErrorCallback | None = getattr(nc, "_error_cb", None)
        if isinstance(current, ErrorFanOut) or current is None:
            return current
        fan_out = cls(current)
        nc._error_cb = fan_out
        return fan_out

    async def __call__(self, exc: Exception) -> None:
        for storage in list(self.storages):
            storage.handle_denial(exc)
        await self.original(exc)


def _retrieve(task: asyncio.Future[Any]) -> None:
    # The outcome of a request abandoned after a denial is of no interest: read it so nobody warns.
    if not task.cancelled():
        task.exception()


class Guards:
    """The requests waiting on a subject the server may deny, by lowercased key: a bucket (its API
    subjects) or one key's subject."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[str]]] = {}

    def deny(self, key: str, subject: str) -> None:
        """Fail the requests guarded by ``key``: the server denied publishing to ``subject``."""
        for guard in self._waiting.get(key, ()):
            if not guard.done():
                guard.set_result(subject)

    async def guarded(self, operation: Coroutine[Any, Any, T], *keys: str) -> T:
        """Run ``operation``, failing it with ``PermissionDeniedError`` as soon as the server denies a
        publish to one of ``keys`` (a bucket's API subjects, or a key's subject)."""
        denied: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        keys = tuple(key.lower() for key in keys)
        for key in keys:
            self._waiting.setdefault(key, set()).add(denied)
        task = asyncio.ensure_future(operation)
        try:
            await asyncio.wait((task, denied), return_when=asyncio.FIRST_COMPLETED)
            if task.done() or not denied.done():
                return task.result()
            raise PermissionDeniedError(f"no permission to publish to {denied.result()}")
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_retrieve)
            for key in keys:
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.discard(denied)
                    if not waiting:
                        del self._waiting[key]
