"""``brainless nodes`` run as an operator runs it (a subprocess), against nodes running on a real server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import pytest

from brainlessdb import Brainless
from brainlessdb.cli.connection import ENVIRONMENT
from brainlessdb.embedded import EmbeddedServer

pytestmark = pytest.mark.nats


async def brainless(*args: str) -> tuple[int, str, str]:
    """The command in a process of its own: exit code, stdout, stderr (the event loop keeps running)."""
    env = {key: value for key, value in os.environ.items() if key not in set(ENVIRONMENT.values())}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "brainlessdb",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_nodes_lists_the_running_nodes_as_json_lines_and_as_a_table(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    async with (
        Brainless(nats_server.url, namespace=namespace, location="prague-1") as a,
        Brainless(nats_server.url, namespace=namespace, location="brno-1") as b,
    ):
        a.call.add(n=1)
        await a.flush()
        ids = {a.clock.replica, b.clock.replica}

        async def both_listed() -> bool:
            return {node["node"] for node in await a.nodes()} == ids

        deadline = time.monotonic() + 10
        while not await both_listed():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

        code, out, err = await brainless("-s", nats_server.url, "-n", namespace, "nodes", "--json")
        assert (code, err) == (0, "")
        records: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
        assert [record["location"] for record in records] == ["brno-1", "prague-1"]
        assert {record["node"] for record in records} == ids  # the command does not list itself
        for record in records:
            assert record["namespace"] == namespace and record["pid"] == os.getpid()
            assert record["seen"] >= record["started"] - 1.0

        code, out, err = await brainless("-s", nats_server.url, "-n", namespace, "nodes")
        assert (code, err) == (0, "")
        header, *rows = out.splitlines()
        columns = [
            "location",
            "node",
            "host",
            "pid",
            "version",
            "started",
            "seen",
            "pending",
            "watch_restarts",
        ]
        assert header.split() == [*columns, "copy_lag"]
        assert [row.split()[:2] for row in rows] == [
            ["brno-1", b.clock.replica],
            ["prague-1", a.clock.replica],
        ]
        assert all("s ago" in row for row in rows)

        await b.stop()
        code, out, _ = await brainless("-s", nats_server.url, "-n", namespace, "nodes", "--json")
        assert code == 0
        assert [json.loads(line)["node"] for line in out.splitlines()] == [a.clock.replica]


async def test_nodes_of_a_namespace_where_none_runs_is_empty(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    code, out, err = await brainless("-s", nats_server.url, "-n", namespace, "nodes", "--json")
    assert (code, out, err) == (0, "", "")
    code, out, err = await brainless("-s", nats_server.url, "-n", namespace, "nodes")
    assert (code, out) == (0, "")
    assert err.strip() == f"no running node in namespace {namespace!r}"


async def test_nodes_without_a_server_is_one_line_and_exit_1() -> None:
    code, out, err = await brainless("-s", "nats://127.0.0.1:1", "nodes")
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith("brainless nodes: error: cannot connect to NATS at nats://127.0.0.1:1")
