"""What the command's tests find in NATS: a few calls and sessions written by a real node."""

from __future__ import annotations

import asyncio
from typing import Any

from brainlessdb import Brainless, meta

CALLS: list[dict[str, Any]] = [
    {
        "channel_id": "chan-0",
        "state": "waiting",
        "priority": 3,
        "code": "3",
        "vip": True,
        "caller": {"city": "Prague"},
        "agent_id": None,
    },
    {
        "channel_id": "chan-1",
        "state": "waiting",
        "priority": 1,
        "code": "1",
        "vip": False,
        "caller": {"city": "Brno"},
        "agent_id": None,
    },
    {
        "channel_id": "chan-2",
        "state": "ringing",
        "priority": 2,
        "code": "3",
        "vip": False,
        "caller": {"city": "Prague"},
        "agent_id": 7,
    },
    {
        "channel_id": "chan-3",
        "state": "answered",
        "priority": 5,
        "code": "5",
        "vip": True,
        "caller": {"city": "Ostrava"},
        "agent_id": 9,
    },
]


async def seed_async(url: str, namespace: str, *, history: int = 1) -> dict[str, str]:
    """The calls and one session, written and acknowledged; ``{channel_id: uuid}``."""
    async with Brainless(url, namespace=namespace, location="prague-1", history=history) as db:
        uuids = {call["channel_id"]: db.call.add(call).uuid for call in CALLS}
        db.session.add(user_id=42, token="abc123")
        await db.flush()
    return uuids


def seed(url: str, namespace: str, *, history: int = 1) -> dict[str, str]:
    return asyncio.run(seed_async(url, namespace, history=history))


def stored(url: str, namespace: str, collection: str = "call") -> dict[str, dict[str, Any]]:
    """What a fresh node loads: ``{uuid: data}``."""

    async def load() -> dict[str, dict[str, Any]]:
        async with Brainless(url, namespace=namespace, location="checker") as db:
            return {entity.uuid: meta(entity).data for entity in await db.collection(collection).all()}

    return asyncio.run(load())
