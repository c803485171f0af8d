"""Inbox: entries of the bucket merged into memory, each applied by hand."""

from __future__ import annotations

from typing import Any

import pytest

from brainlessdb import MISSING
from brainlessdb.core.clock import hlc_from_ms
from brainlessdb.core.codec import FOREIGN_NODE, encode_entity, encode_tombstone
from brainlessdb.core.meta import meta
from brainlessdb.core.rows import Row
from brainlessdb.core.stamps import field_stamps, shared_stamp
from brainlessdb.core.sync import inbox as inbox_module
from brainlessdb.core.sync.inbox import DEAD_LETTERS_KEPT, DeadLetter
from brainlessdb.core.sync.tombstones import Tombstone
from brainlessdb.errors import StorageError
from brainlessdb.events import Change, Delete
from brainlessdb.storage.base import Entry, Op

from .sync_fakes import (
    OTHER,
    START_MS,
    TIME_NS,
    Node,
    data_of,
    deleted_at,
    marker,
    put,
    raw_put,
    schema_of,
    stamp,
)

SCHEMA = schema_of({"state": {"type": "str"}, "queue": {"type": "int", "required": False, "default": 0}})
EARLY = stamp(START_MS - 1000)
"""A stamp of the other node from before this node's clock starts."""


def loaded(values: dict[str, Any] | None = None, revision: int = 3) -> Node:
    """A node holding ``u-1`` as the other node stored it (at ``EARLY``, ``revision``)."""
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("u-1", revision, values or {"state": "idle", "queue": 1}, EARLY))
    node.forget_calls()
    return node


# -- entries of other nodes ------------------------------------------------------------------------


def test_a_foreign_entry_creates_the_entity_and_a_remote_created_change() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("u-1", 3, {"state": "idle", "queue": 1}, EARLY))
    entity = node.entity("u-1")
    assert meta(entity).data == {"state": "idle", "queue": 1}
    assert meta(entity).revision == 3
    assert not meta(entity).dirty
    assert not node.sync.has_pending()
    assert node.inbox.last_revision == 3
    assert node.changed_calls == []  # nothing to write
    assert node.events == [
        Change("calls", "u-1", entity, {"state": (MISSING, "idle"), "queue": (MISSING, 1)}, "remote", True)
    ]
    [event] = node.events
    assert isinstance(event, Change)
    assert event.changes["state"][0] is MISSING


def test_an_entry_moves_the_clock_past_its_stamps() -> None:
    node = Node(schema=SCHEMA)
    future = stamp(START_MS + 60_000)
    node.inbox.apply(put("u-1", 1, {"state": "idle"}, future))
    assert node.clock.last == future[0]
    entity = node.entity("u-1")
    entity.state = "busy"
    assert field_stamps(entity._stamps, entity._data)["state"] > future  # the local change wins over it


def test_last_revision_is_the_greatest_applied() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("u-1", 5, {"state": "idle"}, EARLY))
    node.inbox.apply(put("u-2", 2, {"state": "idle"}, EARLY))
    assert node.inbox.last_revision == 5
    node.inbox.apply(raw_put("u-3", 9, b"junk"))
    assert node.inbox.last_revision == 9


def test_an_own_write_echoed_back_only_records_the_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(schema=SCHEMA)
    entity = node.add("u-1", {"state": "idle"})
    write = node.take_one()
    node.forget_calls()

    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("an own write is recognised by its bytes, not decoded")

    monkeypatch.setattr(inbox_module, "decode_value", must_not_decode)
    node.inbox.apply(raw_put("u-1", 5, write.value))
    assert meta(entity).revision == 5
    assert meta(entity).data == {"state": "idle", "queue": 0}
    assert meta(entity).dirty  # the acknowledgement is still to come
    assert node.outbox.is_inflight("u-1")
    assert node.events == []
    node.outbox.written(write, 5)
    assert (meta(entity).revision, meta(entity).dirty) == (5, False)


def test_an_echo_of_an_older_write_changes_nothing() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add("u-1", {"state": "idle"})
    first = node.take_one()
    node.outbox.written(first, 5)
    entity.state = "busy"
    second = node.take_one()
    node.inbox.apply(raw_put("u-1", 5, first.value))  # the watch is behind
    assert entity["state"] == "busy"
    assert meta(entity).revision == 5
    node.outbox.written(second, 6)
    node.inbox.apply(raw_put("u-1", 6, second.value))
    assert (entity["state"], meta(entity).revision, meta(entity).dirty) == ("busy", 6, False)


@pytest.mark.parametrize("revision", [2, 3])
def test_an_entry_not_newer_than_the_known_revision_is_ignored(revision: int) -> None:
    node = loaded(revision=3)
    node.inbox.apply(put("u-1", revision, {"state": "gone", "queue": 9}, stamp(START_MS + 5000)))
    entity = node.entity("u-1")
    assert meta(entity).data == {"state": "idle", "queue": 1}
    assert meta(entity).revision == 3
    assert node.events == []


def test_a_newer_version_merges_field_by_field_keeping_an_unflushed_local_change() -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.queue = 2  # local, not flushed (stamped now, after EARLY)
    node.forget_calls()
    newer = stamp(START_MS + 500)
    node.inbox.apply(put("u-2", 1, {"state": "x"}, EARLY))  # another key, to be sure nothing leaks
    node.forget_calls()
    node.inbox.apply(put("u-1", 4, {"state": "busy", "queue": 1}, {"state": newer, "queue": EARLY}))
    assert meta(entity).data == {"state": "busy", "queue": 2}
    assert meta(entity).revision == 4
    assert meta(entity).dirty
    assert node.events == [Change("calls", "u-1", entity, {"state": ("idle", "busy")}, "remote")]
    write = node.take_one()
    assert (write.key, write.expected_revision) == ("u-1", 4)
    assert data_of(write.value) == {"state": "busy", "queue": 2}


def test_entries_keep_the_indexes_current() -> None:
    node = loaded()
    indexes = node.table.indexes

    def source() -> list[tuple[str, Row]]:
        return [(uuid, entity._row) for uuid, entity in node.table.entities.items()]

    assert indexes.first(("state",), "idle", source) == "u-1"  # builds the index
    node.inbox.apply(put("u-1", 4, {"state": "busy", "queue": 1}, stamp(START_MS + 500)))
    assert indexes.first(("state",), "busy", source) == "u-1"
    assert indexes.first(("state",), "idle", source) is None
    node.inbox.apply(put("u-2", 5, {"state": "busy"}, EARLY))
    assert indexes.candidates([], source) is None
    node.inbox.apply(marker("u-1", 6, stamp(START_MS + 600)))
    assert indexes.first(("state",), "busy", source) == "u-2"


def test_a_concurrent_change_of_the_same_field_with_a_greater_stamp_wins() -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"  # stamped at START_MS on prague-1
    node.forget_calls()
    node.inbox.apply(put("u-1", 4, {"state": "away", "queue": 1}, stamp(START_MS + 1)))
    assert entity["state"] == "away"
    assert node.events == [Change("calls", "u-1", entity, {"state": ("busy", "away")}, "remote")]
    # What is stored holds all this node has now: nothing left to write.
    assert not meta(entity).dirty
    assert node.outbox.take_writes() == []


@pytest.mark.parametrize(
    "theirs",
    [stamp(START_MS - 1), stamp(START_MS)],  # older; same time, but "brno-1" < "prague-1"
    ids=["older", "tie broken by node name"],
)
def test_a_concurrent_change_of_the_same_field_with_a_smaller_stamp_loses(theirs: tuple[int, str]) -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"
    node.forget_calls()
    node.inbox.apply(put("u-1", 4, {"state": "away", "queue": 1}, {"state": theirs, "queue": EARLY}))
    assert entity["state"] == "busy"
    assert node.events == []
    assert meta(entity).revision == 4
    write = node.take_one()
    assert write.expected_revision == 4
    assert data_of(write.value) == {"state": "busy", "queue": 1}


def test_a_field_new_to_this_node_reports_missing_as_old_value() -> None:
    node = loaded({"state": "idle"})
    node.inbox.apply(put("u-1", 4, {"state": "idle", "note": "hi"}, stamp(START_MS + 1)))
    entity = node.entity("u-1")
    assert entity["note"] == "hi"
    [event] = node.events
    assert isinstance(event, Change)
    assert event.changes == {"note": (MISSING, "hi")}
    assert event.changes["note"][0] is MISSING


# -- deletes ---------------------------------------------------------------------------------------


def test_a_delete_marker_removes_the_entity_and_emits_a_remote_delete() -> None:
    node = loaded()
    entity = node.entity("u-1")
    deleted = stamp(START_MS + 10)
    node.inbox.apply(marker("u-1", 4, deleted))
    assert "u-1" not in node.table.entities
    assert node.events == [Delete("calls", "u-1", entity, "remote")]
    assert node.sync.tombstones.get("u-1") == Tombstone(deleted, 4, pending=False)
    assert node.clock.last == deleted[0]
    assert not node.sync.has_pending()


def test_a_delete_marker_forgets_a_pending_local_change() -> None:
    node = loaded()
    node.entity("u-1").state = "busy"
    node.inbox.apply(marker("u-1", 4, stamp(START_MS - 10)))  # a delete wins, even an older one
    assert "u-1" not in node.table.entities
    assert not node.outbox.is_dirty("u-1")
    assert node.outbox.take_writes() == []


def test_a_delete_marker_of_an_unknown_uuid_is_remembered_silently() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.apply(marker("u-9", 2, EARLY))
    assert node.sync.is_deleted("u-9")
    assert node.events == []
    node.inbox.apply(put("u-9", 1, {"state": "idle"}, EARLY))  # replayed from before the delete
    assert "u-9" not in node.table.entities


def test_a_foreign_delete_marker_without_body_is_stamped_with_its_time() -> None:
    node = loaded()
    time_ns = (START_MS + 77) * 1_000_000
    node.inbox.apply(Entry("u-1", 4, b"", Op.PURGE, time_ns))
    assert "u-1" not in node.table.entities
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and tomb.stamp == (hlc_from_ms(START_MS + 77), FOREIGN_NODE)


@pytest.mark.parametrize("revision", [3, 4])
def test_puts_after_a_delete_not_newer_than_it_are_ignored(revision: int) -> None:
    node = loaded()
    node.inbox.apply(marker("u-1", 4, EARLY))
    node.forget_calls()
    node.inbox.apply(put("u-1", revision, {"state": "back", "queue": 1}, stamp(START_MS + 100)))
    assert "u-1" not in node.table.entities
    assert node.sync.tombstones.get("u-1") == Tombstone(EARLY, 4, pending=False)
    assert node.wakes == 0
    assert node.events == []
    assert node.outbox.take_writes() == []


def test_a_put_over_a_remembered_delete_makes_the_delete_pending_and_wakes() -> None:
    node = loaded()
    node.inbox.apply(marker("u-1", 4, EARLY))
    node.forget_calls()
    node.inbox.apply(put("u-1", 6, {"state": "back", "queue": 1}, stamp(START_MS + 100)))
    assert "u-1" not in node.table.entities  # a delete wins
    assert node.events == []
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and (tomb.revision, tomb.pending) == (6, True)
    assert node.wakes == 1
    write = node.take_one()
    assert (write.key, write.expected_revision, write.delete) == ("u-1", 6, True)
    assert deleted_at(write.value) == EARLY


def test_a_put_over_a_delete_in_flight_does_not_wake() -> None:
    node = Node(schema=SCHEMA)
    node.add("u-1", {"state": "idle"})
    create = node.take_one()
    node.delete("u-1")
    node.forget_calls()
    node.inbox.apply(raw_put("u-1", 5, create.value))  # the create, stored after all
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and (tomb.revision, tomb.pending) == (5, True)
    assert node.wakes == 0
    assert "u-1" not in node.table.entities
    node.outbox.written(create, 5)
    write = node.take_one()
    assert (write.expected_revision, write.delete) == (5, True)


def test_a_newer_delete_marker_settles_a_pending_delete_and_keeps_the_later_stamp() -> None:
    node = loaded()
    node.delete("u-1")
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and tomb.pending
    mine = tomb.stamp
    later = (mine[0] + 5, OTHER)
    node.inbox.apply(marker("u-1", 4, later))
    assert (tomb.revision, tomb.pending, tomb.stamp) == (4, False, later)
    assert node.outbox.take_writes() == []
    node.inbox.apply(marker("u-1", 5, EARLY))
    assert (tomb.revision, tomb.stamp) == (5, later)  # the greater delete stamp stays


# -- entries that cannot be used -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"_v": 99, "d": {}}', "unsupported format version"),
        (b'{"_v": 1, "s": [1, "x"]}', "missing entity data"),
    ],
)
def test_a_bad_value_becomes_a_dead_letter_and_changes_nothing(value: bytes, reason: str) -> None:
    node = loaded()
    entity = node.entity("u-1")
    node.inbox.apply(raw_put("u-1", 7, value))
    node.inbox.apply(raw_put("u-2", 8, value))
    assert node.inbox.dead_letter_count == 2
    assert node.sync.dead_letter_count == 2
    first, second = node.inbox.dead_letters
    assert (first.key, first.revision, first.value) == ("u-1", 7, value)
    assert reason in first.reason
    assert second == DeadLetter("u-2", 8, value, first.reason)
    assert meta(entity).data == {"state": "idle", "queue": 1}
    assert "u-2" not in node.table.entities
    assert node.events == []
    # The node holding u-1 writes its version over what cannot be used (see test_foreign_writes.py).
    assert node.take_one().expected_revision == 7


def test_dead_letters_are_counted_all_but_kept_up_to_a_limit() -> None:
    node = Node(schema=SCHEMA)
    for revision in range(1, DEAD_LETTERS_KEPT + 3):
        node.inbox.apply(raw_put("u-1", revision, b"?"))
    assert node.inbox.dead_letter_count == DEAD_LETTERS_KEPT + 2
    assert len(node.inbox.dead_letters) == DEAD_LETTERS_KEPT
    assert node.inbox.dead_letters[0].revision == 3


@pytest.mark.parametrize(
    "value",
    [
        encode_entity({"state": 5}, EARLY),  # a type the field does not take
        encode_entity({"state": "idle", "_x": 1}, EARLY),  # a name no field can have
        b'{"state": "idle", "colour": "red"}',  # another client's object with an unknown field
        b'{"state": 1}',  # another client's object with a wrong type
    ],
    ids=["wrong type", "bad field name", "foreign unknown field", "foreign wrong type"],
)
def test_a_value_not_fitting_the_schema_is_a_dead_letter(value: bytes) -> None:
    node = loaded()
    node.inbox.apply(raw_put("u-1", 4, value))
    node.inbox.apply(raw_put("u-2", 5, value))
    assert node.inbox.dead_letter_count == 2
    assert all("does not fit the schema" in letter.reason for letter in node.inbox.dead_letters)
    assert meta(node.entity("u-1")).data == {"state": "idle", "queue": 1}
    assert "u-2" not in node.table.entities
    assert node.events == []
    assert node.take_one().expected_revision == 4  # u-1's version is written over it


def test_a_field_another_node_added_is_taken() -> None:
    """A brainlessdb value may hold a field this node's schema does not know yet (extended elsewhere)."""
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("u-1", 1, {"state": "idle", "colour": "red"}, EARLY))
    assert node.inbox.dead_letter_count == 0
    assert node.entity("u-1")["colour"] == "red"


def test_another_clients_object_is_stamped_with_its_time() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.apply(raw_put("u-1", 1, b'{"state": "idle"}', time_ns=TIME_NS))
    entity = node.entity("u-1")
    # Its complete state: the default where it lacks one.
    assert meta(entity).data == {"state": "idle", "queue": 0}
    assert shared_stamp(entity._stamps) == (hlc_from_ms(START_MS), FOREIGN_NODE)


def test_without_a_schema_anything_decodable_is_taken() -> None:
    node = Node()
    node.inbox.apply(raw_put("u-1", 1, b'{"anything": [1, 2]}'))
    assert meta(node.entity("u-1")).data == {"anything": [1, 2]}


# -- full replays ----------------------------------------------------------------------------------


def test_a_full_replay_drops_stored_entities_it_did_not_see() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("seen", 1, {"state": "idle"}, EARLY))
    node.inbox.apply(put("gone", 2, {"state": "idle"}, EARLY))
    flying = node.add_stored("flying", {"state": "idle"}, 3)
    flying.state = "busy"
    node.take_one()  # in flight
    node.add("new", {"state": "idle"})  # never stored
    gone = node.entity("gone")
    node.forget_calls()

    node.inbox.begin_resync()
    node.inbox.apply(put("seen", 1, {"state": "idle"}, EARLY))
    assert node.inbox.end_resync() == ["gone"]
    assert sorted(node.table.entities) == ["flying", "new", "seen"]
    assert node.events == [Delete("calls", "gone", gone, "remote")]
    tomb = node.sync.tombstones.get("gone")
    assert tomb is not None and (tomb.revision, tomb.pending) == (None, False)
    assert node.outbox.is_dirty("new")
    assert node.inbox.end_resync() == []  # no replay under way


def test_end_resync_without_begin_drops_nothing() -> None:
    node = loaded()
    assert node.inbox.end_resync() == []
    assert "u-1" in node.table.entities


def test_a_replay_counts_dead_letters_and_deletes_as_seen() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("bad", 1, {"state": "idle"}, EARLY))
    node.inbox.apply(put("dead", 2, {"state": "idle"}, EARLY))
    node.inbox.begin_resync()
    node.inbox.apply(raw_put("bad", 3, b"junk"))
    node.inbox.apply(marker("dead", 4, EARLY))
    assert node.inbox.end_resync() == []
    assert meta(node.entity("bad")).revision == 3  # kept, and written over the junk


# -- the journal -----------------------------------------------------------------------------------


def test_restore_of_a_change_of_a_new_entity_writes_it_again() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.restore(
        "u-1", encode_entity({"state": "idle", "queue": 2}, stamp(START_MS - 5, "prague-1")), False
    )
    entity = node.entity("u-1")
    assert meta(entity).data == {"state": "idle", "queue": 2}
    assert meta(entity).revision is None
    assert meta(entity).dirty
    write = node.take_one()
    assert (write.key, write.expected_revision, write.delete) == ("u-1", 0, False)
    assert data_of(write.value) == {"state": "idle", "queue": 2}


def test_restore_of_a_change_merges_into_what_was_loaded() -> None:
    node = loaded()  # queue 1, state idle at EARLY, revision 3
    mine = stamp(START_MS - 5, "prague-1")
    node.inbox.restore(
        "u-1", encode_entity({"state": "busy", "queue": 0}, {"state": mine, "queue": stamp(1)}), False
    )
    entity = node.entity("u-1")
    assert meta(entity).data == {"state": "busy", "queue": 1}
    write = node.take_one()
    assert write.expected_revision == 3
    assert data_of(write.value) == {"state": "busy", "queue": 1}


def test_restore_of_a_delete_of_a_loaded_entity_writes_the_marker() -> None:
    node = loaded()
    mine = stamp(START_MS - 5, "prague-1")
    node.inbox.restore("u-1", encode_tombstone(mine), True)
    assert "u-1" not in node.table.entities
    write = node.take_one()
    assert (write.key, write.expected_revision, write.delete) == ("u-1", 3, True)
    assert deleted_at(write.value) == mine


def test_restore_of_a_delete_of_an_unknown_uuid_writes_the_marker() -> None:
    node = Node(schema=SCHEMA)
    mine = stamp(START_MS - 5, "prague-1")
    node.inbox.restore("u-1", encode_tombstone(mine), True)
    assert node.sync.tombstones.get("u-1") == Tombstone(mine, None, pending=True)
    write = node.take_one()
    assert (write.expected_revision, write.delete) == (0, True)


def test_restore_of_a_change_of_a_deleted_uuid_is_dropped() -> None:
    node = loaded()
    node.inbox.apply(marker("u-1", 4, EARLY))
    node.inbox.restore("u-1", encode_entity({"state": "busy"}, stamp(START_MS - 5, "prague-1")), False)
    assert "u-1" not in node.table.entities
    assert node.outbox.take_writes() == []


# -- errors are reported only while something is pending -------------------------------------------


def test_a_pending_delete_settled_by_its_marker_coming_back_keeps_no_error() -> None:
    """The marker was stored although its write timed out; the watch brings it back: the delete is
    done, and the timeout must not be reported any more (``errors()`` feeds ``flush()``'s FlushError)."""
    node = loaded()
    node.delete("u-1")
    write = node.take_one()
    node.outbox.failed(write, TimeoutError())
    node.inbox.apply(Entry("u-1", 4, write.value, Op.DELETE, TIME_NS))
    assert not node.sync.has_pending()
    assert node.sync.errors() == {}


def test_a_write_failing_after_a_remote_delete_leaves_no_error() -> None:
    """A change in flight when another node's delete arrives, whose write then fails: nothing of the
    uuid is pending, so nothing is to be reported."""
    node = loaded()
    node.entity("u-1").state = "busy"
    write = node.take_one()
    node.inbox.apply(marker("u-1", 4, stamp(START_MS + 10)))
    node.outbox.failed(write, StorageError("timeout"))
    assert not node.sync.has_pending()
    assert node.sync.errors() == {}
