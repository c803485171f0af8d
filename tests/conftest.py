"""Shared fixtures: real nats-server processes on free loopback ports, stopped by PID after use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from brainlessdb.embedded import EmbeddedCluster, EmbeddedServer

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=200)
settings.load_profile("default")

SERVER_FIXTURES = frozenset({"nats_server", "own_server", "nats_cluster"})
"""The fixtures that start nats-server processes: a test using one is marked ``nats``."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.nats)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server shared by the tests that do not break it; each test uses its own namespace."""
    with EmbeddedServer(store_dir=tmp_path_factory.mktemp("nats-shared")) as server:
        yield server


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of this test's own, free to be killed and restarted."""
    with EmbeddedServer(store_dir=tmp_path_factory.mktemp("nats-own")) as server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """Three servers joined into one cluster on loopback."""
    with EmbeddedCluster(3, base_dir=tmp_path_factory.mktemp("nats-cluster")) as cluster:
        yield cluster


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return "t" + uuid.uuid4().hex[:12]
