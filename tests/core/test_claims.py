"""The pure half of ``update_if`` (``core.claims``): validating a claim, reading what is stored into memory,
checking the criteria, building the version to write, and telling what became of an unacknowledged write.

No event loop and no storage: a collection is built on a tiny host, and the bucket's entries by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from brainlessdb.core.claims import Attempt, Claim, Outcome, make_claim, take_stored, won
from brainlessdb.core.clock import Stamp, hlc_from_ms
from brainlessdb.core.codec import decode_value, encode_entity, encode_tombstone
from brainlessdb.core.collection import Collection
from brainlessdb.core.entity import Entity
from brainlessdb.core.meta import meta
from brainlessdb.core.query.plan import parse_criteria
from brainlessdb.core.schema import Schema
from brainlessdb.errors import DecodeError, NotFoundError, SchemaError
from brainlessdb.events import Change
from brainlessdb.storage.base import Entry, Op
from tests.core.host_fakes import Host

NOW_MS = 1_735_689_600_000
UUID = "6f1c2a4e-0000-11ef-8000-0242ac120002"


def stamp(ms: int, node: str = "brno-1") -> Stamp:
    return (hlc_from_ms(ms), node)


def put(revision: int, data: dict[str, Any], stamps: Any, key: str = UUID) -> Entry:
    return Entry(key, revision, encode_entity(data, stamps), Op.PUT, NOW_MS * 1_000_000)


def queue(host: Host | None = None) -> Collection[Any]:
    return Collection(host or Host(), "queue")


def claim_of(criteria: dict[str, Any], schema: Schema | None = None, **changes: Any) -> Claim:
    conditions = parse_criteria(criteria, None if schema is None else schema.field_types())
    return make_claim("queue", UUID, conditions, changes, schema)


WAITING = {"state": "waiting", "agent_id": None, "caller": {"city": "Prague"}, "priority": 2}
SCHEMA = Schema.infer(WAITING)


# -- validating ------------------------------------------------------------------------------------


def test_changes_are_checked_by_the_schema_and_copied() -> None:
    caller = {"city": "Brno"}
    claim = claim_of({}, SCHEMA, state="processing", caller=caller)
    assert claim.changes == {"state": "processing", "caller": {"city": "Brno"}}
    caller["city"] = "changed later"
    assert claim.changes["caller"] == {"city": "Brno"}
    with pytest.raises(SchemaError):
        claim_of({}, SCHEMA, unknown=1)
    with pytest.raises(SchemaError):
        claim_of({}, SCHEMA, priority="high")
    with pytest.raises(SchemaError):
        claim_of({}, None, uuid="x")
    with pytest.raises(TypeError):
        claim_of({"state": "waiting"}, SCHEMA)


def test_criteria_match_the_stored_data_as_filter_does() -> None:
    data = dict(WAITING)
    record = decode_value(encode_entity(data, stamp(NOW_MS)), time_ns=0)
    assert claim_of({"state": "waiting", "agent_id__isnull": True}, x=1).matches(record)
    assert claim_of({"caller__city": "Prague", "priority__in": [1, 2]}, x=1).matches(record)
    assert claim_of({"missing__isnull": True}, x=1).matches(record)
    assert claim_of({}, x=1).matches(record)
    assert not claim_of({"state": "waiting", "agent_id": 5}, x=1).matches(record)
    assert not claim_of({"caller__city__startswith": "B"}, x=1).matches(record)


def test_a_retry_is_the_same_claim_and_other_criteria_or_changes_are_not() -> None:
    first = claim_of({"state": "waiting"}, state="processing", agent_id=5)
    assert first.same_as(claim_of({"state": "waiting"}, agent_id=5, state="processing"))
    assert not first.same_as(claim_of({"state": "waiting"}, state="processing", agent_id=6))
    assert not first.same_as(claim_of({"state": "new"}, state="processing", agent_id=5))


# -- the stored version, into memory ---------------------------------------------------------------


def test_the_stored_version_is_merged_into_memory_before_it_is_checked() -> None:
    collection = queue()
    entry = put(3, WAITING, stamp(NOW_MS - 10))
    record, revision = take_stored(collection.sync, claim_of({}, x=1), entry)
    assert revision == 3 and record.data == WAITING
    entity = collection.entities[UUID]
    assert meta(entity).data == WAITING and not meta(entity).dirty


def test_a_missing_or_deleted_entity_is_not_found_and_leaves_memory() -> None:
    collection = queue()
    collection.sync.inbox.apply(put(1, WAITING, stamp(NOW_MS - 10)))
    with pytest.raises(NotFoundError):
        take_stored(collection.sync, claim_of({}, x=1), None)
    assert UUID not in collection.entities

    collection = queue()
    collection.sync.inbox.apply(put(1, WAITING, stamp(NOW_MS - 10)))
    marker = Entry(UUID, 2, encode_tombstone(stamp(NOW_MS - 5)), Op.DELETE, 0)
    with pytest.raises(NotFoundError):
        take_stored(collection.sync, claim_of({}, x=1), marker)
    assert UUID not in collection.entities and collection.sync.is_deleted(UUID)


def test_an_unusable_stored_value_is_a_decode_error_and_a_dead_letter() -> None:
    collection = queue()
    with pytest.raises(DecodeError):
        take_stored(collection.sync, claim_of({}, x=1), Entry(UUID, 1, b"not json", Op.PUT, 0))
    assert collection.sync.dead_letter_count == 1


# -- the version to write --------------------------------------------------------------------------


def test_the_claim_is_stamped_newer_than_everything_stored_even_from_a_clock_far_ahead() -> None:
    host = Host()
    ahead = stamp(NOW_MS + 3_600_000, "fast-1")  # another node's clock is an hour ahead
    stamps = {"state": stamp(NOW_MS - 10), "agent_id": ahead, "caller": stamp(NOW_MS), "priority": ahead}
    record = decode_value(encode_entity(WAITING, stamps), time_ns=0)
    attempt = Attempt.build(claim_of({}, SCHEMA, state="processing", agent_id=5), record, 7, host.clock)
    assert attempt.expected == 7
    assert attempt.stamp > ahead and attempt.stamp[1] == "prague-1"
    written = decode_value(attempt.value, time_ns=0)
    assert written.data == {**WAITING, "state": "processing", "agent_id": 5}
    assert written.stamps == {**stamps, "state": attempt.stamp, "agent_id": attempt.stamp}
    assert host.clock.tick() > attempt.stamp


def test_an_unacknowledged_write_is_landed_pending_or_lost_by_what_is_stored_after() -> None:
    host = Host()
    record = decode_value(encode_entity(WAITING, stamp(NOW_MS - 10)), time_ns=0)
    claim = claim_of({"state": "waiting"}, SCHEMA, state="processing", agent_id=5)
    attempt = Attempt.build(claim, record, 4, host.clock)
    landed = Entry(UUID, 5, attempt.value, Op.PUT, 0)
    assert attempt.outcome(landed) is Outcome.LANDED
    # A later version merged from it still holds its stamp on the changed fields.
    later_stamps = {**decode_value(attempt.value, time_ns=0).stamps, "priority": stamp(NOW_MS + 50)}
    later = put(6, {**WAITING, "state": "processing", "agent_id": 5, "priority": 9}, later_stamps)
    assert attempt.outcome(later) is Outcome.LANDED
    unchanged = put(4, WAITING, stamp(NOW_MS - 10))
    assert attempt.outcome(unchanged) is Outcome.PENDING
    taken = put(5, {**WAITING, "state": "processing", "agent_id": 6}, stamp(NOW_MS + 1))
    assert attempt.outcome(taken) is Outcome.LOST
    assert attempt.outcome(None) is Outcome.LOST
    gone = Entry(UUID, 5, encode_tombstone(stamp(NOW_MS + 1)), Op.DELETE, 0)
    assert attempt.outcome(gone) is Outcome.LOST


def test_a_won_claim_is_this_nodes_change_and_its_echo_changes_nothing() -> None:
    host = Host()
    collection = queue(host)
    collection.on_change(lambda event: None, local=True)
    claim = claim_of({"state": "waiting"}, SCHEMA, state="processing", agent_id=5)
    record, revision = take_stored(collection.sync, claim, put(1, WAITING, stamp(NOW_MS - 10)))
    host.events.clear()
    attempt = Attempt.build(claim, record, revision, host.clock)
    won(collection.sync, attempt, 2)
    entity: Entity = collection.entities[UUID]
    assert entity["state"] == "processing" and entity["agent_id"] == 5 and not meta(entity).dirty
    [event] = host.events
    assert isinstance(event, Change) and event.origin == "local"
    assert event.changes == {"state": ("waiting", "processing"), "agent_id": (None, 5)}
    collection.sync.inbox.apply(Entry(UUID, 2, attempt.value, Op.PUT, 0))  # the watch's echo
    assert len(host.events) == 1


def test_a_local_unflushed_change_of_another_field_survives_a_won_claim() -> None:
    host = Host()
    collection = queue(host)
    claim = claim_of({"state": "waiting"}, SCHEMA, state="processing")
    collection.sync.inbox.apply(put(1, WAITING, stamp(NOW_MS - 10)))
    entity: Entity = collection.entities[UUID]
    host.now_ms += 5
    entity["priority"] = 1  # not flushed yet
    record, revision = take_stored(collection.sync, claim, put(1, WAITING, stamp(NOW_MS - 10)))
    assert entity["priority"] == 1
    won(collection.sync, Attempt.build(claim, record, revision, host.clock), 2)
    assert entity["state"] == "processing" and entity["priority"] == 1 and meta(entity).dirty


def test_a_won_claim_brought_by_the_watch_before_its_acknowledgement_is_still_a_local_change() -> None:
    host = Host()
    collection = queue(host)
    collection.on_change(lambda event: None, local=True)
    claim = claim_of({"state": "waiting"}, SCHEMA, state="processing", agent_id=5)
    record, revision = take_stored(collection.sync, claim, put(1, WAITING, stamp(NOW_MS - 10)))
    host.events.clear()
    attempt = Attempt.build(claim, record, revision, host.clock)
    collection.sync.inbox.expect_own(UUID, attempt.value)
    collection.sync.inbox.apply(Entry(UUID, 2, attempt.value, Op.PUT, 0))  # the watch came first
    won(collection.sync, attempt, 2)
    collection.sync.inbox.expect_own(UUID, None)
    [event] = host.events
    assert isinstance(event, Change) and event.origin == "local"
    assert collection.entities[UUID]["agent_id"] == 5
