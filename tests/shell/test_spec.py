"""Every example of the specification, run as written: in-memory, and against a real nats-server.

Each test follows one section of the spec's README. ``nats_client`` is what the spec calls ``nats``
(a connected nats-py client, or ``None`` for the in-memory mode); ``namespace`` stands for the spec's
``"myapp"``/``"app"`` so that tests sharing a server never see each other's data.
"""

from __future__ import annotations

import json
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

import brainlessdb
from brainlessdb import Brainless, Entity, meta
from tests.helpers import eventually


@pytest.fixture
async def spec_db(nats_client: Any, namespace: str) -> AsyncIterator[Any]:
    """The module-level database set up as the spec's Quick Start does."""
    await brainlessdb.setup(nats_client, namespace=namespace, location="prague-1")
    yield nats_client
    await brainlessdb.stop()


async def stored_data(nats_client: Any, bucket: str, uuid: str) -> dict[str, Any] | None:
    """The fields of an entity as stored in NATS, read with plain nats-py (None in memory mode)."""
    if nats_client is None:
        return None
    kv = await nats_client.jetstream().key_value(bucket)
    entry = await kv.get(uuid)
    value = json.loads(entry.value)
    return dict(value["d"])


# Quick Start -----------------------------------------------------------------------------------


async def test_quick_start(nats_client: Any, namespace: str) -> None:
    await brainlessdb.setup(nats_client, namespace=namespace, location="prague-1")

    call = brainlessdb.call.add(channel_id="123", queue_id=5, state="waiting")
    call.state = "ringing"
    assert meta(call).dirty

    call = await brainlessdb.call.find(channel_id="123")
    assert call is not None and call.state == "ringing"
    waiting = await brainlessdb.call.filter(state="waiting")
    assert waiting == []

    await brainlessdb.flush()
    assert not meta(call).dirty
    if nats_client is not None:
        stored = await stored_data(nats_client, f"{namespace}-call", call.uuid)
        assert stored == {"channel_id": "123", "queue_id": 5, "state": "ringing"}

    del brainlessdb.call[call]
    assert call not in brainlessdb.call
    await brainlessdb.stop()

    if nats_client is not None:
        # A new node on the same namespace sees the delete: nothing comes back.
        db = Brainless(nats_client, namespace=namespace, location="brno-1")
        await db.start()
        assert await db.call.all() == []
        await db.stop()


# Type-Safe Usage -------------------------------------------------------------------------------


@dataclass
class Call:
    channel_id: str
    queue_id: int
    state: str
    uuid: Optional[str] = None  # noqa: UP045 - the spec's own spelling


async def test_type_safe_usage(spec_db: Any) -> None:
    brainlessdb.call.add(channel_id="123", queue_id=5, state="waiting")
    brainlessdb.call.typed(Call)

    call = await brainlessdb.call.find(channel_id="123")
    assert isinstance(call, Call)
    assert call.channel_id == "123"
    assert isinstance(call.uuid, str) and len(call.uuid) == 36

    call = brainlessdb.call.add(Call(channel_id="456", queue_id=1, state="new"))
    assert isinstance(call, Call) and call.uuid is not None
    for found in (
        await brainlessdb.call.filter(state="new"),
        await brainlessdb.call.all(),
        await brainlessdb.call.order_by("queue_id"),
    ):
        assert all(isinstance(item, Call) for item in found)

    del brainlessdb.call[call]
    assert call not in brainlessdb.call
    assert len(brainlessdb.call) == 1


async def test_one_off_type_conversion(spec_db: Any) -> None:
    brainlessdb.call.add(channel_id="123", queue_id=5, state="waiting")

    entity = await brainlessdb.call.find(channel_id="123")
    call = meta(entity).as_type(Call)
    uuid = entity.uuid
    assert isinstance(call, Call)
    assert call == Call(channel_id="123", queue_id=5, state="waiting", uuid=uuid)
    assert isinstance(entity, Entity)


# Collections -----------------------------------------------------------------------------------


async def test_collections_are_created_on_first_access(spec_db: Any, namespace: str) -> None:
    brainlessdb.call.add(channel_id="1", state="new")
    brainlessdb.user.add(name="alice")
    brainlessdb.queue_item.add(priority=1)
    await brainlessdb.flush()
    if spec_db is not None:
        js = spec_db.jetstream()
        for name in ("call", "user", "queue_item"):
            kv = await js.key_value(f"{namespace}-{name}")
            assert kv is not None


async def test_adding_entities(spec_db: Any) -> None:
    @dataclass
    class Call:
        channel_id: str
        state: str
        queue_id: Optional[int] = None  # noqa: UP045
        uuid: Optional[str] = None  # noqa: UP045

    brainlessdb.call.typed(Call)
    base_call = Call(channel_id="000", queue_id=2, state="new")

    call = brainlessdb.call.add(channel_id="123", state="waiting")
    assert call.channel_id == "123" and call.queue_id is None
    call = brainlessdb.call.add({"channel_id": "456", "state": "ringing"})
    assert call.state == "ringing"
    call = brainlessdb.call.add(Call(channel_id="789", queue_id=1, state="active"))
    assert call.queue_id == 1
    call = brainlessdb.call.add(base_call, state="overridden")
    assert (call.channel_id, call.queue_id, call.state) == ("000", 2, "overridden")
    assert base_call.state == "new"
    assert brainlessdb.call.count() == 4


async def test_retrieving_entities(spec_db: Any) -> None:
    first = brainlessdb.call.add(channel_id="123", queue_id=5, state="waiting")
    brainlessdb.call.add(channel_id="124", queue_id=5, state="active")
    brainlessdb.call.add(channel_id="125", queue_id=6, state="active")

    call = await brainlessdb.call.get(first.uuid)
    assert call is first
    assert await brainlessdb.call.get("550e8400-e29b-41d4-a716-446655440000") is None

    call = await brainlessdb.call.find(channel_id="123")
    assert call is first
    call = await brainlessdb.call.find(state="waiting", queue_id=5)
    assert call is first

    waiting = await brainlessdb.call.filter(state="waiting")
    assert waiting == [first]
    active_q5 = await brainlessdb.call.filter(queue_id=5, state="active")
    assert [c.channel_id for c in active_q5] == ["124"]

    all_calls = await brainlessdb.call.all()
    assert [c.channel_id for c in all_calls] == ["123", "124", "125"]


async def test_nested_filtering(spec_db: Any) -> None:
    brainlessdb.call.add(
        caller={"city": "Prague", "name": "Eva"}, contact={"address": {"zip": "12345"}}, state="new"
    )
    brainlessdb.call.add(
        caller={"city": "Brno", "name": "Adam"}, contact={"address": {"zip": "60200"}}, state="new"
    )

    call = await brainlessdb.call.find(caller__city="Prague")
    assert call is not None and call.caller["name"] == "Eva"
    calls = await brainlessdb.call.filter(contact__address__zip="12345")
    assert [c.caller["city"] for c in calls] == ["Prague"]

    calls = await brainlessdb.call.order_by("caller__name")
    assert [c.caller["name"] for c in calls] == ["Adam", "Eva"]


async def test_sorting(spec_db: Any) -> None:
    for priority, created_at, state in [(2, 10.0, "active"), (1, 30.0, "waiting"), (3, 20.0, "active")]:
        brainlessdb.call.add(priority=priority, created_at=created_at, state=state)

    calls = await brainlessdb.call.order_by("priority")
    assert [c.priority for c in calls] == [1, 2, 3]
    calls = await brainlessdb.call.order_by("-created_at")
    assert [c.created_at for c in calls] == [30.0, 20.0, 10.0]
    calls = await brainlessdb.call.order_by("state", "-priority")
    assert [(c.state, c.priority) for c in calls] == [("active", 3), ("active", 2), ("waiting", 1)]
    calls = await brainlessdb.call.order_by("-created_at", state="active")
    assert [c.created_at for c in calls] == [20.0, 10.0]


async def test_deleting_entities(spec_db: Any) -> None:
    brainlessdb.call.typed(Call)
    by_uuid = brainlessdb.call.add(channel_id="1", queue_id=1, state="new")
    by_entity = brainlessdb.call.add(channel_id="2", queue_id=1, state="new")
    by_typed = brainlessdb.call.add(channel_id="3", queue_id=1, state="new")
    by_del = brainlessdb.call.add(channel_id="4", queue_id=1, state="new")
    by_del_uuid = brainlessdb.call.add(channel_id="5", queue_id=1, state="new")
    entity = await brainlessdb.call.get(by_entity.uuid)

    brainlessdb.call.delete(by_uuid.uuid)
    brainlessdb.call.delete(entity)
    brainlessdb.call.delete(by_typed)
    del brainlessdb.call[by_del]
    del brainlessdb.call[by_del_uuid.uuid]
    assert len(brainlessdb.call) == 0
    await brainlessdb.flush()


async def test_collection_info(spec_db: Any) -> None:
    call = brainlessdb.call.add(channel_id="123", state="new")
    brainlessdb.call.add(channel_id="456", state="new")

    count = brainlessdb.call.count()
    assert count == 2
    count = len(brainlessdb.call)
    assert count == 2

    assert call.uuid in brainlessdb.call
    assert call in brainlessdb.call
    assert meta(call).as_type(_Small) in brainlessdb.call
    assert "550e8400-e29b-41d4-a716-446655440000" not in brainlessdb.call

    assert [c.channel_id for c in brainlessdb.call] == ["123", "456"]
    assert brainlessdb.call[call.uuid] is call


@dataclass
class _Small:
    channel_id: str
    state: str
    uuid: Optional[str] = None  # noqa: UP045


async def test_entity_access(spec_db: Any) -> None:
    call = brainlessdb.call.add(channel_id="123", queue_id=5, state="waiting")
    await brainlessdb.flush()
    assert not meta(call).dirty

    assert call.state == "waiting"
    call.state = "ringing"
    assert meta(call).dirty
    assert call["state"] == "ringing"
    call["state"] = "active"
    assert call.state == "active"
    assert "queue_id" in call and call.queue_id == 5
    assert "missing" not in call

    data = meta(call).to_dict()
    assert data == {"uuid": call.uuid, "channel_id": "123", "queue_id": 5, "state": "active"}
    assert meta(call).data == {"channel_id": "123", "queue_id": 5, "state": "active"}
    assert isinstance(call.uuid, str)
    await brainlessdb.flush()
    assert not meta(call).dirty


# Persistence -----------------------------------------------------------------------------------


async def test_background_flush_writes_without_being_asked(nats_client: Any, namespace: str) -> None:
    db = await brainlessdb.setup(nats_client, namespace=namespace, flush_interval=0.05)
    call = brainlessdb.call.add(channel_id="1", state="new")
    await eventually(lambda: not meta(call).dirty)
    if nats_client is not None:
        assert await stored_data(nats_client, f"{namespace}-call", call.uuid) == {
            "channel_id": "1",
            "state": "new",
        }
    assert db.flush_interval == 0.05
    await brainlessdb.stop()


async def test_default_and_custom_flush_interval(nats_client: Any, namespace: str) -> None:
    db = await brainlessdb.setup(nats_client, namespace=namespace)
    assert db.flush_interval == 0.5
    db = await brainlessdb.setup(nats_client, namespace=namespace, flush_interval=1.0)
    assert db.flush_interval == 1.0
    await brainlessdb.stop()


async def test_manual_flush_and_graceful_shutdown(nats_client: Any, namespace: str) -> None:
    await brainlessdb.setup(nats_client, namespace=namespace, flush_interval=60)
    call = brainlessdb.call.add(channel_id="1", state="new")
    user = brainlessdb.user.add(name="eva")
    await brainlessdb.flush()
    assert not meta(call).dirty and not meta(user).dirty

    call.state = "done"
    await brainlessdb.call.flush()
    assert not meta(call).dirty

    user.name = "adam"
    await brainlessdb.stop()
    assert not meta(user).dirty
    if nats_client is not None:
        assert await stored_data(nats_client, f"{namespace}-user", user.uuid) == {"name": "adam"}


# Instance-based usage and in-memory mode ------------------------------------------------------


async def test_instance_based_usage(nats_client: Any, namespace: str) -> None:
    db = Brainless(nats_client, namespace=namespace, location="local")
    await db.start()

    call = db.call.add(channel_id="456", state="waiting")
    call = await db.call.find(channel_id="456")
    assert call is not None and call.state == "waiting"

    await db.stop()


async def test_in_memory_mode() -> None:
    db = Brainless(None, namespace="test")
    await db.start()

    call = db.call.add(channel_id="123", state="new")
    call = await db.call.find(channel_id="123")
    assert call is not None and call.state == "new"

    await db.stop()


async def test_async_with() -> None:
    async with Brainless(None, namespace="test") as db:
        db.call.add(channel_id="1", state="new")
        assert len(db.call) == 1


# Use cases -------------------------------------------------------------------------------------


@dataclass
class QueueItem:
    priority: int
    caller_id: str
    queue_id: int
    state: str
    uuid: Optional[str] = None  # noqa: UP045


async def test_queue_management(spec_db: Any, namespace: str) -> None:
    brainlessdb.queue.typed(QueueItem)

    item = brainlessdb.queue.add(QueueItem(priority=1, caller_id="caller-123", queue_id=5, state="waiting"))
    brainlessdb.queue.add(QueueItem(priority=2, caller_id="caller-456", queue_id=5, state="waiting"))

    next_item = await brainlessdb.queue.order_by("priority", state="waiting")
    if next_item:
        next_item[0].state = "processing"
    assert item.state == "processing"
    await brainlessdb.flush()
    if spec_db is not None:
        stored = await stored_data(spec_db, f"{namespace}-queue", item.uuid)
        assert stored is not None and stored["state"] == "processing"

    del brainlessdb.queue[item]
    assert [q.caller_id for q in await brainlessdb.queue.all()] == ["caller-456"]


async def test_queue_management_taking_the_next_item_with_update_if(spec_db: Any, namespace: str) -> None:
    """The spec's queue, with the next item taken exclusively: of all nodes, one gets True."""
    brainlessdb.queue.typed(QueueItem)

    item = brainlessdb.queue.add(QueueItem(priority=1, caller_id="caller-123", queue_id=5, state="waiting"))
    brainlessdb.queue.add(QueueItem(priority=2, caller_id="caller-456", queue_id=5, state="waiting"))

    taken = None
    for candidate in await brainlessdb.queue.order_by("priority", state="waiting"):
        if await brainlessdb.queue.update_if(candidate, {"state": "waiting"}, state="processing"):
            taken = candidate
            break
    assert taken is not None and taken.uuid == item.uuid and item.state == "processing"
    # Taken already: a second claim of it (this node's or any other's) loses.
    assert await brainlessdb.queue.update_if(item, {"state": "waiting"}, state="processing") is False
    if spec_db is not None:
        stored = await stored_data(spec_db, f"{namespace}-queue", item.uuid)
        assert stored is not None and stored["state"] == "processing"
        async with Brainless(spec_db, namespace=namespace, location="brno-1") as other:
            assert not await other.queue.update_if(item.uuid, {"state": "waiting"}, state="processing")
            assert other.queue[item.uuid].state == "processing"

    del brainlessdb.queue[item]
    assert [q.caller_id for q in await brainlessdb.queue.all()] == ["caller-456"]


@dataclass
class Session:
    user_id: int
    token: str
    created_at: float
    last_seen: float
    uuid: Optional[str] = None  # noqa: UP045


async def test_session_storage(spec_db: Any) -> None:
    brainlessdb.session.typed(Session)
    old = brainlessdb.session.add(
        Session(user_id=7, token="old", created_at=time.time() - 7200, last_seen=time.time() - 7200)
    )

    session = brainlessdb.session.add(
        Session(user_id=42, token="abc123", created_at=time.time(), last_seen=time.time())
    )
    session = await brainlessdb.session.find(token="abc123")
    assert session is not None and session.user_id == 42
    session.last_seen = time.time()

    stale = await brainlessdb.session.filter(last_seen__lt=time.time() - 3600)
    assert [s.token for s in stale] == ["old"]
    assert stale[0] == old


@dataclass
class TrackedCall:
    channel_id: str
    state: str
    caller: dict  # type: ignore[type-arg]
    queue_id: Optional[int] = None  # noqa: UP045
    agent_id: Optional[int] = None  # noqa: UP045
    uuid: Optional[str] = None  # noqa: UP045


async def test_call_state_tracking(spec_db: Any, namespace: str) -> None:
    brainlessdb.call.typed(TrackedCall)

    call = brainlessdb.call.add(
        TrackedCall(
            channel_id="chan-123", state="ringing", caller={"number": "+1234567890", "city": "Prague"}
        )
    )
    call = await brainlessdb.call.find(caller__city="Prague")
    assert call is not None

    call.state = "answered"
    call.agent_id = 5

    agent_calls = await brainlessdb.call.filter(agent_id=5, state="answered")
    assert [c.channel_id for c in agent_calls] == ["chan-123"]

    call.caller["city"] = "Brno"
    assert await brainlessdb.call.find(caller__city="Prague") is None
    await brainlessdb.flush()
    if spec_db is not None:
        stored = await stored_data(spec_db, f"{namespace}-call", call.uuid)
        assert stored is not None
        assert stored["caller"] == {"number": "+1234567890", "city": "Brno"}
        assert (stored["state"], stored["agent_id"]) == ("answered", 5)


async def test_multi_location_sync(nats_client: Any, namespace: str) -> None:
    await brainlessdb.setup(nats_client, namespace=namespace, location="prague-1")

    call = brainlessdb.call.add(channel_id="123", state="new")
    parsed = uuidlib.UUID(call.uuid)
    assert parsed.version == 1
    other = brainlessdb.call.add(channel_id="124", state="new")
    assert uuidlib.UUID(other.uuid).node == parsed.node
    await brainlessdb.stop()
