"""The benchmarks that go through a nats-server: flush, load, load with history, and propagation.

Each repeat measures brainlessdb and its baselines back to back on the same payloads, so drift of the
shared machine hits both sides alike. Connections, databases and buckets made by a repeat are always
closed and deleted by it, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from nats.aio.client import Client
from tests.helpers import eventually

from benchmarks import baselines
from benchmarks.common import (
    COLLECTION,
    Params,
    Row,
    Series,
    dataset,
    encode,
    entity_data,
    new_keys,
    pair,
    percentile,
    rate,
)
from brainlessdb import Brainless, Change, Entity
from brainlessdb.errors import FlushError

logger = logging.getLogger("benchmarks")

RATE = "entities/s"
FLUSH_CHUNK = 10_000
"""The most changes one ``flush()`` is given here: above it, the benchmarks write in rounds of this many
(each flushed, and the node's own writes settled, before the next; the baselines publish the same rounds).
A flush must have every write of a round acknowledged within the storage's timeout (5 s): rounds of a
million, and of 50,000 once the node holds a few hundred thousand, do not make it (docs/performance.md)."""
ONE_AT_A_TIME_MAX = 100_000
"""Above this many entities the one-awaited-call-at-a-time baselines (``kv.put``, ``kv.keys()`` + ``kv.get``)
are left out: at a few thousand calls a second they would take minutes per repeat, and no target is judged
against them."""
_ids = itertools.count(1)
T = TypeVar("T")


def namespace(kind: str) -> str:
    """A namespace no earlier repeat of this run used."""
    return f"b{kind}{int(time.time() * 1000) % 100_000_000}x{next(_ids)}"


@contextlib.asynccontextmanager
async def raw_connection(url: str) -> AsyncIterator[Client]:
    nc = await baselines.connect(url)
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


@contextlib.asynccontextmanager
async def database(source: Any, ns: str, location: str, **options: Any) -> AsyncIterator[Brainless]:
    db = Brainless(source, namespace=ns, location=location, **options)
    try:
        await db.start()
        yield db
    finally:
        with contextlib.suppress(Exception):
            await db.stop(timeout=30)


def check_clean(db: Brainless, what: str) -> None:
    """Fail loudly if a flush left anything unwritten (a benchmark of failing writes means nothing)."""
    collection = db.collection(COLLECTION)
    pending, errors = collection.sync.pending_count(), len(collection.sync.errors())
    if pending or errors:
        raise RuntimeError(f"{what}: {pending} entities still pending, {errors} errors after flush")


# -- flush_new and flush_update --------------------------------------------------------------------


async def bench_flush(url: str, params: Params) -> list[Row]:
    n = params.io_n
    one_at_a_time = n <= ONE_AT_A_TIME_MAX
    rows_data = dataset(n)
    updated_data = [{**row, "state": "onhold"} for row in rows_data]
    series = {
        name: Series(label, RATE, True)
        for name, label in [
            ("lib_new", "brainlessdb"),
            ("lib_upd", "brainlessdb"),
            ("pub_new", "raw js.publish_async + gather acks"),
            ("pub_upd", "raw js.publish_async + gather acks"),
            ("put_new", "nats-py kv.put, one awaited at a time"),
            ("put_upd", "nats-py kv.put, one awaited at a time"),
        ]
    }
    async with raw_connection(url) as nc:
        for repeat in range(params.repeats):
            logger.info("flush: repeat %d/%d", repeat + 1, params.repeats)
            ns = namespace("f")
            try:
                async with database(url, ns, "bench-writer", flush_interval=3600) as db:
                    collection = db.collection(COLLECTION)
                    collection.add(entity_data(n))  # bucket, schema and ack inbox exist before timing
                    await db.flush()
                    await asyncio.wait_for(collection.load(), params.timeout)
                    entities: list[Entity] = []
                    seconds = 0.0
                    for chunk in chunks(rows_data):
                        entities += [collection.add(row) for row in chunk]
                        seconds += await _timed_flush(db, params.timeout)
                        check_clean(db, "flush_new")
                        # The node's own writes come back through its watch: let that settle before timing
                        # again.
                        await asyncio.wait_for(collection.load(), params.timeout)
                    series["lib_new"].samples.append(rate(n, seconds))
                    seconds = 0.0
                    for chunk in chunks(entities):
                        for entity in chunk:
                            entity.state = "onhold"
                        seconds += await _timed_flush(db, params.timeout)
                        check_clean(db, "flush_update")
                        await asyncio.wait_for(collection.load(), params.timeout)
                    series["lib_upd"].samples.append(rate(n, seconds))

                pub, put = f"{ns}-pub", f"{ns}-put"
                await baselines.create_bucket(nc, pub)
                await baselines.create_bucket(nc, put)
                warm = encode(entity_data(n))
                await baselines.publish_async_batch(nc, pub, [("warmup", warm, 0)], params.timeout)
                keys = new_keys(n)
                news = [(k, encode(row), 0) for k, row in zip(keys, rows_data, strict=True)]
                seconds, revisions = await _publish_chunks(nc, pub, news, params.timeout)
                series["pub_new"].samples.append(rate(n, seconds))
                updates = [
                    (k, encode(row), rev) for k, row, rev in zip(keys, updated_data, revisions, strict=True)
                ]
                seconds, _ = await _publish_chunks(nc, pub, updates, params.timeout)
                series["pub_upd"].samples.append(rate(n, seconds))

                if one_at_a_time:
                    await baselines.put_one_by_one(nc, put, [("warmup", warm)], params.timeout)
                    seconds, _ = await baselines.put_one_by_one(
                        nc, put, [(k, p) for k, p, _ in news], params.timeout
                    )
                    series["put_new"].samples.append(rate(n, seconds))
                    seconds, _ = await baselines.put_one_by_one(
                        nc, put, [(k, p) for k, p, _ in updates], params.timeout
                    )
                    series["put_upd"].samples.append(rate(n, seconds))
            finally:
                await baselines.delete_buckets(nc, f"{ns}-{COLLECTION}", f"{ns}-pub", f"{ns}-put")
    new, upd = f"flush {n} new entities", f"flush {n} updated entities"
    rows = [
        pair("flush_new", new, series["lib_new"], series["pub_new"]),
        pair("flush_update", upd, series["lib_upd"], series["pub_upd"]),
    ]
    if one_at_a_time:
        rows.insert(1, pair("flush_new", new, series["lib_new"], series["put_new"]))
        rows.append(pair("flush_update", upd, series["lib_upd"], series["put_upd"]))
    return rows


def chunks(items: list[T]) -> list[list[T]]:
    """``items`` in runs of at most ``FLUSH_CHUNK``."""
    return [items[start : start + FLUSH_CHUNK] for start in range(0, len(items), FLUSH_CHUNK)]


async def _publish_chunks(
    nc: Client, bucket: str, items: list[tuple[str, bytes, int]], timeout: float
) -> tuple[float, list[int]]:
    """``baselines.publish_async_batch`` in the runs ``flush()`` is given: seconds in all, revisions."""
    seconds, revisions = 0.0, []
    for chunk in chunks(items):
        taken, written = await baselines.publish_async_batch(nc, bucket, chunk, timeout)
        seconds += taken
        revisions += written
    return seconds, revisions


async def _timed_flush(db: Brainless, timeout: float) -> float:
    start = time.perf_counter()
    await asyncio.wait_for(db.flush(), timeout)
    return time.perf_counter() - start


# -- load and load_history -------------------------------------------------------------------------


async def write_bucket(
    url: str, ns: str, n: int, revisions: int, timeout: float, history: int = 1, every_field: bool = False
) -> None:
    """Fill ``{ns}-call`` (a bucket keeping ``history`` entries per key) with ``n`` entities through
    brainlessdb, written ``revisions`` times each (the last values are the same whatever ``history``).
    With ``every_field``, each field of each entity is then written again in a change of its own (every
    field has a stamp of its own: a per-field change history)."""
    async with database(url, ns, "bench-writer", flush_interval=3600, history=history) as db:
        collection = db.collection(COLLECTION)
        entities: list[Entity] = []
        for chunk in chunks(dataset(n)):
            entities += [collection.add(row) for row in chunk]
            await _flush_until_written(db, timeout)
        for revision in range(1, revisions):
            for chunk in chunks(entities):
                for entity in chunk:
                    entity.priority = 100 + revision
                await _flush_until_written(db, timeout)
        if every_field:
            for start, chunk in zip(range(0, n, FLUSH_CHUNK), chunks(entities), strict=True):
                for offset, entity in enumerate(chunk):
                    # The next entity's values (each differs, of the same kind and size), each set apart:
                    # one clock tick (stamp) each.
                    for name, value in entity_data(start + offset + 1).items():
                        setattr(entity, name, value)
                await _flush_until_written(db, timeout)
        check_clean(db, "writing the load bucket")


async def _flush_until_written(db: Brainless, timeout: float, attempts: int = 3) -> None:
    """``flush()``, again while some writes went unacknowledged in time (they stay pending): the bucket
    a load benchmark reads is set up untimed, and a slow round on a busy machine must not end the run."""
    for attempt in range(attempts):
        try:
            await asyncio.wait_for(db.flush(), timeout)
            return
        except FlushError:
            if attempt == attempts - 1:
                raise
            logger.warning("writing the bucket: a flush round went unacknowledged in time; flushing again")


async def time_start(url: str, ns: str, n: int, timeout: float) -> float:
    """Seconds of ``Brainless(nc, namespace).start()`` on a fresh node (connection opened beforehand)."""
    async with raw_connection(url) as nc:
        db = Brainless(nc, namespace=ns, location="bench-reader", flush_interval=3600)
        try:
            start = time.perf_counter()
            await asyncio.wait_for(db.start(), timeout)
            seconds = time.perf_counter() - start
            loaded = len(db.collection(COLLECTION))
        finally:
            with contextlib.suppress(Exception):
                await db.stop(timeout=30)
    if loaded != n:
        raise RuntimeError(f"start() loaded {loaded} entities, expected {n}")
    return seconds


async def time_replay(url: str, bucket: str, n: int, timeout: float) -> float:
    # The bucket holds the n entities and the collection's schema (its key ``_schema``), as start() reads.
    async with raw_connection(url) as nc:
        seconds, count = await baselines.ordered_replay(nc, bucket, n + 1, timeout)
    if count != n + 1:
        raise RuntimeError(f"raw replay got {count} entries, expected {n + 1}")
    return seconds


async def time_keys_get(url: str, bucket: str, n: int, timeout: float) -> float:
    async with raw_connection(url) as nc:
        seconds, count = await baselines.keys_then_get(nc, bucket, timeout)
    count -= 1  # the collection's schema
    if count != n:
        # nats-py's keys() may stop early (nats-io/nats.py#842): the figure would flatter the baseline.
        raise RuntimeError(f"kv.keys() + kv.get got {count} entries, expected {n}")
    return seconds


async def bench_load(url: str, params: Params, *, history: bool) -> list[Row]:
    # load_history keeps params.n: at a million entities it would write several million revisions.
    n, timeout = (params.n if history else params.io_n), params.timeout
    one_at_a_time = history or n <= ONE_AT_A_TIME_MAX
    depth = params.history if history else 1
    ns = namespace("h" if history else "l")
    flat_ns = namespace("l") if history else ns
    bucket = f"{ns}-{COLLECTION}"
    lib = Series("brainlessdb", RATE, True)
    replay = Series(f"raw ordered consumer replay + msgspec decode (history={depth})", RATE, True)
    other = Series(
        "brainlessdb start(), same values in a history=1 bucket"
        if history
        else "nats-py kv.keys() + one kv.get per key",
        RATE,
        True,
    )
    async with raw_connection(url) as nc:
        try:
            logger.info(
                "%s: writing %d entities x %d revisions", "load_history" if history else "load", n, depth
            )
            await write_bucket(url, ns, n, depth, timeout, history=depth)
            if history:
                # The same values, written as often, into a bucket that keeps only the last one.
                await write_bucket(url, flat_ns, n, depth, timeout, history=1)
            for repeat in range(params.repeats):
                logger.info(
                    "%s: repeat %d/%d", "load_history" if history else "load", repeat + 1, params.repeats
                )
                lib.samples.append(rate(n, await time_start(url, ns, n, timeout)))
                replay.samples.append(rate(n, await time_replay(url, bucket, n, timeout)))
                if history:
                    other.samples.append(rate(n, await time_start(url, flat_ns, n, timeout)))
                elif one_at_a_time:
                    other.samples.append(rate(n, await time_keys_get(url, bucket, n, timeout)))
        finally:
            stale = [f"{ns}-{COLLECTION}", f"{flat_ns}-{COLLECTION}"]
            await baselines.delete_buckets(nc, *stale)
    name = "load_history" if history else "load"
    measure = f"start() loading {n} entities" + (f", {depth} revisions each" if history else "")
    rows = [pair(name, measure, lib, replay)]
    if one_at_a_time:
        rows.append(pair(name, measure, lib, other))
    return rows


# -- propagation -----------------------------------------------------------------------------------


async def lib_latencies(url: str, changes: int, timeout: float) -> list[float]:
    """Seconds from ``entity.priority = i`` on node A until node B's ``on_change`` sees it."""
    ns = namespace("p")
    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Future[float]] = {}
    try:
        async with (
            database(url, ns, "node-a", flush_interval=0) as node_a,
            database(url, ns, "node-b", flush_interval=0) as node_b,
        ):
            entity: Entity = node_a.collection(COLLECTION).add({**entity_data(0), "priority": -1})
            await asyncio.wait_for(node_a.flush(), timeout)

            def on_change(event: Change) -> None:
                change = event.changes.get("priority")
                if change is not None and (future := waiting.pop(change[1], None)) is not None:
                    future.set_result(time.perf_counter())

            replica_b = node_b.collection(COLLECTION)
            replica_b.on_change(on_change)
            await eventually(
                lambda: entity.uuid in replica_b,
                timeout,
                interval=0.001,
                message="node B never saw the entity",
            )
            latencies = []
            for i in range(changes):
                arrived = waiting[i] = loop.create_future()
                start = time.perf_counter()
                entity.priority = i
                latencies.append(await asyncio.wait_for(arrived, timeout) - start)
                await asyncio.wait_for(node_a.flush(), timeout)  # the ack is in, as the baseline waits too
            return latencies
    finally:
        async with raw_connection(url) as nc:
            await baselines.delete_buckets(nc, f"{ns}-{COLLECTION}")


async def raw_latencies(url: str, changes: int, timeout: float) -> list[float]:
    bucket = f"{namespace('r')}-raw"
    async with raw_connection(url) as writer, raw_connection(url) as reader:
        try:
            await baselines.create_bucket(writer, bucket)
            data = entity_data(0)
            return await baselines.put_watch_latencies(writer, reader, bucket, data, changes, timeout)
        finally:
            await baselines.delete_buckets(writer, bucket)


async def bench_propagation(url: str, params: Params) -> list[Row]:
    p50 = [Series("brainlessdb", "ms", False), Series("raw publish -> ordered consumer", "ms", False)]
    p99 = [Series("brainlessdb", "ms", False), Series("raw publish -> ordered consumer", "ms", False)]
    for repeat in range(params.repeats):
        logger.info("propagation: repeat %d/%d", repeat + 1, params.repeats)
        for side, measure in enumerate((lib_latencies, raw_latencies)):
            latencies = await measure(url, params.changes, params.timeout)
            p50[side].samples.append(percentile(latencies, 0.50) * 1000)
            p99[side].samples.append(percentile(latencies, 0.99) * 1000)
    what = f"{params.changes} sequential changes, A set -> B sees"
    return [
        pair("propagation", f"p50, {what}", p50[0], p50[1]),
        pair("propagation", f"p99, {what}", p99[0], p99[1]),
    ]


# -- claims ----------------------------------------------------------------------------------------

CLAIMS = "claims/s"


async def lib_claims(url: str, count: int, timeout: float) -> float:
    """Seconds of ``count`` sequential ``update_if`` claims, each of another waiting item (all won)."""
    ns = namespace("c")
    try:
        async with database(url, ns, "bench-claimer", flush_interval=3600) as db:
            collection = db.collection(COLLECTION)
            items = [collection.add({**entity_data(i), "state": "waiting"}) for i in range(count + 1)]
            await asyncio.wait_for(db.flush(), timeout)
            check_clean(db, "writing the claimed items")
            # One claim first: the bucket is bound and the ack inbox exists before timing.
            await collection.update_if(items[0], {"state": "waiting"}, state="talking", agent_id=0)
            start = time.perf_counter()
            for item in items[1:]:
                if not await collection.update_if(item, {"state": "waiting"}, state="talking", agent_id=1):
                    raise RuntimeError(f"claim of {item.uuid} lost with no other claimer")
            return time.perf_counter() - start
    finally:
        async with raw_connection(url) as nc:
            await baselines.delete_buckets(nc, f"{ns}-{COLLECTION}")


async def bench_claims(url: str, params: Params) -> list[Row]:
    count = params.claims
    lib = Series("brainlessdb", CLAIMS, True)
    read_update = Series("raw kv.get + check + kv.update(last=revision), one at a time", CLAIMS, True)
    update = Series("raw kv.update(last=revision), one at a time (no read)", CLAIMS, True)
    for repeat in range(params.repeats):
        logger.info("claims: repeat %d/%d", repeat + 1, params.repeats)
        lib.samples.append(rate(count, await lib_claims(url, count, params.timeout)))
        bucket = f"{namespace('k')}-raw"
        async with raw_connection(url) as nc:
            try:
                await baselines.create_bucket(nc, bucket)
                rows = [{**entity_data(i), "state": "waiting"} for i in range(count)]
                seconds = await baselines.get_check_update(nc, bucket, rows, params.timeout)
                read_update.samples.append(rate(count, seconds))
                seconds = await baselines.update_one_by_one(nc, bucket, rows, params.timeout)
                update.samples.append(rate(count, seconds))
            finally:
                await baselines.delete_buckets(nc, bucket)
    measure = f"{count} sequential update_if, each of another waiting item"
    return [pair("claims", measure, lib, read_update), pair("claims", measure, lib, update)]
