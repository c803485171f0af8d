"""``brainless demo``: the use cases of the README on a real server, explained as they run.

It starts an embedded nats-server with a data directory, runs a call queue, session storage and call state
tracking, lets two nodes edit the same entities at once and shows them converge, then stops everything,
restarts the server, and shows a late node loading the data back from NATS. Then two locations, each on
an embedded server of its own (a JetStream domain) joined by a leaf link that the demo cuts: both keep
working, a node restarts during the cut, and all converge after the heal. ``--server URL`` runs the
first part against an existing server (the locations part needs servers of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brainlessdb.core.meta import meta
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.embedded_locations import EmbeddedLocations
from brainlessdb.shell.database import Brainless
from brainlessdb.storage.nats.errors import redact_url


@dataclass
class QueueItem:
    priority: int
    caller_id: str
    queue_id: int
    state: str
    uuid: str | None = None


@dataclass
class Session:
    user_id: int
    token: str
    created_at: float
    last_seen: float
    uuid: str | None = None


@dataclass
class Call:
    channel_id: str
    state: str
    caller: dict[str, str]
    queue_id: int | None = None
    agent_id: int | None = None
    uuid: str | None = None


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text} " + "=" * max(0, 66 - len(text)))


async def queue_management(db: Brainless, url: str) -> None:
    heading("Queue management")
    queue = db.queue.typed(QueueItem)
    for priority, caller in [(3, "caller-789"), (1, "caller-123"), (2, "caller-456")]:
        queue.add(QueueItem(priority=priority, caller_id=caller, queue_id=5, state="waiting"))
    await db.flush()
    waiting = await queue.order_by("priority", state="waiting")
    say("waiting, by priority: " + ", ".join(f"{i.caller_id} (p{i.priority})" for i in waiting))
    next_item = waiting[0]
    # Taking an item is exclusive: update_if checks the version stored in NATS and writes with
    # compare-and-set, so of two nodes trying at once exactly one gets True.
    async with Brainless(url, namespace=db.namespace, location="brno-1") as other:
        taken = await asyncio.gather(
            queue.update_if(next_item, {"state": "waiting"}, state="processing"),
            other.queue.update_if(next_item.uuid, {"state": "waiting"}, state="processing"),
        )
    for node, won in zip(("prague-1", "brno-1"), taken, strict=True):
        say(f"{node} tries to take {next_item.caller_id}: {'taken' if won else 'already taken'}")
    say(f"next: {next_item.caller_id} -> {next_item.state}")
    del queue[next_item]
    say(f"done with it; {len(queue)} left in the queue")


async def session_storage(db: Brainless) -> None:
    heading("Session storage")
    sessions = db.session.typed(Session)
    now = time.time()
    sessions.add(Session(user_id=7, token="old-token", created_at=now - 7200, last_seen=now - 7200))
    sessions.add(Session(user_id=42, token="abc123", created_at=now, last_seen=now))
    session = await sessions.find(token="abc123")
    assert session is not None
    session.last_seen = time.time()
    say(f"found by token: user {session.user_id}")
    stale = await sessions.filter(last_seen__lt=time.time() - 3600)
    say("stale sessions: " + ", ".join(f"user {s.user_id}" for s in stale))


async def call_tracking(db: Brainless) -> Call:
    heading("Call state tracking")
    calls = db.call.typed(Call)
    call = calls.add(
        Call(channel_id="chan-123", state="ringing", caller={"number": "+420123456", "city": "Prague"})
    )
    found = await calls.find(caller__city="Prague")
    assert found is not None
    found.state = "answered"
    found.agent_id = 5
    agent_calls = await calls.filter(agent_id=5, state="answered")
    say(f"calls of agent 5: {[c.channel_id for c in agent_calls]}")
    await db.flush()
    say(f"flushed to bucket {db.bucket_name('call')!r}: {call}")
    return call


async def two_nodes(url: str, namespace: str, call_uuid: str) -> None:
    heading("Two nodes edit the same call at once")
    prague = Brainless(url, namespace=namespace, location="prague-1", flush_interval=60)
    brno = Brainless(url, namespace=namespace, location="brno-1", flush_interval=60)
    await prague.start()
    await brno.start()
    try:
        in_prague, in_brno = prague.call[call_uuid], brno.call[call_uuid]
        in_prague.state = "on hold"
        in_brno.agent_id = 9
        in_prague.caller["city"] = "Prague 2"
        in_brno.queue_id = 1
        say("prague-1 sets state and caller.city; brno-1 sets agent_id and queue_id, concurrently")
        await asyncio.gather(prague.flush(), brno.flush())
        await asyncio.gather(prague.flush(), brno.flush())
        await asyncio.gather(prague.call.load(), brno.call.load())
        say(f"prague-1 sees: {meta(prague.call[call_uuid]).data}")
        say(f"brno-1 sees:   {meta(brno.call[call_uuid]).data}")
        same = meta(prague.call[call_uuid]).data == meta(brno.call[call_uuid]).data
        say("converged: " + ("yes" if same else "NO"))

        in_prague.state = "transferred"
        in_brno.state = "hung up"
        await asyncio.gather(prague.flush(), brno.flush())
        await asyncio.gather(prague.flush(), brno.flush())
        await asyncio.gather(prague.call.load(), brno.call.load())
        states = f"{prague.call[call_uuid].state!r} / {brno.call[call_uuid].state!r}"
        say(f"both set state at once; both now say {states}")
        say("(the newer stamp wins; within one clock tick, the node name decides)")
    finally:
        await prague.stop()
        await brno.stop()


async def late_joiner(url: str, namespace: str) -> None:
    heading("A node that joins late loads everything back from NATS")
    late = Brainless(url, namespace=namespace, location="ostrava-1")
    started = time.perf_counter()
    await late.start()
    took = (time.perf_counter() - started) * 1000
    try:
        for name, collection in sorted(late.collections.items()):
            fields = list(collection.schema.fields) if collection.schema else []
            say(f"{name}: {len(collection)} entities, schema fields {fields}")
        say(f"started and loaded in {took:.0f} ms")
    finally:
        await late.stop()


async def run_demo(url: str, namespace: str, restart: EmbeddedServer | None) -> None:
    db = Brainless(url, namespace=namespace, location="prague-1")
    await db.start()
    say(f"connected to {redact_url(url)}; namespace {namespace!r}, location {db.location!r}")
    await queue_management(db, url)
    await session_storage(db)
    call = await call_tracking(db)
    await db.stop()
    await two_nodes(url, namespace, call.uuid or "")
    if restart is not None:
        heading("Restarting the NATS server")
        restart.stop()
        say("server stopped")
        restart.start()
        say(f"server started again on {restart.url} with the same data directory")
    await late_joiner(url, namespace)


async def two_locations(namespace: str, base_dir: Path) -> None:
    heading("Two locations, each on its own NATS, through a partition")
    async with EmbeddedLocations(["prague", "brno"], base_dir=base_dir) as places:
        say("prague and brno run a nats-server each (JetStream domains), brno a leaf node of prague")
        nodes: list[Brainless] = []

        async def node(domain: str, peer: str, name: str) -> Brainless:
            db = Brainless(
                places.url(domain), namespace=namespace, location=name, domain=domain, peers=[peer]
            )
            nodes.append(await db.start())
            return db

        try:
            prague = await node("prague", "brno", "prague-1")
            brno = await node("brno", "prague", "brno-1")
            call = prague.call.add(channel_id="chan-9", state="ringing", agent_id=None, caller={}, attempts=0)
            await prague.flush()
            await brno.call.all()
            took = await until(lambda: call.uuid in brno.call)
            say(f"prague-1 adds a call; brno-1 has it {took * 1000:.0f} ms later")

            places.links["brno"].cut()
            say("the link between the locations is cut")
            prague.call[call.uuid].state = "answered"
            prague.call.increment(call.uuid, "attempts")
            brno.call[call.uuid].agent_id = 7
            brno.call[call.uuid].caller["vip"] = True
            brno.call.increment(call.uuid, "attempts")
            await asyncio.gather(prague.flush(), brno.flush())
            say("prague-1 answers the call and counts an attempt; brno-1 assigns agent 7, marks the caller")
            say("VIP and counts an attempt: both written to their own location's NATS")
            say(f"prague-1 sees: {meta(prague.call[call.uuid]).data}")
            say(f"brno-1 sees:   {meta(brno.call[call.uuid]).data}")
            late = await node("brno", "prague", "brno-2")
            say(f"brno-2 starts during the cut and loads brno: {meta(late.call[call.uuid]).data}")

            places.links["brno"].heal()
            merged = {"state": "answered", "agent_id": 7, "caller": {"vip": True}, "attempts": 2}

            def converged() -> bool:
                views = [meta(db.call[call.uuid]).data for db in nodes if call.uuid in db.call]
                held = len(views) == len(nodes) and all(view == views[0] for view in views)
                return held and all(views[0].get(name) == value for name, value in merged.items())

            took = await until(converged, timeout=120)
            say(f"the link heals; {took:.1f} s later every node sees: {meta(prague.call[call.uuid]).data}")
            say("locations converged: " + ("yes" if converged() else "NO"))
        finally:
            for db in nodes:
                await db.stop()


async def until(done: Callable[[], bool], timeout: float = 30.0) -> float:
    """Seconds until ``done()`` (polled); the timeout's seconds if it never is."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if done():
            break
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


def demo(args: argparse.Namespace) -> int:
    namespace = args.namespace or "demo" + uuid.uuid4().hex[:6]
    if args.server:
        asyncio.run(run_demo(args.server, namespace, None))
        return 0
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="brainless-demo-"))
    server = EmbeddedServer(store_dir=data)
    server.start()
    say(f"embedded nats-server {server.url} (pid {server.pid}), data in {data}")
    try:
        asyncio.run(run_demo(server.url, namespace, server))
        server.stop()
        asyncio.run(two_locations(namespace, data / "locations"))
    finally:
        server.stop()
        if not args.data:
            shutil.rmtree(data, ignore_errors=True)
    say()
    say("demo finished; the server is stopped")
    return 0
