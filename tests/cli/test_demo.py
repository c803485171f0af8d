"""The guided demo still runs, on a server given and on an embedded one it starts and stops itself."""

from __future__ import annotations

import pytest

from brainlessdb.embedded import EmbeddedServer
from tests.cli.conftest import Cli

pytestmark = pytest.mark.nats


def test_the_demo_runs_against_a_given_server(cli: Cli, nats_server: EmbeddedServer, namespace: str) -> None:
    result = cli("demo", "--server", nats_server.url, "--namespace", namespace)
    assert result.code == 0, result.err
    assert "converged: yes" in result.out
    assert f"connected to {nats_server.url}; namespace {namespace!r}" in result.out
    loaded = [line for line in result.out.splitlines() if line.startswith(("call:", "queue:", "session:"))]
    assert sorted(line.split(":")[0] for line in loaded) == ["call", "queue", "session"]
    listed = cli("-s", nats_server.url, "-n", namespace, "ls", "--json")
    assert sorted(row["collection"] for row in listed.records()) == ["call", "queue", "session"]


def test_the_demo_on_its_own_servers_shows_two_locations_through_a_partition(cli: Cli) -> None:
    result = cli("demo")
    assert result.code == 0, result.err
    assert "converged: yes" in result.out
    assert "locations converged: yes" in result.out
    during = next(line for line in result.out.splitlines() if line.startswith("brno-2 starts during the cut"))
    assert "'agent_id': 7" in during and "'state': 'ringing'" in during  # brno's own changes, not prague's
