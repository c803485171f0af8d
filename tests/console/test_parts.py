"""The console's parts that need no server: listen addresses, hosts, limits, nodes as JSON, the event hub."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any, NamedTuple

import pytest

from brainlessdb import Brainless
from brainlessdb.cli.common import UsageError
from brainlessdb.console.app import is_loopback_host
from brainlessdb.console.command import parse_listen, url_of
from brainlessdb.console.events import EventHub
from brainlessdb.console.reader import MAX_LIMIT, node_rows, parse_limit, plain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_listen_addresses_are_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", ":8080", "127.0.0.1", "127.0.0.1:http", "::1:8080", "[::1]:70000"])
def test_a_listen_address_that_is_not_host_and_port_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(text)


def test_urls_put_ipv6_addresses_in_brackets() -> None:
    assert url_of("127.0.0.1", 8080) == "http://127.0.0.1:8080/"
    assert url_of("::1", 8080) == "http://[::1]:8080/"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("localhost.evil.example", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_limits() -> None:
    assert parse_limit(None) == parse_limit("") == 100
    assert parse_limit("0") == 0 and parse_limit(str(MAX_LIMIT)) == MAX_LIMIT
    for bad in ("-1", str(MAX_LIMIT + 1), "1.5", "many"):
        with pytest.raises(UsageError, match="limit"):
            parse_limit(bad)


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class NodeRecord:
    location: str
    started: datetime.datetime
    lag: dict[str, float]
    colour: Colour


class Pair(NamedTuple):
    location: str
    pending: int


class Plain:
    def __init__(self) -> None:
        self.location = "brno-2"
        self._private = "hidden"


def test_nodes_of_any_shape_become_json_objects() -> None:
    started = datetime.datetime(2026, 11, 18, 11, 6, 40, tzinfo=datetime.timezone.utc)
    rows = node_rows(
        [
            {"location": "prague-1", "pending": 0},
            NodeRecord("prague-2", started, {"brno": 0.5}, Colour.RED),
            Pair("ostrava-3", 4),
            Plain(),
            "odd",
        ]
    )
    assert rows == [
        {"location": "prague-1", "pending": 0},
        {
            "location": "prague-2",
            "started": "2026-11-18T11:06:40+00:00",
            "lag": {"brno": 0.5},
            "colour": "red",
        },
        {"location": "ostrava-3", "pending": 4},
        {"location": "brno-2"},
        {"value": "odd"},
    ]
    assert node_rows({"prague-1~ab": {"pending": 1}, "brno-2~cd": Pair("brno-2", 0)}) == [
        {"node": "prague-1~ab", "pending": 1},
        {"node": "brno-2~cd", "location": "brno-2", "pending": 0},
    ]
    assert plain({"set": {1}, "bytes": b"ab", "tuple": (1, "x")}) == {
        "set": [1],
        "bytes": "ab",
        "tuple": [1, "x"],
    }


async def test_the_hub_copies_each_event_to_every_page_and_drops_a_page_that_falls_behind() -> None:
    db = Brainless(None, namespace="hub", location="here")
    await db.start()
    try:
        hub = EventHub(limit=3)
        calls = db.collection("call")
        hub.follow(calls)
        hub.follow(calls)  # once per collection
        reading, lagging = hub.subscribe(), hub.subscribe()
        entity = calls.add(state="waiting", priority=1)
        got: Any = await reading.next(1)
        assert (got["event"], got["uuid"], got["origin"]) == ("add", entity.uuid, "local")
        assert got["changes"] == {"state": {"new": "waiting"}, "priority": {"new": 1}}
        for priority in range(2, 6):
            entity.priority = priority
            got = await reading.next(1)
            assert got["changes"] == {"priority": {"old": priority - 1, "new": priority}}
        assert lagging.dropped and len(hub) == 1
        events = [await lagging.next(1) for _ in range(4)]
        assert [event["event"] for event in events[:3]] == ["add", "change", "change"]
        assert events[3] is None  # its stream ends; the page reconnects and reloads

        calls.delete(entity)
        got = await reading.next(1)
        assert got == {"event": "delete", "collection": "call", "uuid": entity.uuid, "origin": "local"}
        hub.close()
        assert await reading.next(1) is None and len(hub) == 0
        late = hub.subscribe()
        assert await late.next(1) is None
    finally:
        await db.stop()
