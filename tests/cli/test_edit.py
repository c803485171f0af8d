"""Changing a namespace with the command: put and del through the library, dump and restore by merging."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from brainlessdb import Brainless, meta
from brainlessdb.embedded import EmbeddedServer
from tests.cli.conftest import Cli
from tests.cli.data import CALLS, seed, stored
from tests.helpers import eventually, nats_connection

pytestmark = pytest.mark.nats


def test_put_and_del_reach_running_nodes_stamped_by_the_command(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = seed(nats_server.url, namespace)
    uuid = uuids["chan-1"]
    base = ("-s", nats_server.url, "-n", namespace, "--location", "ops-desk")

    async def scenario() -> None:
        async with Brainless(nats_server.url, namespace=namespace, location="node-1") as node:
            put = await asyncio.to_thread(
                cli,
                *base,
                "put",
                "call",
                uuid,
                "state=answered",
                "agent_id=12",
                'caller__zip="602 00"',
                "--json",
            )
            assert put.code == 0, put.err
            expected = {
                **CALLS[1],
                "state": "answered",
                "agent_id": 12,
                "caller": {"city": "Brno", "zip": "602 00"},
            }
            assert put.records() == [{"uuid": uuid, **expected}]
            await eventually(lambda: meta(node.call[uuid]).data == expected)

            deleted = await asyncio.to_thread(cli, *base, "del", "call", uuid, "--json")
            assert (deleted.code, deleted.records()) == (0, [{"uuid": uuid, "deleted": True}])
            await eventually(lambda: uuid not in node.call)

    asyncio.run(scenario())
    stamped = cli(*base, "get", "call", uuids["chan-0"], "--stamps", "--json")
    assert stamped.records()[0]["_stamps"]["state"]["node"] == "prague-1"
    again = cli(*base, "del", "call", uuid)
    assert again.code == 3 and "no entity" in again.error_line()


def test_put_refused_by_the_schema_changes_nothing(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = seed(nats_server.url, namespace)
    before = stored(nats_server.url, namespace)
    base = ("-s", nats_server.url, "-n", namespace)
    wrong_type = cli(*base, "put", "call", uuids["chan-0"], 'priority="high"', "state=x")
    assert wrong_type.code == 1 and "priority" in wrong_type.error_line()
    unknown = cli(*base, "put", "call", uuids["chan-0"], "prio=1")
    assert unknown.code == 1 and "unknown field 'prio'" in unknown.error_line()
    missing = cli(*base, "put", "call", "00000000-0000-11f1-8000-000000000000", "state=x")
    assert missing.code == 3 and "--create" in missing.error_line()
    not_dict = cli(*base, "put", "call", uuids["chan-0"], "state__x=1")
    assert not_dict.code == 2
    no_value = cli(*base, "put", "call", uuids["chan-0"])
    assert no_value.code == 2
    assert stored(nats_server.url, namespace) == before


def test_put_create_adds_an_entity_under_the_given_uuid(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    seed(nats_server.url, namespace)
    uuid = "5f0c1a2e-0000-11f1-8000-000000000001"
    fields = [
        "channel_id=chan-9",
        "state=new",
        "priority=9",
        'code="9"',
        "vip=false",
        "caller={}",
        "agent_id=null",
    ]
    result = cli("-s", nats_server.url, "-n", namespace, "put", "call", uuid, "--create", *fields)
    assert result.code == 0, result.err
    assert stored(nats_server.url, namespace)[uuid] == {
        "channel_id": "chan-9",
        "state": "new",
        "priority": 9,
        "code": "9",
        "vip": False,
        "caller": {},
        "agent_id": None,
    }
    incomplete = cli(
        "-s", nats_server.url, "-n", namespace, "put", "call", uuid[:-1] + "2", "--create", "state=x"
    )
    assert incomplete.code == 1 and "channel_id" in incomplete.error_line()
    bad_uuid = cli("-s", nats_server.url, "-n", namespace, "put", "call", "not-a-uuid", "--create", *fields)
    assert bad_uuid.code == 2


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dump_and_restore_into_another_namespace_is_equal_and_idempotent(
    cli: Cli, nats_server: EmbeddedServer, namespace: str, tmp_path: Path
) -> None:
    uuids = seed(nats_server.url, namespace, history=2)

    async def change() -> None:
        async with Brainless(nats_server.url, namespace=namespace, location="brno-1") as db:
            db.call[uuids["chan-2"]].caller["zip"] = "110 00"  # a change inside a dict: stamped by path
            db.call.delete(uuids["chan-3"])
            await db.flush()

    asyncio.run(change())
    dump = tmp_path / "dump.jsonl"
    dumped = cli("-s", nats_server.url, "-n", namespace, "dump", "-o", str(dump))
    assert dumped.code == 0, dumped.err
    lines = entries(dump)
    assert lines[0]["brainless_dump"] == 1 and lines[0]["namespace"] == namespace
    heads = {line["collection"]: line for line in lines if "schema" in line}
    assert heads["call"]["schema"]["fields"]["priority"]["type"] == "int" and heads["call"]["history"] == 2
    by_key = {line["key"]: line for line in lines if "key" in line}
    assert by_key[uuids["chan-3"]]["op"] == "DEL"
    assert by_key[uuids["chan-2"]]["value"]["p"] == {
        "caller": {"/zip": by_key[uuids["chan-2"]]["value"]["p"]["caller"]["/zip"]}
    }

    target = namespace + "copy"
    restored = cli("-s", nats_server.url, "-n", target, "restore", str(dump), "--json")
    assert restored.code == 0, restored.err
    counts = {row["collection"]: row for row in restored.records()}
    assert counts["call"] == {
        "collection": "call",
        "entries": 4,
        "written": 4,
        "unchanged": 0,
        "refused": 0,
        "failed": 0,
    }
    assert stored(nats_server.url, target) == stored(nats_server.url, namespace)
    assert stored(nats_server.url, target, "session") == stored(nats_server.url, namespace, "session")
    schema = cli("-s", nats_server.url, "-n", target, "schema", "call", "--json")
    original = cli("-s", nats_server.url, "-n", namespace, "schema", "call", "--json")
    assert schema.records() == original.records()
    ls = {
        row["collection"]: row for row in cli("-s", nats_server.url, "-n", target, "ls", "--json").records()
    }
    assert ls["call"]["history"] == 2

    again = cli("-s", nats_server.url, "-n", target, "restore", str(dump), "--json")
    assert [row["written"] for row in again.records()] == [0, 0]
    redump = tmp_path / "again.jsonl"
    cli("-s", nats_server.url, "-n", target, "dump", "call", "-o", str(redump))
    assert {line["key"]: line["value"] for line in entries(redump)[2:]} == {
        line["key"]: line["value"] for line in lines if line.get("collection") == "call" and "key" in line
    }


def test_restore_never_overwrites_newer_data_nor_brings_back_a_delete(
    cli: Cli, nats_server: EmbeddedServer, namespace: str, tmp_path: Path
) -> None:
    uuids = seed(nats_server.url, namespace)
    dump = tmp_path / "dump.jsonl"
    assert cli("-s", nats_server.url, "-n", namespace, "dump", "call", "-o", str(dump)).code == 0

    async def later_changes() -> None:
        async with Brainless(nats_server.url, namespace=namespace, location="brno-1") as db:
            db.call[uuids["chan-0"]].state = "answered"  # newer than the dump
            db.call.delete(uuids["chan-1"])
            await db.flush()

    asyncio.run(later_changes())
    before = stored(nats_server.url, namespace)
    result = cli("-s", nats_server.url, "-n", namespace, "restore", str(dump), "--json")
    assert result.code == 0, result.err
    assert result.records()[0]["written"] == 0
    assert stored(nats_server.url, namespace) == before
    assert before[uuids["chan-0"]]["state"] == "answered" and uuids["chan-1"] not in before

    # An older field in the bucket takes the dump's newer one; the other fields stay as they are.
    async def older_than_dump() -> None:
        async with Brainless(nats_server.url, namespace=namespace + "old", location="x") as db:
            db.call.add({**CALLS[2], "uuid": uuids["chan-2"], "state": "stale"})
            await db.flush()

    asyncio.run(older_than_dump())
    text = dump.read_text()
    newer = [json.loads(line) for line in text.splitlines()]
    for line in newer:
        if line.get("key") == uuids["chan-2"]:
            line["value"]["t"] = {"state": [line["value"]["s"][0] + 10**7, 0, "ops"]}
            line["value"]["d"]["state"] = "answered"
    dump.write_text("\n".join(json.dumps(line) for line in newer) + "\n")
    merged = cli("-s", nats_server.url, "-n", namespace + "old", "restore", str(dump), "--json")
    assert merged.code == 0, merged.err
    assert stored(nats_server.url, namespace + "old")[uuids["chan-2"]]["state"] == "answered"


def test_restore_refuses_a_file_that_is_not_a_dump(
    cli: Cli, nats_server: EmbeddedServer, namespace: str, tmp_path: Path
) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{"hello": 1}\n')
    result = cli("-s", nats_server.url, "-n", namespace, "restore", str(path))
    assert result.code == 1 and "not a brainless dump" in result.error_line()
    path.write_text('{"brainless_dump": 1}\n{"collection": "call", "key": "k", "op": "NOPE", "time_ns": 1}\n')
    result = cli("-s", nats_server.url, "-n", namespace, "restore", str(path))
    assert result.code == 1 and ":2: malformed line" in result.error_line()
    missing = cli("-s", nats_server.url, "-n", namespace, "restore", str(tmp_path / "none.jsonl"))
    assert missing.code == 1 and "cannot read" in missing.error_line()


def test_dump_leaves_out_values_that_are_not_json(
    cli: Cli, nats_server: EmbeddedServer, namespace: str, tmp_path: Path
) -> None:
    seed(nats_server.url, namespace)

    async def garbage() -> None:
        async with nats_connection(nats_server.url) as client:
            await client.jetstream().publish(
                f"$KV.{namespace}-call.0badbad0-0000-11f1-8000-000000000000", b"\xff"
            )

    asyncio.run(garbage())
    dump = tmp_path / "dump.jsonl"
    result = cli("-s", nats_server.url, "-n", namespace, "dump", "call", "-o", str(dump))
    assert result.code == 0
    assert "1 unreadable values left out" in result.error_line()
    assert len([line for line in entries(dump) if "key" in line]) == len(CALLS)


def test_put_create_writes_a_new_version_over_a_dead_letter(
    cli: Cli, nats_server: EmbeddedServer, namespace: str
) -> None:
    """The runbook's stuck entity: a value no node can use is replaced by a version the operator writes."""
    seed(nats_server.url, namespace)
    key = "0badbad0-0000-11f1-8000-000000000000"

    async def garbage() -> None:
        async with nats_connection(nats_server.url) as client:
            await client.jetstream().publish(f"$KV.{namespace}-call.{key}", b"{not json")

    asyncio.run(garbage())
    assert key not in stored(nats_server.url, namespace)
    fields = [
        "channel_id=chan-7",
        "state=new",
        "priority=7",
        'code="7"',
        "vip=false",
        "caller={}",
        "agent_id=null",
    ]
    result = cli("-s", nats_server.url, "-n", namespace, "put", "call", key, "--create", *fields)
    assert result.code == 0, result.err
    assert stored(nats_server.url, namespace)[key]["channel_id"] == "chan-7"
    letters = cli("-s", nats_server.url, "-n", namespace, "dead-letters", "call", "--json")
    assert letters.records() == []
