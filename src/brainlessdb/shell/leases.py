"""Leases: one holder at a time for a name, across every node of a namespace, with a fencing token.

A lease is one key of the namespace's lease bucket (``{namespace}--leases``, a bucket with per-message
TTL). Taking it is a compare-and-set write on what the key holds when it is free (nothing, or a release
marker); renewing it is a compare-and-set write on the holder's own last revision; each write carries a
``ttl``, after which the server itself removes the value. So a holder that stops renewing (it crashed,
or lost its connection) frees the lease ``ttl`` after its last renewal on every node, whatever the nodes'
clocks say. The fencing token is the revision of the write that took the lease: the bucket's revisions
only grow, so every new holder has a greater token than all before it. Pass it to whatever the lease
protects, and have that refuse a smaller token than one it has seen.

Leases are exclusive where one NATS (one JetStream domain) holds the bucket; they are not merged, and
they never succeed offline: a node that cannot reach NATS gets ``UnavailableError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from types import TracebackType
from typing import Final, TypeVar

import msgspec

from brainlessdb.errors import ConflictError, LeaseLostError, UnavailableError
from brainlessdb.storage.base import Op, Storage, Write

T = TypeVar("T")

MIN_TTL: Final = 1.0  # seconds: the server's per-message TTL is whole-second at its finest


class Lease:
    """A held lease: ``renew()`` before ``ttl`` passes, ``release()`` when done (or ``async with``)."""

    def __init__(self, leases: Leases, name: str, key: str, ttl: float, revision: int) -> None:
        self.name = name
        """The lease's name, as given to ``db.lease()``."""
        self.ttl = ttl
        """Seconds the lease stays held after it was taken or last renewed."""
        self.token = revision
        """The fencing token: greater for every new holder of this lease."""
        self._leases = leases
        self._key = key
        self._revision = revision
        self._renewed = time.monotonic()
        self._released = False

    @property
    def held(self) -> bool:
        """True until released, lost, or ``ttl`` after the last renewal (as this node's clock tells)."""
        return not self._released and time.monotonic() - self._renewed < self.ttl

    async def renew(self) -> None:
        """Hold the lease ``ttl`` seconds more; ``LeaseLostError`` if it expired or another node took it."""
        if self._released:
            raise LeaseLostError(self.name, "it was released")
        started = time.monotonic()
        revision = await self._leases.write(self._key, self._revision, self.ttl, self.name)
        if revision is None:
            self._released = True
            raise LeaseLostError(self.name, "it expired, or another node holds it now")
        self._revision = revision
        self._renewed = started

    async def release(self) -> None:
        """Free the lease for other nodes now (nothing happens if it is no longer held)."""
        if self._released:
            return
        self._released = True
        await self._leases.release(self._key, self._revision)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released" if self._released else "expired"
        return f"<Lease {self.name!r} {state}, token {self.token}, ttl {self.ttl:g}s>"


class Leases:
    """The leases of one namespace, in one bucket of a storage."""

    def __init__(self, storage: Storage, bucket: str, holder: str, timeout: float) -> None:
        self._storage = storage
        self._bucket = bucket
        self._holder = holder
        self._timeout = timeout
        self._opened = False

    async def acquire(self, name: str, key: str, ttl: float) -> Lease | None:
        """Take the lease ``name`` for ``ttl`` seconds; None if another node holds it."""
        if not ttl >= MIN_TTL:
            raise ValueError(f"a lease's ttl must be at least {MIN_TTL:g} s, got {ttl!r}")
        await self._open()
        current = await self._bounded(self._storage.get(self._bucket, key))
        if current is not None and current.op is Op.PUT:
            return None  # held: the server removes the value when its holder stops renewing
        expected = 0 if current is None else current.revision
        revision = await self.write(key, expected, ttl, name)
        return None if revision is None else Lease(self, name, key, ttl, revision)

    async def write(self, key: str, expected: int, ttl: float, name: str) -> int | None:
        """Write the lease ``key`` on revision ``expected``; its new revision, or None on a conflict."""
        value = msgspec.json.encode({"lease": name, "holder": self._holder, "ttl": ttl})
        write = Write(key, value, expected, ttl=ttl)
        [result] = await self._bounded(self._storage.write(self._bucket, [write]))
        if isinstance(result, ConflictError):
            return None
        if isinstance(result, Exception):
            raise result
        return result

    async def release(self, key: str, revision: int) -> None:
        """A release marker over the holder's own revision (a conflict: it was no longer held)."""
        marker = Write(key, b"", revision, delete=True, ttl=MIN_TTL)
        [result] = await self._bounded(self._storage.write(self._bucket, [marker]))
        if isinstance(result, Exception) and not isinstance(result, ConflictError):
            raise result

    async def _open(self) -> None:
        if not self._opened:
            await self._bounded(self._storage.open_bucket(self._bucket, expiring=True))
            self._opened = True

    async def _bounded(self, step: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(step, self._timeout)
        except asyncio.TimeoutError:
            raise UnavailableError(f"no answer about leases within {self._timeout:g}s") from None
