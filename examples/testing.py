"""Testing an application that uses BrainlessDB (docs/guides/testing.md).

These are pytest tests: ``python examples/testing.py`` runs them (``pytest`` and
``pytest-asyncio`` needed), as ``pytest examples/testing.py`` would.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from brainlessdb import Brainless, Collection
from brainlessdb.embedded import EmbeddedServer


# --8<-- [start:app]
@dataclass
class Call:
    queue: str
    state: str = "waiting"
    agent: str | None = None
    uuid: str | None = None


async def assign(calls: Collection[Call], queue: str, agent: str) -> Call | None:
    """The application's code under test: give the agent a waiting call."""
    for call in await calls.filter(queue=queue, state="waiting"):
        if await calls.update_if(
            call, {"state": "waiting"}, state="talking", agent=agent
        ):
            return call
    return None


# --8<-- [end:app]


# --8<-- [start:memory]
@pytest.fixture
async def db() -> AsyncIterator[Brainless]:
    """A database in memory only: no NATS, nothing left behind, fast."""
    async with Brainless(None, namespace="test", location="test-1") as db:
        yield db


async def test_an_agent_gets_a_waiting_call(db: Brainless) -> None:
    calls = db.call.typed(Call)
    calls.add(Call(queue="sales"))
    call = await assign(calls, "sales", "jana")
    assert call is not None
    assert (call.state, call.agent) == ("talking", "jana")
    assert await assign(calls, "sales", "petr") is None  # nothing left to take


# --8<-- [end:memory]


# --8<-- [start:server]
@pytest.fixture(scope="module")
def nats_server() -> Iterator[EmbeddedServer]:
    """A real nats-server on a free loopback port, with a temporary data directory."""
    with EmbeddedServer() as server:
        yield server


async def test_two_nodes_never_give_one_call_twice(nats_server: EmbeddedServer) -> None:
    async with (
        Brainless(nats_server.url, namespace="test-assign", location="a") as a,
        Brainless(nats_server.url, namespace="test-assign", location="b") as b,
    ):
        first = a.call.typed(Call).add(Call(queue="sales"))
        await a.synced()  # a's change acknowledged ...
        await b.synced()  # ... and b in step with it
        taken = [
            await assign(a.call.typed(Call), "sales", "jana"),
            await assign(b.call.typed(Call), "sales", "petr"),
        ]
        assert [call.uuid for call in taken if call is not None] == [first.uuid]


# --8<-- [end:server]


if __name__ == "__main__":
    sys.exit(
        pytest.main(
            [__file__, "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"]
        )
    )
