"""Expiring entities without I/O: deadlines, the merge of expiries, and what a node does at a deadline.

The nodes' clocks are set by the tests (``node.now_ms``), so nothing here waits for time to pass.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core import expiry
from brainlessdb.core.codec import _decode_generic, decode_value, encode_entity
from brainlessdb.core.collection import Collection
from brainlessdb.core.evolution import upgrade_record
from brainlessdb.core.expiry import Deadlines, check_seconds, server_ttl
from brainlessdb.core.merge import Extras, Record
from brainlessdb.core.meta import meta
from brainlessdb.core.schema import Schema
from brainlessdb.errors import DecodeError, ExpiryError, NotFoundError, SchemaError
from brainlessdb.events import Delete
from brainlessdb.storage.base import Entry, Op
from tests.core.host_fakes import Host, run
from tests.core.sync_fakes import START_MS, TIME_NS, Bucket, Node, marker, schema_of, stamp

SCHEMA = schema_of({"state": {"type": "str"}})


def expiring(node: Node, uuid: str, seconds: float, revision: int = 1) -> None:
    """Add ``uuid`` on ``node``, stored at ``revision``, expiring ``seconds`` later (stored too)."""
    node.add_stored(uuid, {"state": "new"}, revision)
    node.expire(uuid, seconds)
    node.outbox.written(node.take_one(), revision + 1)
    node.forget_calls()


def deletes(node: Node) -> list[Delete]:
    return [event for event in node.events if isinstance(event, Delete)]


# -- deadlines ---------------------------------------------------------------------------------------


def test_deadlines_come_due_in_order_and_only_the_last_scheduled_counts() -> None:
    deadlines = Deadlines()
    deadlines.schedule("a", 300)
    deadlines.schedule("b", 100)
    deadlines.schedule("c", 200)
    deadlines.schedule("c", 500)  # extended
    deadlines.schedule("a", 50)  # shortened
    deadlines.schedule("b", None)  # removed
    assert deadlines.next_at() == 50
    assert deadlines.due(49) == []
    assert deadlines.due(400) == ["a"]
    assert deadlines.next_at() == 500
    deadlines.forget("c")
    assert deadlines.next_at() is None
    assert deadlines.due(10_000) == []
    assert not deadlines


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.one_of(st.none(), st.integers(0, 100)))))
def test_deadlines_due_is_what_was_last_scheduled_and_passed(steps: list[tuple[str, int | None]]) -> None:
    deadlines = Deadlines()
    last: dict[str, int | None] = {}
    for uuid, at in steps:
        deadlines.schedule(uuid, at)
        last[uuid] = at
    expected = sorted((at, uuid) for uuid, at in last.items() if at is not None and at <= 50)
    assert sorted((last[uuid], uuid) for uuid in deadlines.due(50)) == expected
    later = [at for at in last.values() if at is not None and at > 50]
    assert deadlines.next_at() == (min(later) if later else None)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "60", None, True, 11 * 365 * 86400])
def test_an_expiry_must_be_a_number_of_seconds_above_zero(bad: Any) -> None:
    with pytest.raises(ExpiryError):
        check_seconds(bad)


def test_the_server_ttl_is_the_time_left_rounded_up_with_a_grace() -> None:
    assert server_ttl(START_MS + 2000, START_MS) == 2 + expiry.GRACE_SECONDS
    assert server_ttl(START_MS + 1001, START_MS) == 2 + expiry.GRACE_SECONDS
    assert server_ttl(START_MS - 5000, START_MS) == 1 + expiry.GRACE_SECONDS  # late: at least 1 s


# -- the merge of expiries ---------------------------------------------------------------------------


def test_the_expiry_set_last_wins_whether_it_extends_shortens_or_removes() -> None:
    first = (START_MS + 5000, stamp(1))
    for later in ((START_MS + 9000, stamp(2)), (START_MS + 1000, stamp(2)), (None, stamp(2))):
        assert expiry.merge(first, later) == later
        assert expiry.merge(later, first) == later
    assert expiry.merge(None, first) == first
    assert expiry.merge(first, None) == first  # a version that never had one says nothing


def test_two_expiries_under_one_stamp_pick_the_same_winner_either_way() -> None:
    one, other = (START_MS + 1000, stamp(1)), (None, stamp(1))
    assert expiry.merge(one, other) == expiry.merge(other, one) == one


# -- the stored member e -----------------------------------------------------------------------------


@pytest.mark.parametrize("deadline", [START_MS + 3_600_000, None])
def test_the_expiry_is_stored_and_read_back_by_both_decoders(deadline: int | None) -> None:
    extras = Extras(expiry=(deadline, stamp(START_MS)))
    value = encode_entity({"state": "new"}, stamp(START_MS - 5), extras)
    assert b'"e":{"at":' in value
    for record in (decode_value(value, time_ns=0), _decode_generic(value, 0)):
        assert record.extras is not None
        assert record.extras.expiry == (deadline, stamp(START_MS))


@pytest.mark.parametrize(
    "member",
    [b'"e":5', b'"e":{"at":-1,"s":[1,0,"n"]}', b'"e":{"at":"soon","s":[1,0,"n"]}', b'"e":{"at":1}'],
)
def test_a_malformed_expiry_is_refused_by_both_decoders(member: bytes) -> None:
    value = b'{"_v":2,"d":{"state":"new"},"s":[1,0,"n"],' + member + b"}"
    with pytest.raises(DecodeError):
        decode_value(value, time_ns=0)
    with pytest.raises(DecodeError):
        _decode_generic(value, 0)


# -- a node at the deadline --------------------------------------------------------------------------


def test_at_its_deadline_an_entity_is_gone_told_as_expired_and_its_delete_written() -> None:
    node = Node(schema=SCHEMA)
    expiring(node, "s1", 2)
    assert meta(node.entity("s1")).expires_at == (START_MS + 2000) / 1000
    node.now_ms = START_MS + 1999
    assert node.sync.expire_due() == 0
    node.now_ms = START_MS + 2000
    assert node.sync.expire_due() == 1
    assert "s1" not in node.table.entities
    [event] = deletes(node)
    assert (event.uuid, event.reason, event.origin) == ("s1", "expired", "remote")
    write = node.take_one()  # the nodes remove it from the bucket: no server TTL here
    assert write.delete and write.expected_revision == 2
    assert node.wakes == 1


def test_where_the_server_removes_expired_entities_writes_carry_the_ttl_and_no_delete_is_written() -> None:
    node = Node(schema=SCHEMA)
    node.table.expiry.server = True
    node.add_stored("s1", {"state": "new"}, 1)
    node.expire("s1", 10)
    write = node.take_one()
    assert write.ttl == 10 + expiry.GRACE_SECONDS
    node.outbox.written(write, 2)
    node.now_ms = START_MS + 4000
    node.entity("s1").state = "later"
    write = node.take_one()
    assert write.ttl == 6 + expiry.GRACE_SECONDS  # every write: the time left
    node.outbox.written(write, 3)
    node.now_ms = START_MS + 10_000
    node.sync.expire_due()
    assert node.outbox.take_writes() == []
    assert node.sync.is_deleted("s1")


def test_with_server_ttl_an_entity_whose_last_change_is_unwritten_gets_its_delete_written() -> None:
    node = Node(schema=SCHEMA)
    node.table.expiry.server = True
    expiring(node, "s1", 2)
    node.entity("s1").state = "changed"  # never acknowledged: the bucket holds a version that expires
    node.now_ms = START_MS + 2000
    node.sync.expire_due()
    assert node.take_one().delete


def test_extending_before_the_deadline_keeps_the_entity_until_the_new_one() -> None:
    node = Node(schema=SCHEMA)
    expiring(node, "s1", 2)
    node.now_ms = START_MS + 1500
    node.expire("s1", 5)
    node.now_ms = START_MS + 3000
    assert node.sync.expire_due() == 0
    node.now_ms = START_MS + 6500
    assert node.sync.expire_due() == 1


def test_seconds_none_removes_the_expiry() -> None:
    node = Node(schema=SCHEMA)
    expiring(node, "s1", 2)
    node.expire("s1", None)
    assert meta(node.entity("s1")).expires_at is None
    node.now_ms = START_MS + 100_000
    assert node.sync.expire_due() == 0


def test_expire_refuses_bad_seconds_and_unknown_entities() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("s1", {"state": "new"}, 1)
    with pytest.raises(ExpiryError):
        node.expire("s1", -3)
    with pytest.raises(NotFoundError):
        node.expire("nobody", 3)
    assert node.outbox.take_writes() == []


# -- what other nodes send ---------------------------------------------------------------------------


def replicate(source: Node, target: Node, bucket: Bucket) -> None:
    """Write what ``source`` has pending to ``bucket`` and let ``target`` read what was stored."""
    for write in source.outbox.take_writes():
        source.outbox.written(write, bucket.store(write))
    while bucket.watch:
        entry = bucket.watch.popleft()
        target.inbox.apply(entry)
        source.inbox.apply(entry)


def test_every_node_removes_the_entity_at_the_deadline_it_received() -> None:
    bucket = Bucket()
    a, b = Node(schema=SCHEMA), Node("brno-1", schema=SCHEMA)
    a.add("s1", {"state": "new"})
    a.expire("s1", 2)
    replicate(a, b, bucket)
    assert meta(b.entity("s1")).expires_at == (START_MS + 2000) / 1000
    b.now_ms = START_MS + 2000
    b.sync.expire_due()
    assert [event.reason for event in deletes(b)] == ["expired"]


def test_a_stale_write_from_a_node_that_missed_the_expiry_does_not_bring_the_entity_back() -> None:
    bucket = Bucket()
    a, c = Node(schema=SCHEMA), Node("ostrava-1", schema=SCHEMA)
    a.add("s1", {"state": "new"})
    replicate(a, c, bucket)  # c holds the entity, then is cut off
    a.expire("s1", 2)
    for write in a.outbox.take_writes():
        a.outbox.written(write, bucket.store(write))
    bucket.watch.clear()  # c sees none of it
    a.now_ms = c.now_ms = START_MS + 2000
    a.sync.expire_due()
    for write in a.outbox.take_writes():
        a.outbox.written(write, bucket.store(write))
    c.entity("s1").state = "touched"  # newer than everything a wrote
    [stale] = c.outbox.take_writes()
    with pytest.raises(Exception, match="s1"):
        bucket.store(stale)  # compare-and-set: the key moved on
    current = bucket.get("s1")
    c.sync.conflicted(stale, current)
    assert "s1" not in c.table.entities and c.sync.is_deleted("s1")
    a.inbox.apply(Entry("s1", 99, encode_entity({"state": "late"}, stamp(START_MS + 5000)), Op.PUT, TIME_NS))
    assert "s1" not in a.table.entities  # a later version meets the delete: the delete wins


def test_an_extension_that_arrives_after_the_deadline_does_not_revive_the_entity() -> None:
    bucket = Bucket()
    a, b = Node(schema=SCHEMA), Node("brno-1", schema=SCHEMA)
    a.add("s1", {"state": "new"})
    a.expire("s1", 2)
    replicate(a, b, bucket)
    b.expire("s1", 60)  # made in time on b, but a reads it only after its deadline
    a.now_ms = START_MS + 2500
    replicate(b, a, bucket)
    assert "s1" not in a.table.entities
    assert [event.reason for event in deletes(a)] == ["expired"]


def test_a_node_loading_a_version_past_its_deadline_never_shows_it_and_deletes_it() -> None:
    value = encode_entity(
        {"state": "new"}, stamp(START_MS), Extras(expiry=(START_MS + 1000, stamp(START_MS)))
    )
    node = Node(schema=SCHEMA, now_ms=START_MS + 5000)
    node.inbox.apply(Entry("s1", 4, value, Op.PUT, TIME_NS))
    assert "s1" not in node.table.entities and node.events == []
    write = node.take_one()
    assert write.delete and write.expected_revision == 4


@pytest.mark.parametrize(("seconds", "reason"), [(1, "expired"), (3600, "purged")])
def test_a_server_marker_removing_an_entity_is_told_as_expired_only_at_its_deadline(
    seconds: int, reason: str
) -> None:
    node = Node(schema=SCHEMA)
    expiring(node, "s1", seconds)
    node.now_ms = START_MS + 999  # the server's clock is a little ahead of this node's
    node.inbox.apply(Entry("s1", 9, b"", Op.PURGE, TIME_NS))
    assert [event.reason for event in deletes(node)] == [reason]


def test_a_delete_marker_of_an_entity_without_expiry_is_told_as_deleted() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("s1", {"state": "new"}, 1)
    node.inbox.apply(marker("s1", 2, stamp(START_MS + 5)))
    assert [event.reason for event in deletes(node)] == ["deleted"]


# -- the collection: default expiry, queries -------------------------------------------------------


def test_no_query_returns_an_entity_past_its_deadline() -> None:
    host = Host()
    sessions: Collection[Any] = Collection(host, "session")
    sessions.on_delete(lambda event: None)
    kept = sessions.add(user="ann")
    gone = sessions.add(user="bob")
    sessions.expire(gone, 2)
    host.now_ms = START_MS + 2000
    # Each query alone, on a fresh collection state, must not see it.
    assert run(sessions.get(gone.uuid)) is None
    assert [e.uuid for e in run(sessions.filter(user="bob"))] == []
    assert run(sessions.find(user="bob")) is None
    assert len(sessions) == 1 and gone.uuid not in sessions
    assert [e.uuid for e in run(sessions.all())] == [kept.uuid]
    with pytest.raises(NotFoundError):
        sessions[gone.uuid]
    with pytest.raises(NotFoundError):
        sessions.expire(gone, 10)
    assert [(e.uuid, e.reason) for e in host.events if isinstance(e, Delete)] == [(gone.uuid, "expired")]


@pytest.mark.parametrize("query", ["get", "filter", "find", "all", "count", "len", "contains", "iter"])
def test_each_query_removes_what_is_due_before_answering(query: str) -> None:
    host = Host()
    sessions: Collection[Any] = Collection(host, "session")
    gone = sessions.add(user="bob")
    sessions.expire(gone, 1)
    host.now_ms = START_MS + 1000
    answers = {
        "get": lambda: run(sessions.get(gone.uuid)),
        "filter": lambda: run(sessions.filter(user="bob")),
        "find": lambda: run(sessions.find(user="bob")),
        "all": lambda: run(sessions.all()),
        "count": lambda: sessions.count(user="bob"),
        "len": lambda: len(sessions),
        "contains": lambda: gone.uuid in sessions,
        "iter": lambda: list(sessions),
    }
    assert not answers[query]()


def test_a_default_ttl_gives_every_added_entity_its_deadline_and_is_stored_with_the_schema() -> None:
    host = Host()
    sessions: Collection[Any] = Collection(host, "session")
    sessions.declare_ttl(60)
    session = sessions.add(user="ann")
    assert meta(session).expires_at == (START_MS + 60_000) / 1000
    assert sessions.schema is not None and sessions.schema.ttl == 60
    assert sessions.schema.to_json()["ttl"] == 60
    sessions.declare_ttl(60)  # the same again: nothing to change
    with pytest.raises(SchemaError, match="set_ttl"):
        sessions.declare_ttl(30)
    sessions.set_ttl(30)
    assert sessions.ttl == 30
    assert meta(sessions.add(user="bob")).expires_at == (START_MS + 30_000) / 1000
    assert meta(session).expires_at == (START_MS + 60_000) / 1000  # kept its own


def test_a_stored_default_ttl_wins_over_one_declared_before_it_was_read() -> None:
    host = Host()
    sessions: Collection[Any] = Collection(host, "session")
    sessions.declare_ttl(60)
    stored = schema_of({"user": {"type": "str"}})
    stored = type(stored)(stored.fields, ttl=120)
    sessions.sync.schema.seen(stored, 1)
    assert sessions.ttl == 120


@pytest.mark.parametrize("bad", [0, -5, math.nan, "1h"])
def test_a_bad_default_ttl_is_refused(bad: Any) -> None:
    sessions: Collection[Any] = Collection(Host(), "session")
    with pytest.raises(ExpiryError):
        sessions.declare_ttl(bad)


def test_a_version_read_under_an_evolved_schema_keeps_its_expiry() -> None:
    schema = Schema.from_json(
        {"v": 1, "fields": {"state": {"type": "str"}}, "version": 1, "removed": ["legacy"]}
    )
    expires = (START_MS + 5000, stamp(START_MS))
    record = Record(data={"state": "x", "legacy": 1}, shared=stamp(START_MS), extras=Extras(expiry=expires))
    upgraded = upgrade_record(schema, record)
    assert upgraded.data == {"state": "x"}
    assert upgraded.extras is not None and upgraded.extras.expiry == expires


def test_where_the_server_removes_expired_entities_delete_markers_carry_the_retention() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("s1", {"state": "new"}, 1)
    node.add_stored("s2", {"state": "new"}, 2)
    node.delete("s1")
    assert node.take_one().ttl is None  # not known to take a TTL: the housekeeping removes the marker
    node.table.expiry.server = True
    node.table.expiry.marker_ttl = 86400.0
    node.delete("s2")
    write = node.take_one()
    assert write.delete and write.ttl == 86400.0
