"""Memory probe, run in a fresh process: ``python -m benchmarks.probe MODE --n N [--url U --namespace NS]``.

Prints one JSON line: the bytes tracemalloc sees still allocated after building ``N`` entities (minus what
was allocated before), per entity. Modes:

- ``loaded``: ``Brainless(url, namespace).start()`` loads the bucket ``{namespace}-call``, then stops;
- ``plain-loaded``: an ordered consumer replays the same bucket into ``{key: data}`` plain dicts;
- ``struct-loaded``: the same replay into ``{key: Call}``, a msgspec Struct per entity (nested Struct for
  its nested object), the most compact plain-Python holding of these fields;
- ``added``: ``add()`` of N entities in the in-memory mode, flushed (its storage keeps the stored bytes);
- ``plain-added``: the same N entities as plain dicts in a dict keyed by a fresh uuid.

Everything the figure does not include (the connection, the event loop) is closed or constant.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tracemalloc
from typing import Any

import msgspec

from benchmarks.baselines import connect, ordered_replay
from benchmarks.common import COLLECTION, entity_data, new_key
from brainlessdb import Brainless

TIMEOUT = 600.0


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def loaded(url: str, ns: str, n: int) -> dict[str, Any]:
    before = traced()
    db = Brainless(url, namespace=ns, location="probe", flush_interval=3600)
    await asyncio.wait_for(db.start(), TIMEOUT)
    collection = db.collection(COLLECTION)
    await db.stop()
    count = len(collection)
    used = traced() - before
    return {"count": count, "bytes": used}


def _data(value: Any) -> Any:
    """An entity's fields from its stored envelope (``docs/format.md``)."""
    return value.get("d") if isinstance(value, dict) else None


def _call(value: Any) -> Any:
    data = _data(value)
    return msgspec.convert(data, Call) if isinstance(data, dict) and "channel_id" in data else None


def _drop_schema(store: dict[str, Any]) -> None:
    """The replay also brings the collection's schema (key ``_schema``): it is not an entity."""
    for key in [key for key in store if key.startswith("_")]:
        del store[key]


async def plain_loaded(url: str, ns: str, n: int) -> dict[str, Any]:
    before = traced()
    nc = await connect(url)
    store: dict[str, Any] = {}
    try:
        await ordered_replay(nc, f"{ns}-{COLLECTION}", n + 1, TIMEOUT, store=store, pick=_data)
    finally:
        await nc.close()
    del nc
    _drop_schema(store)
    used = traced() - before
    return {"count": len(store), "bytes": used}


class Caller(msgspec.Struct):
    number: str
    city: str


class Call(msgspec.Struct):
    """The benchmark's entity as a msgspec Struct (``benchmarks.common.entity_data``'s fields)."""

    channel_id: str
    queue_id: int
    state: str
    caller: Caller
    agent_id: int
    priority: int
    queued_at: float


async def struct_loaded(url: str, ns: str, n: int) -> dict[str, Any]:
    before = traced()
    nc = await connect(url)
    store: dict[str, Any] = {}
    try:
        await ordered_replay(nc, f"{ns}-{COLLECTION}", n + 1, TIMEOUT, store=store, pick=_call)
    finally:
        await nc.close()
    del nc
    _drop_schema(store)
    used = traced() - before
    return {"count": len(store), "bytes": used}


async def added(n: int) -> dict[str, Any]:
    before = traced()
    db = Brainless(None, namespace="probe", location="probe", flush_interval=3600)
    await db.start()
    collection = db.collection(COLLECTION)
    for i in range(n):
        collection.add(entity_data(i))
    unflushed = traced() - before
    await db.flush()
    await asyncio.wait_for(collection.load(), TIMEOUT)  # the node's own writes came back through the watch
    used = traced() - before
    return {"count": len(collection), "bytes": used, "bytes_before_flush": unflushed}


async def plain_added(n: int) -> dict[str, Any]:
    before = traced()
    store = {new_key(): entity_data(i) for i in range(n)}  # the uuids count: brainlessdb makes them too
    used = traced() - before
    return {"count": len(store), "bytes": used}


READERS = {"loaded": loaded, "plain-loaded": plain_loaded, "struct-loaded": struct_loaded}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe")
    parser.add_argument("mode", choices=["loaded", "plain-loaded", "struct-loaded", "added", "plain-added"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--url")
    parser.add_argument("--namespace")
    args = parser.parse_args()
    tracemalloc.start()
    if args.mode in READERS:
        if not args.url or not args.namespace:
            parser.error(f"{args.mode} needs --url and --namespace")
        action = READERS[args.mode]
        result = asyncio.run(action(args.url, args.namespace, args.n))
    elif args.mode == "added":
        result = asyncio.run(added(args.n))
    else:
        result = asyncio.run(plain_added(args.n))
    if result["count"] != args.n:
        raise SystemExit(f"probe {args.mode}: {result['count']} entities, expected {args.n}")
    result["bytes_per_entity"] = result["bytes"] / args.n
    result["mode"] = args.mode
    print(json.dumps(result))


if __name__ == "__main__":
    main()
