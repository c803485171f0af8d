"""The nats-server processes the tests and benchmarks start: ports, and nothing left running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from brainlessdb.embedded import LOOPBACK, EmbeddedCluster, EmbeddedServer, ServerError, free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    """Ports given to servers started together are all different."""
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


@pytest.mark.nats
def test_a_server_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    """A server that is not ready within its start-up timeout is stopped, not left running."""
    server = EmbeddedServer(store_dir=tmp_path, startup_timeout=0.0)
    with pytest.raises(ServerError, match="not ready"):
        server.start()
    assert not server.is_running


@pytest.mark.nats
def test_a_cluster_with_a_server_that_cannot_listen_stops_the_others(tmp_path: Path) -> None:
    """One server of a cluster failing at start does not leave the others running."""
    cluster = EmbeddedCluster(3, base_dir=tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        cluster.servers[1].port = taken.getsockname()[1]
        with pytest.raises(ServerError, match="address already in use"):
            cluster.start()
    assert not any(server.is_running for server in cluster.servers)
