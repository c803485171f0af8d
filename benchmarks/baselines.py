"""The baselines: what raw nats-py and plain Python do with the same payloads, without brainlessdb.

NATS baselines talk to the bucket directly (``$KV.<bucket>.<key>`` subjects, the headers a KV client
sends) on their own connection; buckets are created with brainlessdb's own stream settings, so both
sides write to and read from identical streams. Plain-Python floors work on dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from benchmarks.common import new_key
from brainlessdb.storage.nats.kv import NatsKVStorage

EXPECTED_LAST_SUBJECT_SEQUENCE: Final = "Nats-Expected-Last-Subject-Sequence"
_decoder = msgspec.json.Decoder()


# -- connections and buckets -------------------------------------------------------------------------


async def connect(url: str, name: str = "benchmarks-raw") -> Client:
    """A plain nats-py connection that fails fast instead of reconnecting."""
    return await nats.connect(url, name=name, allow_reconnect=False, connect_timeout=5)


async def create_bucket(nc: Client, bucket: str, history: int = 1) -> None:
    """Create ``bucket`` with exactly the stream settings brainlessdb uses."""
    await NatsKVStorage(nc, history=history).open_bucket(bucket)


async def delete_buckets(nc: Client, *buckets: str) -> None:
    """Delete buckets (missing ones are fine): keeps the server's store small between repeats."""
    js = nc.jetstream()
    for bucket in buckets:
        with contextlib.suppress(nats.js.errors.NotFoundError, nats.errors.Error, asyncio.TimeoutError):
            await js.delete_stream(f"KV_{bucket}")


# -- writing ---------------------------------------------------------------------------------------


async def publish_async_batch(
    nc: Client, bucket: str, items: Sequence[tuple[str, bytes, int]], timeout: float
) -> tuple[float, list[int]]:
    """Pipelined CAS writes: ``js.publish_async`` every ``(key, payload, expected revision)``, then gather
    the acks. Returns the seconds taken and the new revisions."""
    js = nc.jetstream(timeout=timeout, publish_async_max_pending=len(items) + 1)
    start = time.perf_counter()
    futures = [
        await js.publish_async(
            f"$KV.{bucket}.{key}", payload, headers={EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected)}
        )
        for key, payload, expected in items
    ]
    acks = await asyncio.wait_for(asyncio.gather(*futures), timeout)
    elapsed = time.perf_counter() - start
    return elapsed, [ack.seq for ack in acks]


async def put_one_by_one(
    nc: Client, bucket: str, items: Sequence[tuple[str, bytes]], timeout: float
) -> tuple[float, list[int]]:
    """One awaited nats-py ``kv.put`` at a time. Returns the seconds taken and the new revisions."""
    kv = await nc.jetstream(timeout=timeout).key_value(bucket)
    start = time.perf_counter()
    revisions = [await kv.put(key, payload) for key, payload in items]
    return time.perf_counter() - start, revisions


async def get_check_update(nc: Client, bucket: str, rows: Sequence[dict[str, Any]], timeout: float) -> float:
    """A claim done by hand: for each row (stored first, untimed), one awaited ``kv.get``, a check of its
    ``state``, and one awaited ``kv.update`` on the revision read. Returns the seconds taken."""
    kv = await nc.jetstream(timeout=timeout).key_value(bucket)
    keys = [new_key() for _ in rows]
    for key, row in zip(keys, rows, strict=True):
        await kv.put(key, msgspec.json.encode(row))
    await kv.get(keys[0])  # warm
    start = time.perf_counter()
    for key in keys:
        entry = await kv.get(key)
        value = _decoder.decode(entry.value or b"")
        if value["state"] != "waiting":
            raise RuntimeError(f"{key} is not waiting")
        value["state"], value["agent_id"] = "talking", 1
        await kv.update(key, msgspec.json.encode(value), last=entry.revision)
    return time.perf_counter() - start


async def update_one_by_one(nc: Client, bucket: str, rows: Sequence[dict[str, Any]], timeout: float) -> float:
    """One awaited ``kv.update`` at a time on each row's known revision (stored first, untimed): one round
    trip per change, the floor of any claim. Returns the seconds taken."""
    kv = await nc.jetstream(timeout=timeout).key_value(bucket)
    keys = [new_key() for _ in rows]
    revisions = [await kv.put(key, msgspec.json.encode(row)) for key, row in zip(keys, rows, strict=True)]
    changed = [msgspec.json.encode({**row, "state": "talking", "agent_id": 1}) for row in rows]
    start = time.perf_counter()
    for key, value, revision in zip(keys, changed, revisions, strict=True):
        await kv.update(key, value, last=revision)
    return time.perf_counter() - start


# -- loading ---------------------------------------------------------------------------------------


async def ordered_replay(
    nc: Client,
    bucket: str,
    expected: int,
    timeout: float,
    store: dict[str, Any] | None = None,
    pick: Callable[[Any], Any] | None = None,
) -> tuple[float, int]:
    """An ordered push consumer replaying the last entry of every key, each decoded with msgspec into
    ``store`` (keyed by key; ``pick`` may keep only part of the value), until ``expected`` entries
    arrived. Returns the seconds taken and the count."""
    js = nc.jetstream(timeout=timeout)
    prefix = len(f"$KV.{bucket}.")
    if store is None:
        store = {}
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        value = _decoder.decode(msg.data)
        store[msg.subject[prefix:]] = value if pick is None else pick(value)
        if len(store) >= expected and not done.done():
            done.set_result(None)

    start = time.perf_counter()
    sub = await js.subscribe(
        f"$KV.{bucket}.>",
        stream=f"KV_{bucket}",
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
    )
    try:
        await asyncio.wait_for(done, timeout)
        elapsed = time.perf_counter() - start
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return elapsed, len(store)


async def keys_then_get(nc: Client, bucket: str, timeout: float) -> tuple[float, int]:
    """``kv.keys()`` then one awaited ``kv.get`` per key, each decoded. Returns seconds and count."""
    kv = await nc.jetstream(timeout=timeout).key_value(bucket)
    store: dict[str, Any] = {}

    async def run() -> None:
        for key in await kv.keys():
            store[key] = _decoder.decode((await kv.get(key)).value or b"")

    start = time.perf_counter()
    await asyncio.wait_for(run(), timeout)
    return time.perf_counter() - start, len(store)


# -- propagation -----------------------------------------------------------------------------------


async def put_watch_latencies(
    writer: Client, reader: Client, bucket: str, data: dict[str, Any], changes: int, timeout: float
) -> list[float]:
    """Seconds from a CAS publish on ``writer`` until ``reader``'s ordered consumer decoded it, for
    ``changes`` sequential changes of one key's ``priority`` (each ack is awaited before the next)."""
    js_w = writer.jetstream(timeout=timeout)
    js_r = reader.jetstream(timeout=timeout)
    subject = f"$KV.{bucket}.entity"
    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Future[float]] = {}

    async def on_message(msg: Msg) -> None:
        value = _decoder.decode(msg.data)
        future = waiting.pop(value["priority"], None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    revision = (await js_w.publish(subject, msgspec.json.encode({**data, "priority": -1}))).seq
    sub = await js_r.subscribe(
        subject, stream=f"KV_{bucket}", cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    latencies: list[float] = []
    try:
        for i in range(changes):
            arrived = waiting[i] = loop.create_future()
            start = time.perf_counter()
            payload = msgspec.json.encode({**data, "priority": i})
            ack = await js_w.publish_async(
                subject, payload, headers={EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision)}
            )
            latencies.append(await asyncio.wait_for(arrived, timeout) - start)
            revision = (await asyncio.wait_for(ack, timeout)).seq
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return latencies


# -- plain-Python floors (seconds per operation) ---------------------------------------------------


def dict_lookup(by_key: dict[str, dict[str, Any]], keys: Sequence[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        by_key[key]
    return (time.perf_counter() - start) / len(keys)


def dict_insert(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> float:
    """``store[uuid] = row.copy()``: what keeping one entity per uuid costs at the very least."""
    store: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for key, row in zip(keys, rows, strict=True):
        store[key] = row.copy()
    return (time.perf_counter() - start) / len(keys)


def dict_assign(rows: Sequence[dict[str, Any]], field: str, value: Any) -> float:
    start = time.perf_counter()
    for row in rows:
        row[field] = value
    return (time.perf_counter() - start) / len(rows)


def nested_city_equals(rows: Sequence[dict[str, Any]], city: str) -> float:
    start = time.perf_counter()
    [row for row in rows if row["caller"]["city"] == city]
    return time.perf_counter() - start


def nested_city_startswith(rows: Sequence[dict[str, Any]], prefix: str) -> float:
    start = time.perf_counter()
    [row for row in rows if row["caller"]["city"].startswith(prefix)]
    return time.perf_counter() - start


def sorted_one_key(rows: Sequence[dict[str, Any]], field: str) -> float:
    key = operator.itemgetter(field)
    start = time.perf_counter()
    sorted(rows, key=key)
    return time.perf_counter() - start


def sorted_two_keys(rows: Sequence[dict[str, Any]], first: str, descending: str) -> float:
    """``sorted()`` by ``first`` ascending then ``descending`` descending, the usual way: two stable sorts
    with ``itemgetter`` keys, the second key first."""
    start = time.perf_counter()
    ordered = sorted(rows, key=operator.itemgetter(descending), reverse=True)
    ordered.sort(key=operator.itemgetter(first))
    return time.perf_counter() - start
