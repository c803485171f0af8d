"""The console's JSON endpoints and its stream of changes, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from brainlessdb import Brainless
from brainlessdb.embedded import EmbeddedServer
from tests.console.conftest import Console, serve
from tests.console.data import AGENTS, BAD_KEY, CALLS, seed, write_garbage
from tests.helpers import nats_connection

pytestmark = pytest.mark.nats


async def events_of(
    console: Console, path: str = "/api/events", **options: Any
) -> AsyncIterator[dict[str, Any]]:
    """The events of the stream, each ``{"event": ..., **data}``, as they arrive."""
    async with console.http.get(console.url + path, **options) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        kind, data = None, []
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif line == "":
                if kind is not None:
                    yield {"event": kind, **json.loads("\n".join(data))}
                kind, data = None, []


async def next_event(stream: AsyncIterator[dict[str, Any]], timeout: float = 10.0) -> dict[str, Any]:
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def stream_open(console: Console, pages: int = 1) -> None:
    """Wait until the console has ``pages`` streams of events open."""

    async def opened() -> bool:
        return len(console.reader.hub) == pages

    await wait_until(opened)


# -- collections, entities ----------------------------------------------------------------------------


async def test_info_names_the_namespace_and_hides_credentials(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    with_password = nats_server.url.replace("nats://", "nats://someone:secret@")
    async with serve(with_password, namespace) as console:
        status, info = await console.get("/api/info")
    assert status == 200
    assert info["namespace"] == namespace
    assert "secret" not in info["servers"] and "someone" not in info["servers"]
    assert info["servers"].endswith(nats_server.url.removeprefix("nats://"))
    assert info["nodes"] is True


async def test_collections_show_entities_dead_letters_bucket_and_fields(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    await seed(nats_server.url, namespace)
    await write_garbage(nats_server.url, namespace)
    async with serve(nats_server.url, namespace) as console:
        status, body = await console.get("/api/collections")
    assert status == 200
    rows = {row["collection"]: row for row in body["collections"]}
    assert set(rows) == {"call", "agent"}
    assert rows["call"]["entities"] == len(CALLS)
    assert rows["call"]["dead_letters"] == 1
    assert rows["call"]["fields"] == list(CALLS[0])
    assert rows["call"]["messages"] == len(CALLS) + 2  # the calls, the schema and the bad value
    assert rows["call"]["bytes"] > 0
    assert rows["agent"]["entities"] == len(AGENTS) and rows["agent"]["dead_letters"] == 0


async def test_entities_take_finds_criteria_order_and_limit(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = await seed(nats_server.url, namespace)
    by_uuid = {uuids[call["channel_id"]]: call for call in CALLS}
    async with serve(nats_server.url, namespace) as console:
        entities = "/api/collections/call/entities"

        status, body = await console.get(entities)
        assert status == 200
        assert body["fields"] == list(CALLS[0])
        assert body["matched"] == body["total"] == len(CALLS)
        assert {row["uuid"]: {k: v for k, v in row.items() if k != "uuid"} for row in body["entities"]} == (
            by_uuid
        )

        # state=waiting priority__lt=3: values parsed as JSON when they parse, as by ``find``.
        query = [("where", "state=waiting"), ("where", "priority__lt=3")]
        status, body = await console.get(entities, params=query)
        expected = {u for u, c in by_uuid.items() if c["state"] == "waiting" and c["priority"] < 3}
        assert status == 200 and {row["uuid"] for row in body["entities"]} == expected
        assert body["matched"] == len(expected) and body["total"] == len(CALLS)

        # code="3" is the string "3", code=3 the number, which no code is.
        status, body = await console.get(entities, params={"where": 'code="3"'})
        assert {row["uuid"] for row in body["entities"]} == {
            u for u, c in by_uuid.items() if c["code"] == "3"
        }
        status, body = await console.get(entities, params={"where": "code=3"})
        assert status == 200 and body["entities"] == []

        # Nested fields, descending order and a limit.
        status, body = await console.get(
            entities, params=[("where", "caller__city=Prague"), ("order_by", "-priority")]
        )
        prague = sorted((c for c in CALLS if c["caller"]["city"] == "Prague"), key=lambda c: -c["priority"])
        assert [row["channel_id"] for row in body["entities"]] == [c["channel_id"] for c in prague]

        status, body = await console.get(
            entities, params=[("order_by", "priority,-queue_id"), ("limit", "2")]
        )
        ordered = sorted(CALLS, key=lambda c: (c["priority"], -c["queue_id"]))
        assert [row["channel_id"] for row in body["entities"]] == [c["channel_id"] for c in ordered[:2]]
        assert body["matched"] == len(CALLS)


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ({"where": "colour=red"}, 400, "bad criteria"),
        ({"where": "priority__near=3"}, 400, "bad criteria"),
        ({"where": "priority__city=1"}, 400, "bad criteria"),
        ({"where": "state"}, 400, "NAME=VALUE"),
        ({"order_by": "-colour"}, 400, "bad criteria"),
        ({"limit": "ten"}, 400, "limit"),
        ({"limit": "-1"}, 400, "limit"),
    ],
)
async def test_bad_criteria_order_or_limit_is_a_400_that_says_why(
    console: Console,
    nats_server: EmbeddedServer,
    namespace: str,
    query: dict[str, str],
    status: int,
    words: str,
) -> None:
    await seed(nats_server.url, namespace)
    got, body = await console.get("/api/collections/call/entities", params=query)
    assert got == status
    assert words in body["error"]


async def test_an_unknown_collection_or_entity_is_a_404_and_creates_no_bucket(
    console: Console, nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = await seed(nats_server.url, namespace)
    for path in (
        "/api/collections/nope/entities",
        f"/api/collections/nope/entities/{uuids['SIP/4711-0001']}",
        "/api/collections/nope/dead-letters",
    ):
        status, body = await console.get(path)
        assert status == 404, path
        assert body == {"error": f"no collection 'nope' in namespace {namespace!r}"}
    status, body = await console.get("/api/collections/call/entities/no-such-uuid")
    assert (status, body) == (404, {"error": "no entity 'no-such-uuid' in collection 'call'"})
    status, body = await console.get("/api/collections/Not%20A%20Name/entities")
    assert status == 400 and "collection" in body["error"]
    status, body = await console.get("/api/no-such-endpoint")
    assert status == 404 and "error" in body

    async with nats_connection(nats_server.url) as client:
        streams = [info.config.name for info in await client.jetstream().streams_info()]
    assert f"KV_{namespace}-nope" not in streams


async def test_an_entity_shows_each_fields_time_and_the_node_that_wrote_it(
    console: Console, nats_server: EmbeddedServer, namespace: str
) -> None:
    before = time.time() * 1000
    uuids = await seed(nats_server.url, namespace)
    uuid = uuids["SIP/4711-0002"]
    path = f"/api/collections/call/entities/{uuid}"
    status, body = await console.get(path)
    assert status == 200 and body["uuid"] == uuid
    fields = {field["field"]: field for field in body["fields"]}
    assert {name: field["value"] for name, field in fields.items()} == CALLS[1]
    for field in fields.values():
        assert field["stamp"]["node"] == "prague-1"
        assert before - 1 <= field["stamp"]["ms"] <= time.time() * 1000 + 1
        assert field["stamp"]["time"].endswith("Z")

    changed_at = time.time() * 1000
    async with Brainless(nats_server.url, namespace=namespace, location="brno-2") as other:
        call = await other.call.get(uuid)
        assert call is not None
        call.state = "ringing"
        await other.flush()

    async def changed() -> bool:
        _, now = await console.get(path)
        return bool({f["field"]: f["value"] for f in now["fields"]}["state"] == "ringing")

    await wait_until(changed)
    _, body = await console.get(path)
    stamps = {field["field"]: field["stamp"] for field in body["fields"]}
    assert stamps["state"]["node"] == "brno-2" and stamps["state"]["ms"] >= changed_at - 1
    assert {stamp["node"] for name, stamp in stamps.items() if name != "state"} == {"prague-1"}


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"not met within {timeout}s"
        await asyncio.sleep(0.05)


async def test_dead_letters_say_what_no_node_can_use_and_why(
    console: Console, nats_server: EmbeddedServer, namespace: str
) -> None:
    await seed(nats_server.url, namespace)
    status, body = await console.get("/api/collections/call/dead-letters")
    assert (status, body) == (200, {"collection": "call", "dead_letters": []})
    await write_garbage(nats_server.url, namespace)

    async def listed() -> bool:
        _, now = await console.get("/api/collections/call/dead-letters")
        return bool(now["dead_letters"])

    await wait_until(listed)
    _, body = await console.get("/api/collections/call/dead-letters")
    [letter] = body["dead_letters"]
    assert letter["key"] == BAD_KEY and letter["value"] == "{not json"
    assert "JSON" in letter["reason"] and letter["revision"] > 0


# -- live changes --------------------------------------------------------------------------------------


async def test_changes_of_other_nodes_are_pushed_as_server_sent_events(
    console: Console, nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = await seed(nats_server.url, namespace)
    await console.get("/api/collections")  # the console finds the collections seeded after it started
    stream = events_of(console)
    first = asyncio.ensure_future(next_event(stream))
    await stream_open(console)
    uuid = uuids["SIP/4711-0001"]
    async with Brainless(nats_server.url, namespace=namespace, location="brno-2") as other:
        call = await other.call.get(uuid)
        assert call is not None
        call.state = "ringing"
        call.caller["city"] = "Kolin"
        await other.flush()
        change = await first
        assert change["event"] == "change" and change["collection"] == "call" and change["uuid"] == uuid
        assert change["changes"]["state"] == {"old": "waiting", "new": "ringing"}
        assert change["changes"]["caller"]["new"]["city"] == "Kolin"
        assert change["entity"]["state"] == "ringing" and change["origin"] == "remote"

        added = other.call.add({**CALLS[0], "channel_id": "SIP/4711-0099"})
        await other.flush()
        event = await next_event(stream)
        assert (event["event"], event["uuid"]) == ("add", added.uuid)
        assert event["changes"]["channel_id"] == {"new": "SIP/4711-0099"}

        del other.call[uuid]
        await other.flush()
        event = await next_event(stream)
        assert event == {"event": "delete", "collection": "call", "uuid": uuid, "origin": "remote"}
    await stream.aclose()


async def test_a_collection_made_after_the_start_is_listed_and_followed(
    console: Console, nats_server: EmbeddedServer, namespace: str
) -> None:
    status, body = await console.get("/api/collections")
    assert (status, body) == (200, {"collections": []})
    async with Brainless(nats_server.url, namespace=namespace, location="brno-2") as other:
        other.queue.add(priority=1, state="waiting")
        await other.flush()
        _, body = await console.get("/api/collections")
        assert [row["collection"] for row in body["collections"]] == ["queue"]
        assert body["collections"][0]["entities"] == 1
        stream = events_of(console)
        pending = asyncio.ensure_future(next_event(stream))
        await stream_open(console)
        item = other.queue.add(priority=2, state="waiting")
        await other.flush()
        event = await pending
        assert (event["event"], event["collection"], event["uuid"]) == ("add", "queue", item.uuid)
        await stream.aclose()


async def test_an_idle_stream_sends_keepalives_and_ends_when_the_console_stops(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    async with (
        serve(nats_server.url, namespace, keepalive=0.2) as console,
        console.http.get(console.url + "/api/events") as response,
    ):
        lines = [(await asyncio.wait_for(response.content.readline(), 5)).decode() for _ in range(4)]
        assert lines == ["retry: 2000\n", "\n", ": keepalive\n", "\n"]
        assert len(console.reader.hub) == 1
        console.reader.hub.close()  # what the console's shutdown does
        rest = await asyncio.wait_for(response.content.read(), 5)
        assert b"event:" not in rest
    assert len(console.reader.hub) == 0


# -- access ---------------------------------------------------------------------------------------------


async def test_a_token_is_needed_for_data_as_a_bearer_or_a_query_parameter(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    await seed(nats_server.url, namespace)
    token = "s3cret-token"
    async with serve(nats_server.url, namespace, token=token) as console:
        async with console.http.get(console.url + "/api/collections") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "token" in (await response.json())["error"]
        for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
            status, _ = await console.get("/api/collections", headers=headers)
            assert status == 401
        status, _ = await console.get("/api/collections", params={"token": "wrong"})
        assert status == 401
        status, body = await console.get("/api/collections", headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and len(body["collections"]) == 2
        status, body = await console.get("/api/collections", params={"token": token})
        assert status == 200 and len(body["collections"]) == 2
        async with console.http.get(console.url + "/api/events") as response:
            assert response.status == 401
        async with console.http.get(console.url + "/api/events", params={"token": token}) as response:
            assert response.status == 200
        # The page itself holds no data: it loads, and asks for the token.
        async with console.http.get(console.url + "/") as response:
            assert response.status == 200 and "text/html" in response.headers["Content-Type"]


async def test_a_host_that_is_not_this_machine_is_refused(console: Console) -> None:
    port = console.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", f"192.168.1.10:{port}"):
        status, body = await console.get("/api/info", headers={"Host": host})
        assert status == 403 and "this machine" in body["error"], host
    async with console.http.get(console.url + "/", headers={"Host": f"attacker.test:{port}"}) as response:
        assert response.status == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        status, _ = await console.get("/api/info", headers={"Host": host})
        assert status == 200, host


async def test_nothing_can_be_written_through_the_console(
    console: Console, nats_server: EmbeddedServer, namespace: str
) -> None:
    uuids = await seed(nats_server.url, namespace)
    uuid = uuids["SIP/4711-0001"]
    path = f"/api/collections/call/entities/{uuid}"
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        async with console.http.request(method, console.url + path, json={"state": "x"}) as response:
            assert response.status == 405, method
            assert "error" in await response.json()
    _, body = await console.get(path)
    assert {f["field"]: f["value"] for f in body["fields"]} == CALLS[0]
    assert console.reader.db.stats()["flush"].get("written", 0) == 0


async def test_every_response_carries_the_security_headers(console: Console) -> None:
    for path in ("/", "/console.js", "/console.css", "/api/info", "/api/nope"):
        async with console.http.get(console.url + path) as response:
            headers = response.headers
            assert "default-src 'none'" in headers["Content-Security-Policy"], path
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["Cache-Control"] == "no-store"


async def test_the_page_and_its_script_and_style_are_served_from_the_package(console: Console) -> None:
    kinds = {"/": "text/html", "/console.js": "text/javascript", "/console.css": "text/css"}
    for path, kind in kinds.items():
        async with console.http.get(console.url + path) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith(kind)
            body = await response.text()
        if path == "/":
            assert '<script src="console.js"' in body and '<link rel="stylesheet" href="console.css"' in body
        if path == "/console.js":
            assert "EventSource" in body and "innerHTML" not in body


# -- nodes ------------------------------------------------------------------------------------------------


async def test_nodes_lists_the_running_nodes(
    console: Console, nats_server: EmbeddedServer, namespace: str
) -> None:
    status, info = await console.get("/api/info")
    assert status == 200 and info["nodes"] is True
    async with Brainless(nats_server.url, namespace=namespace, location="ostrava-3") as other:
        other.call.add(**CALLS[0])
        await other.flush()

        async def listed() -> bool:
            _, body = await console.get("/api/nodes")
            return any("ostrava-3" in json.dumps(node) for node in body["nodes"])

        await wait_until(listed)
    status, body = await console.get("/api/nodes")
    assert status == 200 and all(isinstance(node, dict) for node in body["nodes"])


async def test_the_api_answers_a_plain_http_client(console: Console) -> None:
    async with aiohttp.ClientSession() as http, http.get(console.url + "/api/info") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
