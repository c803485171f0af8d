"""Fixtures of the shell tests: databases on both backends (in-memory and a real nats-server)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from brainlessdb import Brainless, BrainlessError
from brainlessdb.storage.memory import MemoryStorage
from tests.helpers import MakeDb, nats_connection


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_db(backend: str, request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[MakeDb]:
    """Start databases (nodes) that share one store: a MemoryStorage, or the shared nats-server."""
    created: list[Brainless] = []
    shared = MemoryStorage()
    url = request.getfixturevalue("nats_server").url if backend == "nats" else None

    async def factory(location: str = "node-1", *, start: bool = True, **options: Any) -> Brainless:
        options.setdefault("flush_interval", 0.02)
        source: Any = url if url is not None else shared.share()
        db = Brainless(source, namespace=options.pop("namespace", namespace), location=location, **options)
        created.append(db)
        if start:
            await db.start()
        return db

    yield factory
    for db in created:
        with contextlib.suppress(BrainlessError):
            await db.stop()


@pytest.fixture
async def nats_client(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """What the spec calls ``nats``: a connected nats-py client, or None for the in-memory mode."""
    if backend == "memory":
        yield None
        return
    async with nats_connection(request.getfixturevalue("nats_server").url) as client:
        yield client
