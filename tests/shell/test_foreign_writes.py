"""One answer for every write another client makes, on a real nats-server.

Another client (plain nats-py) puts a partial object, an object lacking a required field, or bytes that
are not JSON on the key of an entity two running nodes hold. A third node, started after the put, must
end with exactly what the running nodes hold, and so must the bucket; its queries must work.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from brainlessdb import Brainless
from brainlessdb.core.clock import hlc_from_ms
from brainlessdb.embedded import EmbeddedServer
from tests.helpers import converged, eventually, memory_of, nats_connection, raw_bucket, settle

pytestmark = pytest.mark.nats


@dataclass
class Call:
    state: str
    queue: int = 0
    agent: int | None = None
    uuid: str | None = None


async def put_raw(url: str, bucket: str, key: str, value: bytes) -> int:
    """Write ``value`` at ``key`` with a plain nats-py client (no compare-and-set); its revision."""
    async with nats_connection(url) as client:
        kv = await client.jetstream().key_value(bucket)
        return int(await kv.put(key, value))


@contextlib.asynccontextmanager
async def node(url: str, namespace: str, location: str) -> AsyncIterator[Brainless]:
    async with Brainless(url, namespace=namespace, location=location, flush_interval=0.02) as db:
        db.call.typed(Call)
        await db.call.load()
        yield db


async def written_call(db: Brainless, others: list[Brainless]) -> str:
    """A call added on ``db`` and seen by ``others``; its uuid."""
    call = db.call.add(state="idle", queue=1, agent=7)
    await db.flush()
    await eventually(lambda: all(call.uuid in other.call for other in others), timeout=10)
    return str(call.uuid)


async def all_agree(nodes: list[Brainless], uuid: str) -> dict[str, Any]:
    """Wait until the nodes hold the same and have nothing pending; reload them: still the same."""
    await eventually(lambda: converged(nodes), timeout=15, interval=0.02, message="the nodes did not agree")
    await settle(nodes)
    data = memory_of(nodes[0])
    assert all(memory_of(other) == data for other in nodes[1:])
    for db in nodes:
        # Every entity fits the schema, so queries work on every node.
        db.call.schema.check_stored(db.call.entities[uuid]._data)  # type: ignore[union-attr]
        assert [c.uuid for c in await db.call.order_by("state", "-queue")] == [
            c.uuid for c in await nodes[0].call.order_by("state", "-queue")
        ]
    return data


async def test_a_partial_object_on_a_live_key_is_the_complete_state_on_running_and_fresh_nodes(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    url = nats_server.url
    async with node(url, namespace, "prague-1") as a, node(url, namespace, "brno-1") as b:
        uuid = await written_call(a, [b])
        bucket = a.bucket_name("call")
        await put_raw(url, bucket, uuid, b'{"state": "busy", "agent": 9}')
        async with node(url, namespace, "fresh-1") as late:
            data = await all_agree([a, b, late], uuid)
        # The fields the object lacks are gone: ``queue`` has its default again.
        assert data[uuid] == {"state": "busy", "queue": 0, "agent": 9}
        live, _ = await raw_bucket(url, bucket)
        assert live[uuid] == b'{"state": "busy", "agent": 9}'  # what the other client put: nothing to write


async def test_a_change_stamped_after_a_partial_object_survives_it_and_is_written_back(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    url = nats_server.url
    async with node(url, namespace, "prague-1") as a, node(url, namespace, "brno-1") as b:
        uuid = await written_call(a, [b])
        # a's clock runs a minute ahead: its change is stamped after the put the other client makes next.
        a.clock.observe(hlc_from_ms(time.time_ns() // 1_000_000 + 60_000))
        a.call[uuid].queue = 5
        await a.flush()
        await eventually(lambda: b.call[uuid].queue == 5, timeout=10)
        bucket = a.bucket_name("call")
        await put_raw(url, bucket, uuid, b'{"state": "busy"}')
        async with node(url, namespace, "fresh-1") as late:
            data = await all_agree([a, b, late], uuid)
        assert data[uuid] == {"state": "busy", "queue": 5, "agent": None}
        live, _ = await raw_bucket(url, bucket)
        assert live[uuid] == data[uuid]


@pytest.mark.parametrize(
    "value",
    [b'{"queue": 3, "agent": 1}', b'{"state": 5}', b"not json {", b'{"_v": 2, "d": {"queue": 3}}'],
    ids=["lacks a required field", "a wrong type", "bad JSON", "a malformed version"],
)
async def test_an_unusable_put_on_a_live_key_is_a_dead_letter_everywhere_and_written_over(
    nats_server: EmbeddedServer, namespace: str, value: bytes
) -> None:
    url = nats_server.url
    async with node(url, namespace, "prague-1") as a, node(url, namespace, "brno-1") as b:
        uuid = await written_call(a, [b])
        bucket = a.bucket_name("call")
        revision = await put_raw(url, bucket, uuid, value)
        async with node(url, namespace, "fresh-1") as late:
            data = await all_agree([a, b, late], uuid)
            for db in (a, b):
                assert any(letter.revision == revision for letter in db.call.sync.inbox.dead_letters)
        assert data[uuid] == {"state": "idle", "queue": 1, "agent": 7}
        live, _ = await raw_bucket(url, bucket)
        assert live[uuid] == data[uuid]  # the nodes wrote their version over it
