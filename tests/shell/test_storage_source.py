"""What ``Brainless(...)`` accepts as its storage: any object with the methods of ``Storage``, not only
the two built-in classes; anything else is a ``TypeError``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import nats.aio.client
import pytest

from brainlessdb import Brainless
from brainlessdb.storage.base import STORAGE_METHODS, Entry, Storage, WatchBatch, Write, is_storage
from brainlessdb.storage.memory import MemoryStorage


class Delegating:
    """A ``Storage`` by its methods alone (no subclass of anything): counts each call, then makes it on
    the ``MemoryStorage`` it wraps."""

    def __init__(self, inner: MemoryStorage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def open_bucket(self, bucket: str, *, create: bool = True) -> bool:
        self.calls["open_bucket"] += 1
        return await self.inner.open_bucket(bucket, create=create)

    def watch_batches(self, bucket: str, *, after: int | None = None) -> AsyncIterator[WatchBatch]:
        self.calls["watch_batches"] += 1
        return self.inner.watch_batches(bucket, after=after)

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        self.calls["write"] += 1
        return await self.inner.write(bucket, writes)

    async def get(self, bucket: str, key: str) -> Entry | None:
        self.calls["get"] += 1
        return await self.inner.get(bucket, key)

    async def last_revision(self, bucket: str) -> int:
        self.calls["last_revision"] += 1
        return await self.inner.last_revision(bucket)

    async def forget(self, bucket: str, key: str) -> None:
        self.calls["forget"] += 1
        await self.inner.forget(bucket, key)

    async def close(self) -> None:
        self.calls["close"] += 1
        await self.inner.close()


class Forwarding:
    """A ``Storage`` with no method of its own: ``__getattr__`` finds each on the wrapped storage."""

    def __init__(self, inner: MemoryStorage) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Partial:
    """Writes and reads, but cannot watch: not a ``Storage``."""

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        return []

    async def get(self, bucket: str, key: str) -> Entry | None:
        return None


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_protocol_lists_what_the_library_calls() -> None:
    assert sorted(STORAGE_METHODS) == [
        "close",
        "forget",
        "get",
        "last_revision",
        "open_bucket",
        "watch_batches",
        "write",
    ]


def test_a_storage_is_told_from_a_nats_client_a_url_and_a_class() -> None:
    storage: Storage = Delegating(MemoryStorage())  # mypy checks that the wrapper fits the protocol
    assert is_storage(storage)
    assert is_storage(Forwarding(MemoryStorage()))
    assert is_storage(MemoryStorage())
    assert isinstance(MemoryStorage(), Storage)
    client = nats.aio.client.Client()
    assert not is_storage(client)
    assert not isinstance(client, Storage)
    for other in ("nats://127.0.0.1:4222", ["nats://127.0.0.1:4222"], MemoryStorage, Partial(), object()):
        assert not is_storage(other), other


@pytest.mark.parametrize("wrap", [Delegating, Forwarding])
async def test_a_wrapped_storage_syncs_two_nodes(wrap: Callable[[MemoryStorage], Storage]) -> None:
    shared = MemoryStorage()
    first, second = wrap(shared.share()), wrap(shared.share())
    writer = Brainless(first, namespace="wrapped", location="a", flush_interval=0)
    reader = Brainless(second, namespace="wrapped", location="b", flush_interval=0)
    await writer.start()
    await reader.start()
    try:
        call = writer.call.add(channel_id="1", state="waiting")
        await writer.flush()
        await wait_until(lambda: call.uuid in reader.call)
        assert reader.call[call.uuid]["state"] == "waiting"
    finally:
        await writer.stop()
        await reader.stop()
    if isinstance(first, Delegating):
        assert first.calls["write"] >= 1
        assert second.calls["watch_batches"] >= 1
        # Given, not opened here: the database leaves closing it to its owner.
        assert first.calls["close"] == second.calls["close"] == 0


@pytest.mark.parametrize("source", [Partial(), object(), MemoryStorage, 42])
async def test_an_object_without_the_storage_methods_is_a_type_error(source: object) -> None:
    db = Brainless(source, namespace="refused", location="a")
    with pytest.raises(TypeError, match="expected a Storage"):
        await db.start()
