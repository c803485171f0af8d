"""Leases: one holder at a time for a name, freed ``ttl`` after the holder stops renewing; tokens grow."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from brainlessdb import Brainless, InvalidNameError, Lease, LeaseLostError, NotStartedError, UnavailableError
from brainlessdb.embedded import EmbeddedServer
from tests.helpers import MakeDb, eventually

ROOT = Path(__file__).resolve().parents[2]


async def take(db: Brainless, name: str, ttl: float, timeout: float = 10.0) -> tuple[Lease, float]:
    """Wait until ``db`` takes the lease; the lease, and how long it took."""
    started = time.monotonic()
    while True:
        lease = await db.lease(name, ttl=ttl)
        if lease is not None:
            return lease, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"lease {name!r} not taken within {timeout}s")
        await asyncio.sleep(0.02)


async def test_one_holder_at_a_time_and_tokens_grow(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    first = await a.lease("dispatcher:queue-5", ttl=5)
    assert first is not None and first.held
    assert await b.lease("dispatcher:queue-5", ttl=5) is None
    assert await a.lease("dispatcher:queue-5", ttl=5) is None  # not even twice by the same node
    await first.release()
    assert not first.held
    second = await b.lease("dispatcher:queue-5", ttl=5)
    assert second is not None
    assert second.token > first.token
    await second.renew()
    assert second.held
    assert await a.lease("dispatcher:queue-5", ttl=5) is None
    other = await a.lease("dispatcher:queue-6", ttl=5)  # another name is another lease
    assert other is not None


async def test_a_lease_not_renewed_is_free_after_its_ttl(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    first = await a.lease("janitor", ttl=1)
    assert first is not None
    second, waited = await take(b, "janitor", ttl=1)
    assert 0.5 < waited < 5.0
    assert second.token > first.token
    with pytest.raises(LeaseLostError):
        await first.renew()
    assert not first.held
    await first.release()  # a lost lease's release does not free the new holder's
    assert await a.lease("janitor", ttl=1) is None


async def test_renewing_keeps_the_lease_past_its_ttl(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    lease = await a.lease("janitor", ttl=1)
    assert lease is not None
    for _ in range(6):
        await asyncio.sleep(0.3)
        await lease.renew()
        assert await b.lease("janitor", ttl=1) is None
    assert lease.token == lease.token  # the token is the taking write's, renewals keep it


async def test_async_with_releases_the_lease(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    lease = await a.lease("report", ttl=5)
    assert lease is not None
    async with lease as held:
        assert held is lease
        assert await b.lease("report", ttl=5) is None
    assert await b.lease("report", ttl=5) is not None


async def test_bad_names_ttls_and_a_stopped_database_are_refused(make_db: MakeDb) -> None:
    db = await make_db("prague-1", start=False)
    with pytest.raises(NotStartedError):
        await db.lease("x")
    await db.start()
    with pytest.raises(InvalidNameError):
        await db.lease("")
    with pytest.raises(ValueError, match="at least 1"):
        await db.lease("x", ttl=0.5)
    await db.stop()
    with pytest.raises(NotStartedError):
        await db.lease("x")


@pytest.mark.nats
async def test_a_killed_holders_lease_is_taken_by_another_process_after_its_ttl(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    ttl = 2.0
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.shell.workers.lease_holder",
        nats_server.url,
        namespace,
        "dispatcher:queue-1",
        str(ttl),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 20)
        token = json.loads(line)["token"]
        async with Brainless(nats_server.url, namespace=namespace, location="standby") as db:
            for _ in range(5):  # held and renewed meanwhile: never taken
                assert await db.lease("dispatcher:queue-1", ttl=ttl) is None
                await asyncio.sleep(ttl / 2)
            holder.kill()
            await holder.wait()
            killed = time.monotonic()
            lease, _ = await take(db, "dispatcher:queue-1", ttl=ttl)
            waited = time.monotonic() - killed
            assert lease.token > token
            assert waited <= ttl + 2.0  # the server removed the holder's last renewal after its ttl
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_leases_need_nats_to_answer(own_server: EmbeddedServer, namespace: str) -> None:
    async with Brainless(own_server.url, namespace=namespace, location="a", connect_timeout=1) as db:
        lease = await db.lease("x", ttl=5)
        assert lease is not None
        # The node's first heartbeat creates the nodes bucket in the background: a server killed while it
        # creates that stream may keep it unrecoverable (its health check then fails after the restart).
        await eventually(lambda: db.stats()["presence"]["heartbeats"] > 0, message="no first heartbeat")
        own_server.kill()
        with pytest.raises(UnavailableError):
            await db.lease("y", ttl=5)
        with pytest.raises(UnavailableError):
            await lease.renew()
        own_server.start()
