"""Presence: every running database announces itself in its namespace, and anyone may list the live ones.

Each started database writes a heartbeat, one JSON object under its own key of the namespace's bucket
``{namespace}--nodes``, every ``INTERVAL`` seconds, with a per-message TTL of ``TTL_INTERVALS`` intervals:
the NATS server itself removes the heartbeat of a node that stopped writing it (it crashed, it was killed,
it lost NATS) that long after its last one, whatever the clocks say. A database that stops deletes its key
at once. The key is the database's node id (``db.clock.replica``: its location and a random suffix), so
two processes sharing a location are two nodes.

A heartbeat says where the node is and how it is doing, as ``db.stats()`` tells it at that moment::

    {"node": "prague-1~3f9a0c1e", "location": "prague-1", "namespace": "app", "domain": None,
     "version": "0.2.0", "host": "pbx-7", "pid": 4242, "started": 1795000000.25,
     "interval": 5.0, "ttl": 15.0, "time": 1795000065.25, "collections": 3, "entities": 1200, "pending": 0,
     "watch_restarts": 0, "copy_lag": {}}

``read_nodes`` lists the live nodes (what the bucket holds now), each such object plus ``seen``: the time
the server stored its last heartbeat (seconds since the epoch, the server's clock). ``time`` less
``seen`` is how far the node's clock is from the server's (within the write's trip), which ``brainless
doctor`` checks. ``Brainless.nodes()``
is that for the database's own namespace. Nothing here is merged or kept in memory: the bucket is read
afresh each time.

Heartbeats are written only to NATS (a database given a nats-py client or URLs, or a ``NatsKVStorage``):
with any other storage (the in-memory mode ``Brainless(None)``, a ``MemoryStorage``, a wrapper of a
storage) there is no other process to tell, nothing is written, and ``nodes()`` lists this node alone.

Failing heartbeats (an outage, an account that may not write the bucket) never disturb the database: they
are counted in ``stats()`` and logged quietly (INFO once per run of failures, then DEBUG).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import Any, Final, TypeVar

import msgspec

from brainlessdb.core import names
from brainlessdb.errors import StorageError, UnavailableError
from brainlessdb.retry import cancel_and_wait
from brainlessdb.storage.base import CaughtUp, Entry, Op, Storage, Write
from brainlessdb.storage.nats.kv import NatsKVStorage

T = TypeVar("T")

logger = logging.getLogger(__name__)

NODES_SUFFIX: Final = "--nodes"
INTERVAL = 5.0
"""Seconds between two heartbeats of a node, read when a database starts (set it before, to change it)."""
TTL_INTERVALS: Final = 3
"""A heartbeat is removed by the server this many intervals after it was written, unless renewed."""
MIN_TTL: Final = 1.0  # seconds: the server's per-message TTL is whole-second at its finest
STOP_TIMEOUT: Final = 1.0  # seconds a stopping node waits for its key's deletion (then it expires)


def _version() -> str:
    try:
        return metadata.version("brainlessdb")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION: Final = _version()


def nodes_bucket(namespace: str) -> str:
    """The bucket of a namespace's heartbeats: ``{namespace}--nodes``."""
    return namespace + NODES_SUFFIX


def node_key(node: str) -> str:
    """The key of a node's heartbeat: its id, with what a key cannot hold escaped as in a lease's name."""
    return names.lease_key(node)


def summary(stats: Mapping[str, Any]) -> dict[str, Any]:
    """What a heartbeat tells of a node's state, from its ``db.stats()``."""
    collections = stats.get("collections", {})
    copy_lag: dict[str, int | None] = {}
    for peers in stats.get("locations", {}).get("copies", {}).values():
        for peer, copy in peers.items():
            lag = copy.get("lag")
            known = copy_lag.get(peer, 0)
            # Unknown (the peer does not answer) for one bucket makes the peer's lag unknown.
            copy_lag[peer] = None if lag is None or known is None else known + lag
    return {
        "collections": len(collections),
        "entities": sum(c.get("entities", 0) for c in collections.values()),
        "pending": sum(c.get("pending", 0) for c in collections.values()),
        # Watches that failed, and the consumers behind them made anew (after a reconnect, say).
        "watch_restarts": sum(c.get("watch_restarts", 0) for c in collections.values())
        + stats.get("storage", {}).get("restarts", 0),
        "copy_lag": copy_lag,
    }


class Presence:
    """The heartbeat of one database, written in the background from ``start()`` to ``stop()``."""

    def __init__(
        self,
        storage: Storage,
        namespace: str,
        node: str,
        location: str,
        *,
        domain: str | None,
        stats: Callable[[], Mapping[str, Any]],
        timeout: float,
        interval: float | None = None,
    ) -> None:
        self.interval = INTERVAL if interval is None else interval
        if not self.interval > 0:
            raise ValueError(f"the heartbeat interval must be > 0 seconds, got {self.interval!r}")
        self.ttl = max(MIN_TTL, self.interval * TTL_INTERVALS)
        self.node = node
        self.bucket = nodes_bucket(namespace)
        self.key = node_key(node)
        self.heartbeats = 0
        self.failures = 0
        self.last_error: str | None = None
        self.announcing = isinstance(storage, NatsKVStorage)
        """Whether heartbeats are written: only to NATS (see the module)."""
        self._storage = storage
        self._stats = stats
        self._timeout = timeout
        self._opened = False
        self._announced = False
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._identity = {
            "node": node,
            "location": location,
            "namespace": namespace,
            "domain": domain,
            "version": VERSION,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": round(time.time(), 3),
            "interval": self.interval,
            "ttl": self.ttl,
        }

    def start(self) -> None:
        if self.announcing and self._task is None:
            self._task = asyncio.create_task(self._run(), name="brainlessdb-presence")

    async def stop(self) -> None:
        """Stop the heartbeats and delete this node's key (within ``STOP_TIMEOUT``, else it expires)."""
        task, self._task = self._task, None
        self._stopped = True  # on Python < 3.12 a cancellation may be lost in a ``wait_for`` that ends
        await cancel_and_wait(task)
        if not self._announced:
            return
        marker = Write(self.key, b"", None, delete=True, ttl=MIN_TTL)
        try:
            [result] = await asyncio.wait_for(self._storage.write(self.bucket, [marker]), STOP_TIMEOUT)
        except (StorageError, asyncio.TimeoutError) as exc:
            result = exc if isinstance(exc, StorageError) else UnavailableError("no answer")
        if isinstance(result, Exception):
            logger.debug("heartbeat of %s not deleted (it expires in %gs): %r", self.node, self.ttl, result)

    async def _run(self) -> None:
        while not self._stopped:
            try:
                await self.announce()
            except (StorageError, ValueError) as exc:
                self._failed(exc)
            except Exception as exc:  # never let the heartbeat die silently, nor take the node with it
                logger.exception("heartbeat of %s failed", self.node)
                self._failed(exc)
            if not self._stopped:
                await asyncio.sleep(self.interval)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        first = self.last_error is None
        self.last_error = str(exc) or type(exc).__name__
        logger.log(
            logging.INFO if first else logging.DEBUG, "heartbeat of %s not written: %s", self.node, exc
        )

    async def announce(self) -> None:
        """Write this node's heartbeat now (``StorageError`` if it cannot be written)."""
        record = self.record()
        if not self._opened:
            await self._bounded(self._storage.open_bucket(self.bucket, expiring=True))
            self._opened = True
        write = Write(self.key, msgspec.json.encode(record), None, ttl=self.ttl)
        [result] = await self._bounded(self._storage.write(self.bucket, [write]))
        if isinstance(result, Exception):
            raise result
        self.heartbeats += 1
        self._announced = True
        if self.last_error is not None:
            logger.info("heartbeat of %s written again", self.node)
        self.last_error = None

    async def nodes(self) -> list[dict[str, Any]]:
        """The live nodes of the namespace, this one's heartbeat written first (see ``read_nodes``);
        without NATS, this node alone."""
        if not self.announcing:
            return [{**self.record(), "seen": round(time.time(), 3)}]
        with contextlib.suppress(StorageError):  # an account that may read the bucket but not write it
            await self.announce()
        return await read_nodes(self._storage, self.bucket, self._timeout)

    def record(self) -> dict[str, Any]:
        """This node's heartbeat as it would be written now (``time``: this node's clock when it is)."""
        return {**self._identity, "time": round(time.time(), 3), **summary(self._stats())}

    def stats(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "announcing": self.announcing,
            "interval": self.interval,
            "heartbeats": self.heartbeats,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    async def _bounded(self, step: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(step, self._timeout)
        except asyncio.TimeoutError:
            raise UnavailableError(f"no answer about {self.bucket} within {self._timeout:g}s") from None

    def __repr__(self) -> str:
        state = "running" if self._task is not None and not self._task.done() else "stopped"
        return (
            f"<Presence {self.node} {state}, every {self.interval:g}s (ttl {self.ttl:g}s), "
            f"{self.heartbeats} heartbeats, {self.failures} failures>"
        )


async def read_nodes(storage: Storage, bucket: str, timeout: float) -> list[dict[str, Any]]:
    """The heartbeats ``bucket`` holds now: one dict per live node, sorted by location, then start time.

    Each is the node's last heartbeat (see the module) plus ``seen``. Values that are not a heartbeat
    (written by something else) are left out. No bucket (no node ever ran): an empty list.
    ``UnavailableError`` when the storage does not answer within ``timeout`` seconds.
    """
    try:
        return await asyncio.wait_for(_read(storage, bucket), timeout)
    except asyncio.TimeoutError:
        raise UnavailableError(f"no answer about {bucket} within {timeout:g}s") from None


async def _read(storage: Storage, bucket: str) -> list[dict[str, Any]]:
    if not await storage.open_bucket(bucket, create=False):
        return []
    last: dict[str, Entry] = {}
    batches = storage.watch_batches(bucket)
    try:
        done = False
        async for batch in batches:
            for event in batch:
                if isinstance(event, Entry):
                    last[event.key] = event
                elif isinstance(event, CaughtUp):
                    done = True
            if done:
                break
    finally:
        closing = getattr(batches, "aclose", None)
        if closing is not None:
            await closing()
    found = []
    for entry in last.values():
        if entry.op is not Op.PUT:
            continue  # a node that stopped
        try:
            record = msgspec.json.decode(entry.value)
        except msgspec.DecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("node"), str):
            record["seen"] = round(entry.time_ns / 1e9, 3)
            found.append(record)
    found.sort(key=lambda node: (str(node.get("location")), node.get("started") or 0, node["node"]))
    return found
