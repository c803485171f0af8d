"""Helpers shared by the tests and the benchmarks: waiting, connecting, and reading what NATS holds.

No fixtures here (they live in the ``conftest.py`` files) and no pytest import: the benchmarks import this
module too (``from tests.helpers import ...``, run as ``python -m benchmarks`` from the repository root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import nats
import nats.js.errors
from nats.aio.client import Client

from brainlessdb import Brainless, meta
from brainlessdb.core.codec import decode_value, encode_entity
from brainlessdb.core.merge import Record
from brainlessdb.core.names import RESERVED_PREFIX
from brainlessdb.storage.nats.kv import NatsKVStorage

MakeDb = Callable[..., Awaitable[Brainless]]
"""What the ``make_db`` fixture gives: ``await make_db(location="node-1", *, start=True, **options)``."""


async def eventually(
    predicate: Callable[[], bool],
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    """Wait until ``predicate()`` holds; raise AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s")
        await asyncio.sleep(interval)


# -- connections closed on the way out ------------------------------------------------------------


@contextlib.asynccontextmanager
async def nats_connection(url: str | list[str], **options: Any) -> AsyncIterator[Client]:
    """A plain nats-py client, closed at the end of the block."""
    client = await nats.connect(url, **options)
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def kv_storage(url: str | list[str], **options: Any) -> AsyncIterator[NatsKVStorage]:
    """A connected ``NatsKVStorage`` (``options`` as for ``NatsKVStorage.connect``), closed at the end."""
    storage = await NatsKVStorage.connect(url, **options)
    try:
        yield storage
    finally:
        await storage.close()


# -- what the nodes and the bucket hold ----------------------------------------------------------


def memory_of(db: Brainless, collection: str = "call") -> dict[str, dict[str, Any]]:
    """A node's ``{uuid: data}`` of one collection."""
    return {entity.uuid: meta(entity).data for entity in db.collection(collection).entities.values()}


def readable_data(value: bytes) -> Any:
    """The entity data of a stored value of format v1, or the raw bytes of anything else."""
    try:
        return json.loads(value)["d"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return value


async def raw_bucket(
    url: str | list[str], bucket: str, *, skip_vanished: bool = False
) -> tuple[dict[str, Any], set[str]]:
    """What a plain nats-py client reads in a bucket: ``{key: data}`` of live keys, and the deleted keys.

    Reads the last message of every subject of the bucket's stream and decodes the JSON itself. Reserved
    keys (the collection's schema, ``_schema``) are left out: only entities are read. A subject
    whose last message is gone by the time it is read (a delete marker removed after its retention) is a
    NotFoundError, or is left out with ``skip_vanished``.
    """
    async with nats_connection(url) as client:
        js = client.jetstream()
        stream = f"KV_{bucket}"
        info = await js.stream_info(stream, subjects_filter=">")
        reserved = f"$KV.{bucket}.{RESERVED_PREFIX}"
        subjects = sorted(
            subject for subject in info.state.subjects or {} if not subject.startswith(reserved)
        )
        live: dict[str, Any] = {}
        deleted: set[str] = set()
        for chunk in range(0, len(subjects), 500):
            part = subjects[chunk : chunk + 500]
            messages = await asyncio.gather(
                *(js.get_last_msg(stream, subject) for subject in part), return_exceptions=True
            )
            for subject, msg in zip(part, messages, strict=True):
                if skip_vanished and isinstance(msg, nats.js.errors.NotFoundError):
                    continue
                if isinstance(msg, BaseException):
                    raise msg
                key = subject[len(f"$KV.{bucket}.") :]
                operation = (msg.headers or {}).get("KV-Operation")
                if operation in ("DEL", "PURGE"):
                    deleted.add(key)
                else:
                    live[key] = readable_data(msg.data)
        return live, deleted


def converged(nodes: list[Brainless], collection: str = "call") -> bool:
    """No node has anything pending, and every node holds the same of ``collection``."""
    if any(c.sync.has_pending() for node in nodes for c in node.collections.values()):
        return False
    first = memory_of(nodes[0], collection)
    return all(memory_of(node, collection) == first for node in nodes[1:])


async def settle(nodes: list[Brainless], timeout: float = 30.0, collection: str = "call") -> None:
    """Wait until the nodes converged, then reload ``collection`` on each: they must still agree.

    Raises AssertionError when they do not converge within ``timeout`` seconds, or disagree after the reload.
    """
    await eventually(lambda: converged(nodes, collection), timeout=timeout, interval=0.05)
    for node in nodes:
        await node.collection(collection).load()
    if not all(memory_of(node, collection) == memory_of(nodes[0], collection) for node in nodes):
        raise AssertionError("the nodes disagree after reloading")


def stored_state(collection: Any) -> tuple[Any, ...]:
    """What a collection's memory holds, as a replay of its bucket would leave it: each entity's fields,
    revision and stored version (its stamps, the stamps inside its dict fields, its counter tallies and
    expiry, through the codec), and each delete remembered (stamp, revision, marker unwritten)."""
    entities = {
        uuid: (meta(entity).data, entity._revision, stored_version(entity))
        for uuid, entity in collection.entities.items()
    }
    deletes = {
        uuid: (tomb.stamp, tomb.revision, tomb.pending) for uuid, tomb in collection.sync.tombstones.items()
    }
    return entities, deletes


_canonical = msgspec.json.Encoder(order="sorted")


def stored_version(entity: Any) -> tuple[Record, bytes]:
    """The version an entity is stored as (its fields, every stamp, its extras), read back: equal for two
    nodes holding the same version, whatever order each holds the fields in and whichever stamp each
    encodes as the base; with the fields' canonical JSON, so that ``1`` and ``1.0`` still differ."""
    record = decode_value(encode_entity(entity._data, entity._stamps, entity._extras), time_ns=0)
    return record, _canonical.encode(record.data)
