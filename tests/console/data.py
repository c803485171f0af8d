"""What the console's tests find in NATS: calls and agents written by a node, and a value none can use."""

from __future__ import annotations

from typing import Any

from brainlessdb import Brainless
from tests.helpers import nats_connection

CALLS: list[dict[str, Any]] = [
    {"channel_id": "SIP/4711-0001", "state": "waiting", "queue_id": 5, "priority": 1, "code": "1",
     "caller": {"number": "+420601111111", "city": "Prague"}, "agent_id": None},
    {"channel_id": "SIP/4711-0002", "state": "waiting", "queue_id": 5, "priority": 3, "code": "3",
     "caller": {"number": "+420602222222", "city": "Brno"}, "agent_id": None},
    {"channel_id": "SIP/4711-0003", "state": "ringing", "queue_id": 7, "priority": 2, "code": "3",
     "caller": {"number": "+420603333333", "city": "Prague"}, "agent_id": 12},
    {"channel_id": "SIP/4711-0004", "state": "answered", "queue_id": 5, "priority": 5, "code": "5",
     "caller": {"number": "+420604444444", "city": "Ostrava"}, "agent_id": 9},
    {"channel_id": "SIP/4711-0005", "state": "waiting", "queue_id": 7, "priority": 2, "code": "2",
     "caller": {"number": "+420605555555", "city": "Plzen"}, "agent_id": None},
]  # fmt: skip

AGENTS: list[dict[str, Any]] = [
    {"agent_id": 9, "name": "Jana", "state": "busy"},
    {"agent_id": 12, "name": "Petr", "state": "ringing"},
    {"agent_id": 14, "name": "Eva", "state": "available"},
]

BAD_KEY = "0badbad0-0000-11f1-8000-000000000000"


async def seed(url: str, namespace: str) -> dict[str, str]:
    """The calls and agents, written and acknowledged by the node ``prague-1``; ``{channel_id: uuid}``."""
    async with Brainless(url, namespace=namespace, location="prague-1") as db:
        uuids = {call["channel_id"]: db.call.add(call).uuid for call in CALLS}
        for agent in AGENTS:
            db.agent.add(agent)
        await db.flush()
    return uuids


async def write_garbage(url: str, namespace: str, collection: str = "call") -> None:
    """A stored value that is not JSON: every node sets it aside as a dead letter."""
    async with nats_connection(url) as client:
        await client.jetstream().publish(f"$KV.{namespace}-{collection}.{BAD_KEY}", b"{not json")
