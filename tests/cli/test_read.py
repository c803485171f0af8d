"""Reading a namespace with the command: ls, get, find, schema, stats, history, dead letters, watch."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainlessdb import Brainless
from brainlessdb.embedded import EmbeddedServer
from tests.cli.conftest import Cli, clean_environment, command
from tests.cli.data import CALLS, seed
from tests.helpers import nats_connection

pytestmark = pytest.mark.nats


def test_ls_lists_each_collection_with_its_entities_settings_and_fields(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    seed(nats_server.url, namespace, history=3)
    result = cli("-s", nats_server.url, "-n", namespace, "ls", "--json")
    assert result.code == 0, result.err
    rows = {row["collection"]: row for row in result.records()}
    assert set(rows) == {"call", "session"}
    assert rows["call"]["entities"] == len(CALLS)
    assert rows["call"]["fields"] == list(CALLS[0])
    assert rows["call"]["history"] == 3 and rows["call"]["replicas"] == 1
    assert rows["call"]["bytes"] > 0
    assert rows["session"]["entities"] == 1 and rows["session"]["fields"] == ["user_id", "token"]


def test_ls_of_an_empty_namespace_lists_nothing_and_creates_nothing(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    result = cli("-s", nats_server.url, "-n", namespace, "ls", "--json")
    assert (result.code, result.out) == (0, "")

    async def buckets() -> list[str]:
        async with nats_connection(nats_server.url) as client:
            return [info.config.name for info in await client.jetstream().streams_info()]

    assert not [name for name in asyncio.run(buckets()) if name and namespace in name]


def test_get_shows_the_entity_and_with_stamps_when_and_where_each_field_was_written(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    before = time.time() * 1000
    uuids = seed(nats_server.url, namespace)
    after = time.time() * 1000
    uuid = uuids["chan-2"]
    plain = cli("-s", nats_server.url, "-n", namespace, "get", "call", uuid, "--json")
    assert plain.code == 0
    assert plain.records() == [{"uuid": uuid, **CALLS[2]}]

    stamped = cli("-s", nats_server.url, "-n", namespace, "get", "call", uuid, "--stamps", "--json")
    [record] = stamped.records()
    stamps = record.pop("_stamps")
    assert record == {"uuid": uuid, **CALLS[2]}
    assert set(stamps) == set(CALLS[2])
    for stamp in stamps.values():
        assert stamp["node"] == "prague-1"
        assert before - 1 <= stamp["ms"] <= after + 1
        assert stamp["time"].endswith("Z")

    table = cli("-s", nats_server.url, "-n", namespace, "get", "call", uuid, "--stamps")
    lines = {line.split()[0]: line.split() for line in table.out.splitlines()}
    assert lines["state"][1] == "ringing" and lines["state"][3] == "prague-1"
    assert lines["uuid"][1] == uuid


def test_find_parses_values_as_json_and_takes_lookups_order_limit_and_count(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = seed(nats_server.url, namespace)
    base = ("-s", nats_server.url, "-n", namespace, "find", "call", "--json")

    def channels(*criteria: str) -> list[str]:
        result = cli(*base, *criteria)
        assert result.code == 0, result.err
        return [record["channel_id"] for record in result.records()]

    assert sorted(channels("priority=3")) == ["chan-0"]  # a number
    assert sorted(channels('code="3"')) == ["chan-0", "chan-2"]  # a string, quoted
    assert sorted(channels("code=3")) == []  # the number 3 is not the string "3"
    assert sorted(channels("vip=true")) == ["chan-0", "chan-3"]
    assert sorted(channels("agent_id=null")) == ["chan-0", "chan-1"]
    assert sorted(channels("state=waiting", "caller__city=Prague")) == ["chan-0"]
    assert sorted(channels("priority__lt=3")) == ["chan-1", "chan-2"]
    assert sorted(channels('caller__city__in=["Brno", "Ostrava"]')) == ["chan-1", "chan-3"]
    assert channels("--order-by", "-priority") == ["chan-3", "chan-0", "chan-2", "chan-1"]
    assert channels("state=waiting", "--order-by", "priority") == ["chan-1", "chan-0"]
    assert channels("--order-by", "-priority", "--limit", "2") == ["chan-3", "chan-0"]

    every = cli(*base)
    assert {record["uuid"]: record["channel_id"] for record in every.records()} == {
        uuid: channel for channel, uuid in uuids.items()
    }
    counted = cli("-s", nats_server.url, "-n", namespace, "find", "call", "vip=true", "--count")
    assert (counted.code, counted.out) == (0, "2\n")
    counted = cli(*base, "vip=true", "--count")
    assert counted.records() == [{"count": 2}]

    table = cli("-s", nats_server.url, "-n", namespace, "find", "call", "state=waiting")
    header, *rows = table.out.splitlines()
    assert header.split() == ["uuid", *CALLS[0]]
    assert sorted(row.split()[0] for row in rows) == sorted([uuids["chan-0"], uuids["chan-1"]])


def test_schema_and_stats(cli: Cli, nats_server: EmbeddedServer, namespace: str) -> None:
    seed(nats_server.url, namespace)
    schema = cli("-s", nats_server.url, "-n", namespace, "schema", "call", "--json")
    assert schema.code == 0
    fields = {row.pop("field"): row for row in schema.records()}
    assert list(fields) == list(CALLS[0])
    assert fields["priority"] == {"type": "int", "required": True, "nullable": True}
    assert fields["caller"]["type"] == "dict" and fields["code"]["type"] == "str"

    stats = cli("-s", nats_server.url, "-n", namespace, "stats", "--json")
    rows = {row["collection"]: row for row in stats.records()}
    assert rows["call"]["entities"] == len(CALLS)
    assert rows["call"]["dead_letters"] == 0 and rows["call"]["tombstones"] == 0
    assert rows["call"]["last_revision"] >= len(CALLS)
    assert rows["session"]["entities"] == 1
    only = cli("-s", nats_server.url, "-n", namespace, "stats", "session", "--json")
    assert [row["collection"] for row in only.records()] == ["session"]


def test_history_lists_each_kept_version_with_what_changed(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = seed(nats_server.url, namespace, history=5)
    uuid = uuids["chan-1"]

    async def change() -> None:
        async with Brainless(nats_server.url, namespace=namespace, location="brno-1") as db:
            call = db.call[uuid]
            call.state = "ringing"
            await db.flush()
            call.agent_id = 4
            await db.flush()
            db.call.delete(uuid)
            await db.flush()

    asyncio.run(change())
    result = cli("-s", nats_server.url, "-n", namespace, "history", "call", uuid, "--json")
    assert result.code == 0, result.err
    versions = result.records()
    assert [version["op"] for version in versions] == ["PUT", "PUT", "PUT", "DEL"]
    revisions = [version["revision"] for version in versions]
    assert revisions == sorted(revisions)
    assert versions[0]["changes"] == {name: {"new": value} for name, value in CALLS[1].items()}
    assert versions[1]["changes"] == {"state": {"old": "waiting", "new": "ringing"}}
    assert versions[1]["stamps"]["state"]["node"] == "brno-1"
    assert versions[2]["changes"] == {"agent_id": {"old": None, "new": 4}}
    assert versions[3]["deleted"]["node"] == "brno-1"

    # A bucket keeping one version per key says so, and shows the one it keeps.
    other = seed(nats_server.url, namespace + "x")["chan-0"]
    single = cli("-s", nats_server.url, "-n", namespace + "x", "history", "call", other, "--json")
    assert single.code == 0 and len(single.records()) == 1
    assert "history 1" in single.error_line()
    missing = cli("-s", nats_server.url, "-n", namespace, "history", "call", "no-such-key")
    assert missing.code == 3


def test_dead_letters_say_what_was_set_aside_and_why(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    seed(nats_server.url, namespace)
    bad_key = "0badbad0-0000-11f1-8000-000000000000"

    async def write_garbage() -> None:
        async with nats_connection(nats_server.url) as client:
            await client.jetstream().publish(f"$KV.{namespace}-call.{bad_key}", b"{not json")

    asyncio.run(write_garbage())
    letters = cli("-s", nats_server.url, "-n", namespace, "dead-letters", "call", "--json")
    assert letters.code == 0
    [letter] = letters.records()
    assert letter["key"] == bad_key and letter["value"] == "{not json"
    assert "JSON" in letter["reason"]
    stats = cli("-s", nats_server.url, "-n", namespace, "stats", "call", "--json")
    assert stats.records()[0]["dead_letters"] == 1
    doctor = cli("-s", nats_server.url, "-n", namespace, "doctor", "--json")
    assert doctor.code == 3
    failed = [check for check in doctor.records() if check["status"] == "fail"]
    assert [check["check"] for check in failed] == ["dead letters call"]


def test_doctor_on_a_healthy_namespace(cli: Cli, nats_server: EmbeddedServer, namespace: str) -> None:
    seed(nats_server.url, namespace)
    result = cli("-s", nats_server.url, "-n", namespace, "doctor", "--json")
    assert result.code == 0, result.out
    checks = {check["check"]: check for check in result.records()}
    assert checks["server"]["detail"].startswith("nats-server 2.")
    assert checks["jetstream"]["status"] == "ok" and "API level" in checks["jetstream"]["detail"]
    assert checks["bucket call"]["detail"].startswith("history 1, replicas 1, direct get on")
    assert checks["permissions call"]["detail"] == "read and write"
    assert checks["dead letters call"]["status"] == "ok"
    assert checks["clock skew"]["status"] == "ok" and "prague-1" in checks["clock skew"]["detail"]
    assert "sync_interval: always" in checks["sync_interval"]["detail"]
    assert all(check["status"] != "fail" for check in checks.values())


def test_doctor_compares_each_live_nodes_clock_with_the_servers(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    seed(nats_server.url, namespace)
    worker = [
        sys.executable,
        "-m",
        "tests.shell.workers.presence_node",
        nats_server.url,
        namespace,
        "pbx-7",
        "0.2",
    ]
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        worker, stdout=subprocess.PIPE, text=True, env=clean_environment(), cwd=root
    ) as node:
        try:
            assert node.stdout is not None
            name = json.loads(node.stdout.readline())["node"]
            time.sleep(0.5)  # a few heartbeats
            result = cli("-s", nats_server.url, "-n", namespace, "doctor", "--json", "--max-skew", "2")
            clocks = {check["check"]: check for check in result.records()}["node clocks"]
            assert clocks["status"] == "ok" and name in clocks["detail"], clocks
        finally:
            node.kill()


def test_watch_prints_changes_and_deletes_matching_its_criteria(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = seed(nats_server.url, namespace)
    args = command("-s", nats_server.url, "-n", namespace, "watch", "call", "state=waiting", "--json")
    process = subprocess.Popen(
        [*args, "--count", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().startswith(f"watching {namespace}/call")

        async def changes() -> None:
            async with Brainless(nats_server.url, namespace=namespace, location="brno-1") as db:
                db.call[uuids["chan-3"]].priority = 6  # answered: not watched
                await db.flush()
                db.call[uuids["chan-0"]].priority = 4  # waiting
                await db.flush()
                db.call[uuids["chan-1"]].state = "ringing"  # leaves the criteria: shown
                await db.flush()
                db.call[uuids["chan-1"]].priority = 8  # no longer waiting: not shown
                await db.flush()
                db.call.delete(uuids["chan-0"])
                await db.flush()

        asyncio.run(changes())
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(event["event"], event["uuid"]) for event in events] == [
        ("change", uuids["chan-0"]),
        ("change", uuids["chan-1"]),
        ("delete", uuids["chan-0"]),
    ]
    assert events[0]["changes"] == {"priority": {"old": 3, "new": 4}}
    assert events[0]["entity"] == {"uuid": uuids["chan-0"], **CALLS[0], "priority": 4}
    assert events[1]["changes"] == {"state": {"old": "waiting", "new": "ringing"}}


def test_watch_stops_cleanly_on_sigterm(nats_server: EmbeddedServer, namespace: str) -> None:
    seed(nats_server.url, namespace)
    process = subprocess.Popen(
        command("-s", nats_server.url, "-n", namespace, "watch", "call"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().startswith("watching")
        process.terminate()
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, out, err) == (0, "", "")
