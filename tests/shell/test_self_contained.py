"""Self-contained collections: a collection's schema lives in its own bucket, under the key ``_schema``.

On both backends: the schema is stored there and nowhere else, a node started later finds the
collections by listing buckets and reads their schemas before their entities, an entity's uuid can never
take the reserved key, and the layout of earlier versions (every schema in ``{namespace}--schema``) is
read and moved by ``start()``, keeping a schema already in the collection's bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from brainlessdb import Brainless, SchemaError
from brainlessdb.core.codec import encode_entity
from brainlessdb.core.names import SCHEMA_KEY
from brainlessdb.core.schema import Schema
from brainlessdb.core.sync.schema_sync import decode_schema, encode_schema
from brainlessdb.storage.base import Op, Storage, Write
from brainlessdb.storage.memory import MemoryStorage
from brainlessdb.storage.nats.kv import NatsKVStorage
from tests.helpers import MakeDb, eventually


@pytest.fixture
async def storage(backend: str, request: pytest.FixtureRequest) -> Any:
    """A storage of the backend, to look at the buckets and to write what earlier versions wrote."""
    if backend == "memory":
        memory = MemoryStorage()
        yield memory
        return
    url = request.getfixturevalue("nats_server").url
    kv = await NatsKVStorage.connect(url)
    kv.test_url = url  # type: ignore[attr-defined]  # where the nodes of the test connect
    try:
        yield kv
    finally:
        await kv.close()


async def node(storage: Any, namespace: str, location: str = "node-1") -> Brainless:
    """A started node on the test's store: a view of the memory storage, or its own NATS connection."""
    source = storage.share() if isinstance(storage, MemoryStorage) else storage.test_url
    return await Brainless(source, namespace=namespace, location=location, flush_interval=0.02).start()


async def test_the_schema_is_stored_in_the_collections_own_bucket_and_nowhere_else(
    storage: Any, namespace: str
) -> None:
    db = await node(storage, namespace)
    try:
        db.call.add(channel_id="c1", state="ringing")
        await db.flush()
    finally:
        await db.stop()
    entry = await storage.get(f"{namespace}-call", SCHEMA_KEY)
    assert entry is not None and entry.op is Op.PUT
    assert sorted(decode_schema(entry.value).fields) == ["channel_id", "state"]
    # The collection's bucket, and none for schemas (``--nodes`` holds the nodes' heartbeats).
    assert [b for b in await storage.list_buckets(f"{namespace}-") if b != f"{namespace}--nodes"] == [
        f"{namespace}-call"
    ]


async def test_a_node_started_later_finds_every_collection_with_its_schema(
    storage: Any, namespace: str
) -> None:
    first = await node(storage, namespace)
    try:
        first.call.add(channel_id="c1", state="ringing")
        first.session.add(user_id=1)
        await first.flush()
    finally:
        await first.stop()
    later = await node(storage, namespace, "node-2")
    try:
        assert set(later.collections) == {"call", "session"}
        assert later.call.count() == 1 and later.session.count() == 1  # loaded by start()
        assert later.call.schema is not None and sorted(later.call.schema.fields) == ["channel_id", "state"]
        with pytest.raises(SchemaError):
            later.call.add(channel_id=5)  # the stored schema holds at once
    finally:
        await later.stop()


async def test_the_schema_is_read_before_the_entities_whatever_its_revision(
    storage: Any, namespace: str
) -> None:
    """A schema changed after entities were written comes after them in a replay: it is read first."""
    bucket = f"{namespace}-call"
    await storage.open_bucket(bucket)
    schema = Schema.infer({"channel_id": "c1"})
    good = encode_entity({"channel_id": "c1"}, (1 << 16, "other"))
    bad = b'{"channel_id": 5}'  # another client's object that does not fit the schema
    assert all(
        isinstance(result, int)
        for result in await storage.write(bucket, [Write("00000000-0000-1000-8000-000000000001", good, 0)])
    )
    await storage.write(bucket, [Write("00000000-0000-1000-8000-000000000002", bad, 0)])
    await storage.write(bucket, [Write(SCHEMA_KEY, encode_schema(schema), 0)])
    db = await node(storage, namespace)
    try:
        assert [entity.channel_id for entity in await db.call.all()] == ["c1"]
        assert db.stats()["collections"]["call"]["dead_letters"] == 1
    finally:
        await db.stop()


async def test_a_uuid_can_never_take_the_reserved_key(make_db: MakeDb) -> None:
    db = await make_db()
    for uuid in (SCHEMA_KEY, "_x"):
        with pytest.raises(SchemaError):
            db.call.add(uuid=uuid, channel_id="c1")


# -- the layout of earlier versions --------------------------------------------------------------


async def old_layout(storage: Storage, namespace: str, schemas: dict[str, dict[str, Any]]) -> None:
    """Collections as earlier versions stored them: entities in their buckets, schemas in one bucket."""
    await storage.open_bucket(f"{namespace}--schema")
    for name, example in schemas.items():
        schema = Schema.infer(example)
        await storage.write(f"{namespace}--schema", [Write(name, encode_schema(schema), 0)])
        await storage.open_bucket(f"{namespace}-{name}")
        value = encode_entity(example, (1 << 16, "old-node"))
        await storage.write(
            f"{namespace}-{name}", [Write(f"00000000-0000-1000-8000-00000000000{len(name)}", value, 0)]
        )


async def test_start_moves_the_schemas_of_the_old_layout_into_each_collections_bucket(
    storage: Any, namespace: str
) -> None:
    await old_layout(
        storage, namespace, {"call": {"channel_id": "c1"}, "agent": {"name": "Ann", "free": True}}
    )
    # One collection already has a schema of its own: it is kept, not overwritten by the old one.
    own = Schema.infer({"name": "x", "free": True, "skill": "sales"})
    await storage.write(f"{namespace}-agent", [Write(SCHEMA_KEY, encode_schema(own), 0)])
    for attempt in range(2):  # moving again changes nothing
        db = await node(storage, namespace, f"node-{attempt}")
        try:
            assert set(db.collections) == {"call", "agent"}
            assert [e.channel_id for e in await db.call.all()] == ["c1"]
            assert sorted(db.agent.schema.fields) == ["free", "name", "skill"]  # type: ignore[union-attr]
            with pytest.raises(SchemaError):
                db.call.add(channel_id=7)
        finally:
            await db.stop()
        moved = await storage.get(f"{namespace}-call", SCHEMA_KEY)
        assert (
            moved is not None
            and moved.revision == 2
            and sorted(decode_schema(moved.value).fields) == ["channel_id"]
        )
        kept = await storage.get(f"{namespace}-agent", SCHEMA_KEY)
        assert kept is not None and decode_schema(kept.value) == own
    # The old bucket is left for nodes of earlier versions.
    assert await storage.get(f"{namespace}--schema", "call") is not None


@dataclass
class Grown:
    channel_id: str
    queue: int = 0


async def test_a_schema_grown_later_by_another_node_reaches_a_running_node(
    storage: Any, namespace: str
) -> None:
    a = await node(storage, namespace, "a")
    b = await node(storage, namespace, "b")
    try:
        a.call.add(channel_id="c1")
        await a.flush()
        await b.call.load()
        a.call.typed(Grown).add(Grown("c2", queue=3))  # a new optional field
        await a.flush()
        await eventually(lambda: b.call.schema is not None and "queue" in b.call.schema.fields)
        entry = await storage.get(f"{namespace}-call", SCHEMA_KEY)
        assert entry is not None and "queue" in decode_schema(entry.value).fields
    finally:
        await a.stop()
        await b.stop()
