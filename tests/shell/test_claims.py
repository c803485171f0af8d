"""``update_if``: conditional updates checked against the stored version and written with compare-and-set.

On both backends (one ``MemoryStorage`` shared by the nodes, or the shared nats-server): one winner among
nodes claiming the same items, the loser's memory holding the stored version, a conflict between the read
and the write checked again, validation before any I/O, a missing or deleted entity, and writes whose
acknowledgement was lost. With a killed server of the test's own: ``UnavailableError`` within the
``claim_timeout``, memory unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from brainlessdb import (
    Brainless,
    BrainlessError,
    Change,
    NotFoundError,
    NotStartedError,
    QueryError,
    SchemaError,
    UnavailableError,
    meta,
)
from brainlessdb.core.ids import location_node, new_uuid
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.storage.base import Entry, Storage, Write
from brainlessdb.storage.memory import MemoryStorage
from tests.helpers import eventually, kv_storage, raw_bucket

Hook = Callable[[], Awaitable[None]]


class Hooked:
    """A storage that counts reads and writes and lets a test act at chosen moments of a claim.

    ``after_read`` runs once, after the next read (another node acting between a claim's read and its
    write). ``lose_ack`` makes the next write return ``UnavailableError`` as a lost acknowledgement does,
    after storing it (``"stored"``) or not (``"dropped"``). ``unreachable`` makes reads fail as an outage.
    """

    def __init__(self, inner: Storage) -> None:
        self._inner = inner
        self.reads = 0
        self.writes = 0
        self.after_read: Hook | None = None
        self.lose_ack: str | None = None
        self.unreachable = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get(self, bucket: str, key: str) -> Entry | None:
        if self.unreachable:
            raise UnavailableError("test: NATS is unreachable")
        entry = await self._inner.get(bucket, key)
        self.reads += 1
        hook, self.after_read = self.after_read, None
        if hook is not None:
            await hook()
        return entry

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        self.writes += len(writes)
        lose, self.lose_ack = self.lose_ack, None
        if lose is None:
            return await self._inner.write(bucket, writes)
        if lose == "stored":
            await self._inner.write(bucket, writes)
        return [UnavailableError("test: no acknowledgement in time") for _ in writes]


NodeFactory = Callable[..., Awaitable[tuple[Brainless, Hooked]]]


@pytest.fixture
async def nodes(backend: str, request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[NodeFactory]:
    """Nodes sharing one store, each through its own ``Hooked`` storage (closed after the test)."""
    shared = MemoryStorage()
    url = request.getfixturevalue("nats_server").url if backend == "nats" else None
    started: list[Brainless] = []
    async with contextlib.AsyncExitStack() as stack:

        async def factory(location: str, **options: Any) -> tuple[Brainless, Hooked]:
            inner: Storage = (
                shared.share() if url is None else await stack.enter_async_context(kv_storage(url))
            )
            storage = Hooked(inner)
            options.setdefault("flush_interval", 0.02)
            db = Brainless(storage, namespace=namespace, location=location, **options)
            await db.start()
            started.append(db)
            return db, storage

        try:
            yield factory
        finally:
            for db in started:
                with contextlib.suppress(BrainlessError):
                    await db.stop()


async def seen(db: Brainless, uuid: str, **fields: Any) -> None:
    """Wait until ``db`` holds entity ``uuid`` with ``fields``."""

    def holds() -> bool:
        entity = db.queue.entities.get(uuid)
        return entity is not None and all(meta(entity).data.get(k) == v for k, v in fields.items())

    await eventually(holds, message=f"{db.location} never saw {uuid} with {fields}")


async def stored_item(db: Brainless, uuid: str) -> dict[str, Any] | None:
    """What the node's storage holds for ``uuid`` (its data), read afresh by another database."""
    async with Brainless(db._source, namespace=db.namespace, location="reader") as reader:
        await reader.queue.load()
        entity = reader.queue.entities.get(uuid)
        return None if entity is None else meta(entity).data


WAITING = {"state": "waiting", "agent_id": None, "priority": 1}


# -- one winner ------------------------------------------------------------------------------------


async def test_the_first_claim_wins_and_the_loser_holds_the_stored_version(nodes: NodeFactory) -> None:
    a, _ = await nodes("prague-1")
    b, _ = await nodes("brno-1", flush_interval=3600)
    item = a.queue.add(WAITING)
    await a.flush()
    await seen(b, item.uuid)
    b.queue.on_change(lambda event: None)  # the listener does not change the answer
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5) is True
    assert meta(item).data == {"state": "processing", "agent_id": 5, "priority": 1}
    assert not meta(item).dirty
    # b has not seen the claim through its watch yet, or has: either way, it loses, and then holds it.
    assert await b.queue.update_if(item.uuid, {"state": "waiting"}, state="processing", agent_id=6) is False
    assert meta(b.queue[item.uuid]).data == {"state": "processing", "agent_id": 5, "priority": 1}
    assert not meta(b.queue[item.uuid]).dirty
    assert a.stats()["claims"]["won"] == 1 and b.stats()["claims"]["lost"] == 1


async def test_nodes_claiming_the_same_items_at_once_take_each_exactly_once(nodes: NodeFactory) -> None:
    workers = [(await nodes(f"node-{i}"))[0] for i in range(3)]
    dialer = workers[0]
    items = [dialer.queue.add(WAITING) for _ in range(40)]
    await dialer.flush()
    for worker in workers:
        for item in items:
            await seen(worker, item.uuid)

    async def claim_all(worker: Brainless, agent: int) -> list[str]:
        taken = []
        for item in items:
            if await worker.queue.update_if(
                item.uuid, {"state": "waiting"}, state="processing", agent_id=agent
            ):
                taken.append(item.uuid)
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(claim_all(w, i) for i, w in enumerate(workers)))
    taken = [uuid for result in results for uuid in result]
    assert sorted(taken) == sorted(item.uuid for item in items)
    for agent, result in enumerate(results):
        for uuid in result:
            for worker in workers:
                await seen(worker, uuid, state="processing", agent_id=agent)


async def test_a_change_of_the_criteria_between_the_read_and_the_write_makes_the_claim_lose(
    nodes: NodeFactory,
) -> None:
    a, hooked = await nodes("prague-1")
    b, _ = await nodes("brno-1")
    item = a.queue.add(WAITING)
    await a.flush()
    await seen(b, item.uuid)

    async def b_takes_it() -> None:
        b.queue[item.uuid].state = "processing"
        b.queue[item.uuid].agent_id = 7
        await b.flush()

    hooked.after_read = b_takes_it
    reads, writes = hooked.reads, hooked.writes
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5) is False
    # The write met b's revision: read and checked again, and not written.
    assert (hooked.reads - reads, hooked.writes - writes) == (2, 1)
    assert meta(item).data == {"state": "processing", "agent_id": 7, "priority": 1}
    assert await stored_item(a, item.uuid) == {"state": "processing", "agent_id": 7, "priority": 1}


async def test_a_change_of_another_field_between_the_read_and_the_write_is_kept_beside_the_claim(
    nodes: NodeFactory,
) -> None:
    a, hooked = await nodes("prague-1")
    b, _ = await nodes("brno-1")
    item = a.queue.add(WAITING)
    await a.flush()
    await seen(b, item.uuid)

    async def b_reprioritises() -> None:
        b.queue[item.uuid].priority = 9
        await b.flush()

    hooked.after_read = b_reprioritises
    reads, writes = hooked.reads, hooked.writes
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5) is True
    assert (hooked.reads - reads, hooked.writes - writes) == (2, 2)
    both = {"state": "processing", "agent_id": 5, "priority": 9}
    assert meta(item).data == both
    assert await stored_item(a, item.uuid) == both
    await seen(b, item.uuid, **both)


async def test_unflushed_changes_of_other_fields_stay_pending_and_are_written_beside_the_claim(
    nodes: NodeFactory,
) -> None:
    a, _ = await nodes("prague-1", flush_interval=3600)
    item = a.queue.add(WAITING)
    await a.flush()
    item.priority = 3
    item.state = "old local value"  # older than the claim: the claim's stamp wins
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing") is True
    assert meta(item).data == {"state": "processing", "agent_id": None, "priority": 3}
    assert meta(item).dirty
    await a.flush()
    assert await stored_item(a, item.uuid) == {"state": "processing", "agent_id": None, "priority": 3}


async def test_an_entity_added_here_and_not_yet_written_is_written_first(nodes: NodeFactory) -> None:
    a, _ = await nodes("prague-1", flush_interval=3600)
    item = a.queue.add(WAITING)
    assert await a.queue.update_if(item.uuid, {"agent_id__isnull": True}, state="processing", agent_id=1)
    assert meta(item).data == {"state": "processing", "agent_id": 1, "priority": 1}
    assert not meta(item).dirty
    assert await stored_item(a, item.uuid) == meta(item).data


# -- typed instances, events -----------------------------------------------------------------------


@dataclass
class QueueItem:
    priority: int
    state: str
    agent_id: Optional[int] = None  # noqa: UP045
    uuid: Optional[str] = None  # noqa: UP045


async def test_typed_instances_and_local_change_events(nodes: NodeFactory) -> None:
    a, _ = await nodes("prague-1")
    queue = a.queue.typed(QueueItem)
    events: list[Change] = []
    queue.on_change(events.append, local=True)
    item = queue.add(QueueItem(priority=1, state="waiting"))
    events.clear()
    assert await queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=3)
    assert item.state == "processing" and item.agent_id == 3
    await a.flush()
    [event] = [e for e in events if "state" in e.changes]
    assert event.origin == "local" and event.changes["state"] == ("waiting", "processing")


# -- validation, missing entities ------------------------------------------------------------------


async def test_bad_criteria_or_changes_are_refused_before_anything_is_read(nodes: NodeFactory) -> None:
    a, hooked = await nodes("prague-1")
    item = a.queue.add(WAITING)
    await a.flush()
    reads, writes = hooked.reads, hooked.writes
    with pytest.raises(QueryError):
        await a.queue.update_if(item, {"state__nope": "waiting"}, state="processing")
    with pytest.raises(QueryError):
        await a.queue.update_if(item, {"unknown": 1}, state="processing")
    with pytest.raises(SchemaError):
        await a.queue.update_if(item, {"state": "waiting"}, state=5)
    with pytest.raises(SchemaError):
        await a.queue.update_if(item, {"state": "waiting"}, unknown="x")
    with pytest.raises(TypeError):
        await a.queue.update_if(item, {"state": "waiting"})
    with pytest.raises(TypeError):
        await a.queue.update_if(item, "state=waiting", state="processing")  # type: ignore[arg-type]
    assert (hooked.reads, hooked.writes) == (reads, writes)
    assert meta(item).data == WAITING and not meta(item).dirty


async def test_a_missing_or_deleted_entity_is_not_found(nodes: NodeFactory) -> None:
    a, hooked = await nodes("prague-1")
    b, _ = await nodes("brno-1")
    with pytest.raises(NotFoundError):
        await a.queue.update_if(new_uuid(location_node("x")), {}, state="processing")
    item = a.queue.add(WAITING)
    await a.flush()
    await seen(b, item.uuid)
    del b.queue[item.uuid]
    await b.flush()
    with pytest.raises(NotFoundError):
        await a.queue.update_if(item, {"state": "waiting"}, state="processing")
    assert item.uuid not in a.queue  # the read told memory of the delete
    reads = hooked.reads
    with pytest.raises(NotFoundError):  # deleted here: known without asking NATS
        await a.queue.update_if(item, {"state": "waiting"}, state="processing")
    assert hooked.reads == reads


async def test_a_database_not_started_refuses(backend: str) -> None:
    db = Brainless(None, namespace="x", location="a")
    with pytest.raises(NotStartedError):
        await db.queue.update_if("6f1c2a4e-0000-11ef-8000-0242ac120002", {}, state="x")


# -- lost acknowledgements -------------------------------------------------------------------------


async def test_a_write_stored_without_acknowledgement_is_found_and_won(nodes: NodeFactory) -> None:
    a, hooked = await nodes("prague-1")
    item = a.queue.add(WAITING)
    await a.flush()
    hooked.lose_ack = "stored"
    writes = hooked.writes
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5) is True
    assert hooked.writes - writes == 1  # the read after the lost ack found it stored: not written again
    assert meta(item).data == {"state": "processing", "agent_id": 5, "priority": 1}


async def test_a_write_dropped_without_acknowledgement_is_sent_again(nodes: NodeFactory) -> None:
    a, hooked = await nodes("prague-1")
    item = a.queue.add(WAITING)
    await a.flush()
    hooked.lose_ack = "dropped"
    writes = hooked.writes
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5) is True
    assert hooked.writes - writes == 2
    assert await stored_item(a, item.uuid) == {"state": "processing", "agent_id": 5, "priority": 1}


async def test_an_outcome_unknown_at_the_timeout_is_settled_by_the_same_claim_made_again(
    nodes: NodeFactory,
) -> None:
    a, hooked = await nodes("prague-1", claim_timeout=0.5)
    b, _ = await nodes("brno-1")
    item = a.queue.add(WAITING)
    await a.flush()
    await seen(b, item.uuid)

    async def outage() -> None:
        hooked.unreachable = True

    hooked.lose_ack = "stored"
    hooked.after_read = outage
    with pytest.raises(UnavailableError, match="outcome is unknown"):
        await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5)
    assert a.stats()["claims"]["unknown"] == 1
    await seen(b, item.uuid, state="processing", agent_id=5)  # it was stored: b sees it is taken
    assert await b.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=6) is False
    hooked.unreachable = False
    # Made again with the same arguments, the claim finds its own write stored: won.
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5) is True
    # And only once: a later same claim is a new one, and the item is no longer waiting.
    assert await a.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5) is False


# -- NATS down -------------------------------------------------------------------------------------


async def test_a_claim_with_nats_down_raises_unavailable_within_the_timeout(
    own_server: EmbeddedServer, namespace: str
) -> None:
    async with Brainless(own_server.url, namespace=namespace, location="a", claim_timeout=1) as db:
        item = db.queue.add(WAITING)
        await db.flush()
        await db.queue.load()  # a collection in use: its first load is done (see the test below otherwise)
        own_server.kill()
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await db.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5)
        assert time.monotonic() - started < 2.0
        assert meta(item).data == WAITING and not meta(item).dirty  # nothing changed in memory
        own_server.start()
        assert await db.queue.update_if(item, {"state": "waiting"}, state="processing", agent_id=5)
        live, _ = await raw_bucket(own_server.url, db.bucket_name("queue"))
        assert live[item.uuid] == {"state": "processing", "agent_id": 5, "priority": 1}


async def test_a_claim_in_a_collection_first_used_during_an_outage_raises_within_the_timeout(
    own_server: EmbeddedServer, namespace: str
) -> None:
    async with Brainless(own_server.url, namespace=namespace, location="a", claim_timeout=1) as db:
        own_server.kill()
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await db.queue.update_if(new_uuid(location_node("x")), {"state": "waiting"}, state="processing")
        assert time.monotonic() - started < 2.0
        own_server.start()


async def test_in_memory_mode_claims_on_memory() -> None:
    async with Brainless(None, namespace="mem", location="a") as db:
        item = db.queue.add(WAITING)
        assert await db.queue.update_if(item, {"state": "waiting"}, state="processing")
        assert not await db.queue.update_if(item, {"state": "waiting"}, state="processing")
        assert item.state == "processing"


# -- three worker processes, one queue ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 300


@dataclass
class Worker:
    """A worker process (``tests/shell/workers/queue_worker.py``) and what it reported."""

    agent: int
    process: asyncio.subprocess.Process
    took: list[str] = field(default_factory=list)
    unavailable: int = 0
    unknown: int = 0  # claims whose write was sent but not acknowledged before the timeout
    done: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            if "ready" in message:
                self.ready.set()
            elif "took" in message:
                self.took.append(message["took"])
            elif "unavailable" in message:
                self.unavailable += 1
                self.unknown += bool(message["unknown"])
            elif "done" in message:
                self.done = message["done"]


async def run_queue(
    url: str,
    namespace: str,
    *,
    work: float = 0.0,
    claim_timeout: float = 5.0,
    meanwhile: Callable[[list[Worker]], Awaitable[None]] | None = None,
) -> tuple[list[str], list[Worker]]:
    """Three worker processes take ``ITEMS`` items a dialer (this process) adds while they run.

    Returns the uuids added and the workers, once every worker has drained the queue and exited. Every
    process started here is killed on the way out, whatever happened.
    """
    workers: list[Worker] = []
    readers: list[asyncio.Task[None]] = []
    try:
        for agent in range(3):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.shell.workers.queue_worker",
                url,
                namespace,
                str(agent),
                str(ITEMS),
                str(work),
                str(claim_timeout),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            worker = Worker(agent, process)
            workers.append(worker)
            readers.append(asyncio.create_task(worker.read()))
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in workers)), 20)
        added: list[str] = []
        async with Brainless(url, namespace=namespace, location="dialer", flush_interval=0.02) as dialer:
            for _ in range(10):  # items keep coming while the workers take them
                added += [dialer.queue.add(WAITING).uuid for _ in range(ITEMS // 10)]
                await asyncio.sleep(0.03)
            await dialer.flush()
            if meanwhile is not None:
                await meanwhile(workers)
            codes = await asyncio.wait_for(asyncio.gather(*(w.process.wait() for w in workers)), 30)
        await asyncio.wait_for(asyncio.gather(*readers), 5)
        assert codes == [0, 0, 0]
        return added, workers
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
        for reader in readers:
            reader.cancel()


async def check_taken_once(url: str, namespace: str, added: list[str], workers: list[Worker]) -> None:
    """Every item was reported taken by exactly one worker, and NATS says that worker has it."""
    taken = [uuid for worker in workers for uuid in worker.took]
    assert len(taken) == len(set(taken)), "an item was taken twice"
    assert set(taken) == set(added), f"{len(set(added) - set(taken))} item(s) taken by nobody"
    assert all(worker.done == len(worker.took) for worker in workers)
    live, _ = await raw_bucket(url, f"{namespace}-queue")
    holder = {uuid: worker.agent for worker in workers for uuid in worker.took}
    assert {uuid: (data["state"], data["agent_id"]) for uuid, data in live.items()} == {
        uuid: ("processing", agent) for uuid, agent in holder.items()
    }


async def test_three_processes_take_every_item_of_one_queue_exactly_once(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    added, workers = await run_queue(nats_server.url, namespace)
    await check_taken_once(nats_server.url, namespace, added, workers)
    assert sum(1 for worker in workers if worker.took) >= 2  # they did share the work


async def test_three_processes_take_every_item_once_through_a_server_crash(
    own_server: EmbeddedServer, namespace: str
) -> None:
    async def crash(workers: list[Worker]) -> None:
        await eventually(lambda: sum(len(w.took) for w in workers) >= ITEMS // 3, timeout=20)
        own_server.kill()  # SIGKILL, in the middle of the claims
        await asyncio.sleep(2.5)  # longer than the claim timeout: claims meanwhile raise UnavailableError
        await asyncio.to_thread(own_server.start)

    added, workers = await run_queue(own_server.url, namespace, work=0.01, claim_timeout=1.0, meanwhile=crash)
    await check_taken_once(own_server.url, namespace, added, workers)
    assert sum(worker.unavailable for worker in workers) >= 1
