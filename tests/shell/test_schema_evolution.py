"""Schema evolution against a real nats-server: two nodes on different schema versions converge.

Node A's watch lags on purpose (``LaggingWatch``): it keeps writing the old shape after node B evolved
the schema, as a node does until its watch brings the new schema. Its writes that meet B's newer versions
read the new schema first; the others are stored in the old shape and read under the new names. Both
nodes, and a node started afterwards, end with the same entities under the new schema, and no entry is
ever set aside.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import brainlessdb
from brainlessdb import Brainless, Collection, NotStartedError, SchemaError
from brainlessdb.core.names import SCHEMA_KEY
from brainlessdb.embedded import EmbeddedServer
from brainlessdb.storage.base import WatchBatch
from brainlessdb.storage.nats.kv import NatsKVStorage
from tests.helpers import kv_storage, memory_of

pytestmark = pytest.mark.nats


class LaggingWatch:
    """A storage whose watches hold what they bring while ``lag()`` is on, until ``catch_up()``: its node
    sees neither the others' writes nor a new schema meanwhile, and writes as it did."""

    def __init__(self, inner: NatsKVStorage) -> None:
        self._inner = inner
        self._live = asyncio.Event()
        self._live.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def lag(self) -> None:
        self._live.clear()

    def catch_up(self) -> None:
        self._live.set()

    async def watch_batches(self, bucket: str, *, after: int | None = None) -> AsyncIterator[WatchBatch]:
        async for batch in self._inner.watch_batches(bucket, after=after):
            await self._live.wait()
            yield batch


@dataclasses.dataclass
class CallV1:
    channel: str
    agent: int | None = None
    legacy: str = ""
    score: int = 0


@dataclasses.dataclass
class CallNote:
    """``CallV1`` with one more field, with a default."""

    channel: str
    agent: int | None = None
    legacy: str = ""
    score: int = 0
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Step:
    """One evolution made by node B, the writes of both nodes around it, and what they converge to."""

    evolve: Callable[[Collection[Any]], Any]
    new_write: dict[str, Any]
    """What B sets on entity ``one`` under the new schema (A then changes ``one`` too: a conflict)."""
    old_writes: dict[str, dict[str, Any]]
    """What A, still on the old schema, sets on ``one`` and ``two`` and adds as ``three``."""
    expected: dict[str, dict[str, Any]]
    """The entities all nodes end with (their fields under the new schema)."""


def base(channel: str, agent: int, **more: Any) -> dict[str, Any]:
    return {"channel": channel, "agent": agent, "legacy": f"l{agent}", "score": agent, **more}


STEPS = {
    "rename": Step(
        evolve=lambda coll: coll.evolve(rename={"agent": "agent_id"}),
        new_write={"score": 10},
        old_writes={"one": {"agent": 11}, "two": {"agent": 12}, "three": base("c3", 13)},
        expected={
            "one": {"channel": "c1", "agent_id": 11, "legacy": "l1", "score": 10},
            "two": {"channel": "c2", "agent_id": 12, "legacy": "l2", "score": 2},
            "three": {"channel": "c3", "agent_id": 13, "legacy": "l13", "score": 13},
        },
    ),
    "remove": Step(
        evolve=lambda coll: coll.evolve(remove=["legacy"]),
        new_write={"score": 10},
        old_writes={"one": {"legacy": "x"}, "two": {"legacy": "y", "agent": 12}, "three": base("c3", 13)},
        expected={
            "one": {"channel": "c1", "agent": 1, "score": 10},
            "two": {"channel": "c2", "agent": 12, "score": 2},
            "three": {"channel": "c3", "agent": 13, "score": 13},
        },
    ),
    "widen to float": Step(
        evolve=lambda coll: coll.evolve(widen={"score": float}),
        new_write={"score": 1.5},
        old_writes={"one": {"agent": 11}, "two": {"score": 12}, "three": base("c3", 13)},
        expected={
            "one": base("c1", 11, legacy="l1", score=1.5),
            "two": base("c2", 2, score=12),
            "three": base("c3", 13),
        },
    ),
    "widen to nullable": Step(
        evolve=lambda coll: coll.evolve(widen={"channel": str | None}),
        new_write={"channel": None},
        old_writes={"one": {"agent": 11}, "two": {"channel": "x"}, "three": base("c3", 13)},
        expected={
            "one": {"channel": None, "agent": 11, "legacy": "l1", "score": 1},
            "two": {"channel": "x", "agent": 2, "legacy": "l2", "score": 2},
            "three": base("c3", 13),
        },
    ),
    "add with a default": Step(
        evolve=lambda coll: coll.evolve(CallNote),
        new_write={"note": "hi"},
        old_writes={"one": {"agent": 11}, "two": {"agent": 12}, "three": base("c3", 13)},
        expected={
            "one": base("c1", 11, legacy="l1", score=1, note="hi"),
            "two": base("c2", 12, legacy="l2", score=2),
            "three": base("c3", 13),
        },
    ),
}


@pytest.fixture
async def nodes(
    nats_server: EmbeddedServer, namespace: str
) -> AsyncIterator[tuple[Brainless, Brainless, LaggingWatch]]:
    """Node A (on a lagging watch) and node B, one collection ``call`` declared by ``CallV1`` on A."""
    async with kv_storage(nats_server.url) as storage:
        lagging = LaggingWatch(storage)
        a = Brainless(lagging, namespace=namespace, location="node-a", flush_interval=0.02)
        b = Brainless(nats_server.url, namespace=namespace, location="node-b", flush_interval=0.02)
        await a.start()
        await b.start()
        try:
            yield a, b, lagging
        finally:
            await a.stop()
            await b.stop()


@pytest.mark.parametrize("name", list(STEPS))
async def test_a_node_on_the_old_schema_and_one_on_the_new_converge(
    name: str, nodes: tuple[Brainless, Brainless, LaggingWatch], nats_server: EmbeddedServer, namespace: str
) -> None:
    step = STEPS[name]
    a, b, lagging = nodes
    calls_a = a.collection("call").typed(CallV1)
    one = calls_a.add(**base("c1", 1))
    two = calls_a.add(**base("c2", 2))
    uuids = {"one": brainlessdb.meta(one).uuid, "two": brainlessdb.meta(two).uuid}
    await a.flush()
    calls_b = b.collection("call")
    await calls_b.load()

    lagging.lag()
    await step.evolve(calls_b)
    assert calls_b.schema is not None and calls_b.schema.version == 1
    entity_b = calls_b.entities[uuids["one"]]
    for field, value in step.new_write.items():
        entity_b[field] = value
    await b.flush()

    # A has not seen the new schema: it writes the old shape.
    assert calls_a.schema is not None and calls_a.schema.version == 0
    for key in ("one", "two"):
        for field, value in step.old_writes[key].items():
            calls_a.entities[uuids[key]][field] = value
    uuids["three"] = brainlessdb.meta(calls_a.add(**step.old_writes["three"])).uuid
    await a.flush()  # A's change of "one" met B's: A read the new schema, then merged

    lagging.catch_up()
    await calls_a.load()
    await calls_b.load()
    expected = {uuids[key]: data for key, data in step.expected.items()}
    assert memory_of(a) == expected
    assert memory_of(b) == expected
    assert calls_a.schema == calls_b.schema
    assert calls_a.sync.dead_letter_count == calls_b.sync.dead_letter_count == 0

    async with Brainless(nats_server.url, namespace=namespace, location="node-c") as c:
        calls_c = c.collection("call")
        await calls_c.load()
        assert calls_c.schema == calls_b.schema
        assert memory_of(c) == expected
        assert calls_c.sync.dead_letter_count == 0


@dataclasses.dataclass
class CallV2:
    channel: str | None
    agent_id: int | None = brainlessdb.field(renamed_from="agent", default=None)
    score: float = 0
    note: str = ""


async def test_evolving_to_a_model_types_the_collection_and_a_fresh_node_reads_old_entities(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    async with Brainless(nats_server.url, namespace=namespace, location="node-a") as a:
        calls = a.collection("call").typed(CallV1)
        calls.add(CallV1("c1", agent=5, legacy="gone", score=3))
        await a.flush()
        with pytest.raises(SchemaError, match=r"evolve\(CallV2\)"):
            a.collection("call").typed(CallV2)
        evolved = await a.collection("call").evolve(CallV2)
        [call] = await evolved.all()
        assert call == CallV2("c1", agent_id=5, score=3)

    async with Brainless(nats_server.url, namespace=namespace, location="node-c") as c:
        calls_c = c.collection("call").typed(CallV2)
        [call] = await calls_c.all()
        assert call == CallV2("c1", agent_id=5, score=3)
        assert calls_c.schema is not None
        assert (calls_c.schema.version, dict(calls_c.schema.renamed)) == (1, {"agent": "agent_id"})
        assert calls_c.schema.removed == {"legacy"}
        # A node still declaring the old model is told what happened.
        with pytest.raises(SchemaError, match="in the stored schema"):
            c.collection("call").typed(CallV1).add(CallV1("c2", agent=1))


async def test_a_refused_step_stores_nothing(nats_server: EmbeddedServer, namespace: str) -> None:
    async with Brainless(nats_server.url, namespace=namespace, location="node-a") as a:
        calls = a.collection("call").typed(CallV1)
        calls.add(CallV1("c1"))
        await a.flush()
        async with kv_storage(nats_server.url) as storage:
            bucket = a.bucket_name("call")
            before = await storage.get(bucket, SCHEMA_KEY)
            for step in (
                {"widen": {"score": str}},
                {"rename": {"agent": "channel"}},
                {"remove": ["nothing"]},
                {"rename": {"nothing": "x"}},
                {"remove": ["channel", "agent", "legacy", "score"]},
            ):
                with pytest.raises(SchemaError):
                    await calls.evolve(**step)
            after = await storage.get(bucket, SCHEMA_KEY)
        assert before is not None and after is not None
        assert (after.revision, after.value) == (before.revision, before.value)
        assert json.loads(after.value).get("version") is None
        assert not calls.sync.schema.pending


async def test_a_step_another_node_made_impossible_is_refused(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    async with (
        Brainless(nats_server.url, namespace=namespace, location="node-a") as a,
        Brainless(nats_server.url, namespace=namespace, location="node-b") as b,
    ):
        a.collection("call").typed(CallV1).add(CallV1("c1", agent=1))
        await a.flush()
        await b.collection("call").evolve(remove=["agent"])
        # A catches up with the stored schema before it checks its step.
        with pytest.raises(SchemaError, match="cannot rename 'agent': no such field"):
            await a.collection("call").evolve(rename={"agent": "agent_id"})
        assert a.collection("call").schema == b.collection("call").schema


async def test_evolve_needs_a_started_database() -> None:
    db = Brainless(None, namespace="t", location="node-a")
    with pytest.raises(NotStartedError, match="evolve"):
        await db.collection("call").evolve(remove=["x"])


async def test_queries_and_claims_use_the_new_names(nats_server: EmbeddedServer, namespace: str) -> None:
    async with (
        Brainless(nats_server.url, namespace=namespace, location="node-a") as a,
        Brainless(nats_server.url, namespace=namespace, location="node-b") as b,
    ):
        calls_a = a.collection("call")
        call = calls_a.add(channel="c1", agent=1)
        assert await calls_a.find(agent=1) is call  # an index on the former name
        await a.flush()
        await b.collection("call").evolve(rename={"agent": "agent_id"})
        await calls_a.load()
        assert await calls_a.find(agent_id=1) is call
        with pytest.raises(brainlessdb.QueryError):
            await calls_a.find(agent=1)
        # The stored version still has the former name: a claim checks it under the new one.
        uuid = brainlessdb.meta(call).uuid
        assert await b.collection("call").update_if(uuid, {"agent_id": 1}, agent_id=2)
        await calls_a.load()
        assert brainlessdb.meta(call).data == {"channel": "c1", "agent_id": 2}
        assert await calls_a.find(agent_id=2) is call


async def test_two_nodes_making_the_same_evolution_at_once_both_succeed(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    async with (
        Brainless(nats_server.url, namespace=namespace, location="node-a") as a,
        Brainless(nats_server.url, namespace=namespace, location="node-b") as b,
    ):
        a.collection("call").typed(CallV1).add(CallV1("c1", agent=1))
        await a.flush()
        await b.collection("call").load()
        calls_a, calls_b = await asyncio.gather(
            a.collection("call").evolve(CallV2), b.collection("call").evolve(CallV2)
        )
        await calls_a.load()
        await calls_b.load()
        assert calls_a.schema == calls_b.schema
        assert calls_a.schema is not None
        assert calls_a.schema.version == 1
        assert await calls_a.all() == await calls_b.all() == [CallV2("c1", agent_id=1)]
