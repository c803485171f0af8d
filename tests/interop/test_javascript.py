"""A JavaScript client keeps the stored format: what it parses and writes back changes nothing, and what it
changes as docs/format.md says reaches every node, running or fresh, and nothing else changes.

The client is ``client.mjs`` next to this file, run with Node.js (no npm packages); these tests do the NATS
part with a plain nats-py client. Without ``node`` they are skipped, unless ``BRAINLESSDB_REQUIRE_NODE=1``
(CI sets it), where a missing ``node`` fails them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from brainlessdb import Brainless, Change, meta
from brainlessdb.core.clock import Stamp, hlc_from_ms
from brainlessdb.core.codec import decode_delete, decode_value, encode_entity, encode_record, encode_tombstone
from brainlessdb.core.merge import Extras, Record, js_encoded, merge_records, merge_stored, same_js_value
from brainlessdb.core.stamps import field_stamps
from brainlessdb.embedded import EmbeddedServer
from tests.helpers import eventually, memory_of, nats_connection

CLIENT = Path(__file__).with_name("client.mjs")
NODE = shutil.which("node")
REQUIRED = os.environ.get("BRAINLESSDB_REQUIRE_NODE") == "1"

pytestmark = pytest.mark.skipif(
    NODE is None and not REQUIRED,
    reason="Node.js (node) is not installed: the JavaScript client of the stored format is not run",
)

_canonical = msgspec.json.Encoder(order="sorted")
TIME_NS = 1_795_000_000_000 * 1_000_000


def run_client(request: dict[str, Any]) -> Any:
    """What ``client.mjs`` answers to ``request``."""
    if NODE is None:
        pytest.fail("BRAINLESSDB_REQUIRE_NODE=1 but Node.js (node) is not installed")
    done = subprocess.run(
        [NODE, str(CLIENT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"client.mjs failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def round_trip(values: list[bytes]) -> list[bytes]:
    """The values as JavaScript writes them back after ``JSON.parse``."""
    texts = run_client({"op": "roundtrip", "values": [value.decode() for value in values]})
    return [text.encode() for text in texts]


# -- what JavaScript does to numbers, and to stored values ---------------------------------------------

EDGE_FLOATS = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    1.5,
    1e-7,
    5e-324,
    1e15,
    1e16,
    1.5e17,
    2.0**53,
    2.0**53 + 2,
    2.0**60,
    1.2345678901234568e17,
    9.999999999999999e20,
    1e21,
    1e22,
    1.7976931348623157e308,
]


def random_floats(count: int) -> list[float]:
    rng = random.Random(2026)
    found: list[float] = []
    while len(found) < count:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            found.append(value)
        found.append(float(rng.randrange(-(2**62), 2**62)))  # integral floats of every size
        found.append(rng.randrange(-(10**6), 10**6) / 8)
    return found


def test_javascript_writes_numbers_as_js_form_says() -> None:
    floats = [*EDGE_FLOATS, *(-value for value in EDGE_FLOATS), *random_floats(3000)]
    values = [_canonical.encode([value]) for value in floats]
    for value, back, text in zip(floats, round_trip(values), values, strict=True):
        assert _canonical.encode(msgspec.json.decode(back)) == js_encoded([value]), (value, text, back)


NODES = ["prague-1", "brno-1", "", "js-1", "ž"]
KEYS = ["state", "10", "2", "a", "ž", "0", "-1", "1.5", "__proto__x"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 2 else 7)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randrange(-(2**53) + 1, 2**53)
    if kind == 2:
        return rng.choice(EDGE_FLOATS[:-1]) * rng.choice([1, -1])
    if kind == 3:
        return rng.randrange(-1000, 1000) / 4
    if kind in (4, 5):
        return rng.choice(["", "idle", "žluťoučký kůň 🐎", 'quote " and \\ back', "\n\t\u2028\x00", "1.0"])
    if kind == 6:
        return rng.choice([1.0, -0.0, 2.0**60])
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_stamp(rng: random.Random) -> Stamp:
    ms = rng.choice([0, 1, 1_795_000_000_000 + rng.randrange(10**6), 2**53 - 1])
    return (hlc_from_ms(ms) + rng.choice([0, 1, 65535, rng.randrange(65536)]), rng.choice(NODES))


def random_records(count: int) -> list[Record]:
    rng = random.Random(53)
    records: list[Record] = []
    for _ in range(count):
        if rng.randrange(10) == 0:
            records.append(Record(deleted=random_stamp(rng)))
            continue
        shared = [random_stamp(rng) for _ in range(rng.randrange(1, 4))]
        names = rng.sample(KEYS, rng.randrange(1, len(KEYS)))
        record = Record(
            data={name: random_value(rng) for name in names},
            stamps={name: rng.choice(shared) for name in names},
        )
        if rng.randrange(3) == 0:
            add_extras(rng, record)
        records.append(record)
    return records


def add_extras(rng: random.Random, record: Record) -> None:
    """Give ``record`` a dict field with changes inside it (one a removal) and a counter with tallies."""
    stamp = (hlc_from_ms(1_795_000_000_000 + rng.randrange(10**6)), rng.choice(NODES))
    inside = {"k": random_value(rng), "m": {"z": random_value(rng)}}
    record.data["nested"], record.stamps["nested"] = inside, stamp
    later = [(stamp[0] + rng.randrange(1, 10**9), rng.choice(NODES)) for _ in range(3)]
    paths = {("k",): later[0], ("m", "z"): later[1], ("gone/~",): later[2]}
    tallies = {f"{rng.choice(NODES)}~{n}": (rng.randrange(2**53), rng.randrange(10)) for n in range(2)}
    record.data["count"] = rng.randrange(-(2**40), 2**40)
    record.stamps["count"] = stamp
    record.extras = Extras({"nested": paths}, {"count": tallies})


def test_a_stored_value_javascript_parses_and_writes_back_is_the_same_version() -> None:
    records = random_records(500)
    values = [encode_record(record) for record in records]
    respelled_values = round_trip(values)
    assert sum(back != value for back, value in zip(respelled_values, values, strict=True)) > 100
    for record, value, back in zip(records, values, respelled_values, strict=True):
        if record.deleted is not None:
            assert decode_delete(back, time_ns=TIME_NS) == record
            continue
        respelled = decode_value(back, time_ns=TIME_NS)
        assert respelled.stamps == record.stamps, (value, back)  # every stamp exact
        assert respelled.extras == record.extras, (value, back)  # and those inside fields, and tallies
        assert same_js_value(respelled.data, record.data), (value, back)
        # A node holding the version sees no change and has nothing to write back ...
        data, stamps = dict(record.data), dict(record.stamps)
        changed, ahead, extras = merge_stored(data, stamps, respelled, record.extras)
        assert (changed, ahead, extras) == ({}, False, record.extras)
        # ... and one that loaded the re-serialized version first takes the original spelling back.
        assert _canonical.encode(merge_records(respelled, record).data) == _canonical.encode(record.data)


def test_javascript_rounds_the_stamps_of_format_v1_which_is_why_v2_stores_them_apart() -> None:
    hlc = hlc_from_ms(1_795_000_000_250) + 3
    v1 = b'{"_v":1,"d":{"state":"idle"},"s":[%d,"prague-1"]}' % hlc
    [back] = round_trip([v1])
    assert decode_value(back, time_ns=TIME_NS).stamps["state"] != (hlc, "prague-1")
    [back] = round_trip([encode_tombstone((hlc, "prague-1"))])
    assert decode_delete(back, time_ns=TIME_NS) == Record(deleted=(hlc, "prague-1"))
    with pytest.raises(AssertionError, match="format v1"):
        run_client({"op": "set", "value": v1.decode(), "changes": {"state": "x"}, "node": "js-1"})


def test_the_client_stamps_a_change_after_every_stamp_of_the_value() -> None:
    newest = (hlc_from_ms(4_000_000_000_000) + 65535, "zz")  # a stamp from the future, counter at its top
    value = encode_record(Record(data={"a": 1, "b": 2}, stamps={"a": (hlc_from_ms(5), "n"), "b": newest}))
    changed = decode_value(
        run_client({"op": "set", "value": value.decode(), "changes": {"a": 3}, "node": "js-1"}).encode(),
        time_ns=TIME_NS,
    )
    assert changed.data == {"a": 3, "b": 2}
    assert changed.stamps["a"] == (hlc_from_ms(4_000_000_000_001), "js-1")
    assert changed.stamps["b"] == newest


def test_the_client_sets_an_expiry_that_wins_and_keeps_one_it_does_not_change() -> None:
    set_at = (hlc_from_ms(1_000), "prague-1")
    value = encode_entity({"a": 1}, (hlc_from_ms(5), "n"), Extras(expiry=(60_000, set_at)))
    kept = decode_value(
        run_client(
            {"op": "set", "value": value.decode(), "changes": {"a": 2}, "node": "js-1", "now_ms": 9}
        ).encode(),
        time_ns=TIME_NS,
    )
    assert kept.extras is not None and kept.extras.expiry == (60_000, set_at)
    assert kept.stamps["a"] == (hlc_from_ms(1_000) + 1, "js-1")  # after the expiry's stamp too
    for at in (120_000, None):
        request = {"op": "expire", "value": value.decode(), "at": at, "node": "js-1", "now_ms": 9}
        changed = decode_value(run_client(request).encode(), time_ns=TIME_NS)
        assert changed.extras is not None and changed.extras.expiry == (at, (hlc_from_ms(1_000) + 1, "js-1"))
        merged = merge_records(decode_value(value, time_ns=TIME_NS), changed)
        assert merged.extras is not None and merged.extras.expiry == changed.extras.expiry


# -- on NATS: running nodes, a fresh node, and a JavaScript client writing back -------------------------


CALL = {
    "state": "idle",
    "count": 7,
    "price": 2.0,
    "zero": -0.0,
    "big": 1.5e17,
    "info": {"10": 1, "2": 2.5, "a": [1.0, "x"]},
    "name": "žluťoučký kůň 🐎",
}


class Node:
    """A running node, and the changes it was told of."""

    def __init__(self, db: Brainless) -> None:
        self.db = db
        self.changes: list[Change] = []
        db.call.on_change(self.changes.append)


@pytest.fixture
async def nodes(nats_server: EmbeddedServer, namespace: str) -> AsyncIterator[list[Node]]:
    async with (
        Brainless(nats_server.url, namespace=namespace, location="prague-1", flush_interval=0.02) as a,
        Brainless(nats_server.url, namespace=namespace, location="brno-1", flush_interval=0.02) as b,
    ):
        yield [Node(a), Node(b)]


async def fresh_data(url: str, namespace: str) -> dict[str, Any]:
    async with Brainless(url, namespace=namespace, location="fresh-1", flush_interval=3600) as db:
        await db.call.load()
        return memory_of(db)


async def written_by(nodes: list[Node], value: bytes, uuid: str, revision: int, url: str) -> int:
    """Write ``value`` (from the JavaScript client) on ``revision``; wait until every node applied it."""
    async with nats_connection(url) as client:
        kv = await client.jetstream().key_value(nodes[0].db.bucket_name("call"))
        written = int(await kv.update(uuid, value, last=revision))
    await eventually(
        lambda: all(meta(node.db.call.entities[uuid]).revision == written for node in nodes), timeout=10
    )
    await asyncio.sleep(0.2)  # time for anything a node would write back, or tell
    return written


async def stored(url: str, bucket: str, uuid: str) -> tuple[bytes, int]:
    async with nats_connection(url) as client:
        entry = await (await client.jetstream().key_value(bucket)).get(uuid)
        return bytes(entry.value or b""), int(entry.revision or 0)


def exact(data: dict[str, Any]) -> bytes:
    """The data with every spelling told apart (``1.0`` from ``1``, ``-0.0`` from ``0``)."""
    return _canonical.encode(data)


@pytest.mark.nats
async def test_a_javascript_round_trip_of_a_stored_value_changes_nothing_on_any_node(
    nodes: list[Node], nats_server: EmbeddedServer, namespace: str
) -> None:
    a, b = nodes
    call = a.db.call.add(CALL)
    await a.db.flush()
    await eventually(lambda: call.uuid in b.db.call, timeout=10)
    before = {node.db.location: exact(meta(node.db.call.entities[call.uuid]).data) for node in nodes}
    a.changes.clear()
    b.changes.clear()

    bucket = a.db.bucket_name("call")
    value, revision = await stored(nats_server.url, bucket, call.uuid)
    [back] = round_trip([value])
    assert back != value  # JavaScript spells the numbers otherwise, and puts "10" and "2" first in info
    written = await written_by(nodes, back, call.uuid, revision, nats_server.url)

    for node in nodes:
        assert node.changes == []
        assert exact(meta(node.db.call.entities[call.uuid]).data) == before[node.db.location]
        assert not node.db.call.sync.has_pending()
        assert node.db.call.sync.dead_letter_count == 0
    entity = a.db.call.entities[call.uuid]
    assert type(meta(entity).data["price"]) is float
    assert math.copysign(1.0, meta(entity).data["zero"]) == -1.0
    assert await stored(nats_server.url, bucket, call.uuid) == (back, written)  # nothing written back
    assert await fresh_data(nats_server.url, namespace) == memory_of(a.db) == memory_of(b.db)


@pytest.mark.nats
async def test_a_field_a_javascript_client_changes_reaches_every_node_and_nothing_else_changes(
    nodes: list[Node], nats_server: EmbeddedServer, namespace: str
) -> None:
    a, b = nodes
    call = a.db.call.add(CALL)
    await a.db.flush()
    await eventually(lambda: call.uuid in b.db.call, timeout=10)
    before = exact(meta(a.db.call.entities[call.uuid]).data)
    a.changes.clear()
    b.changes.clear()

    bucket = a.db.bucket_name("call")
    value, revision = await stored(nats_server.url, bucket, call.uuid)
    request = {"op": "set", "value": value.decode(), "changes": {"state": "answered"}, "node": "js-1"}
    changed = run_client(request).encode()
    written = await written_by(nodes, changed, call.uuid, revision, nats_server.url)

    expected = msgspec.json.decode(before)
    expected["state"] = "answered"
    js_stamp = decode_value(changed, time_ns=TIME_NS).stamps["state"]
    assert js_stamp[1] == "js-1"
    for node in nodes:
        [change] = node.changes
        assert (change.uuid, dict(change.changes)) == (call.uuid, {"state": ("idle", "answered")})
        entity = node.db.call.entities[call.uuid]
        assert exact(meta(entity).data) == exact(expected)  # every other field as it was, spelling included
        assert field_stamps(entity._stamps, entity._data)["state"] == js_stamp
        assert not node.db.call.sync.has_pending()
    assert await stored(nats_server.url, bucket, call.uuid) == (changed, written)  # nothing written back
    assert await fresh_data(nats_server.url, namespace) == memory_of(a.db) == memory_of(b.db)

    # A later change through BrainlessDB wins over the client's (the nodes' clocks moved past its stamp).
    b.db.call[call.uuid].state = "done"
    await eventually(lambda: a.db.call[call.uuid].state == "done", timeout=10)
    changed_here = a.db.call.entities[call.uuid]
    assert field_stamps(changed_here._stamps, changed_here._data)["state"] > js_stamp
