"""Outbox: local changes on their way to the bucket, without a bucket.

Each test drives the outbox as the flusher does (``take_writes``, then ``written`` or ``failed``) and
checks what it hands out and what stays pending.
"""

from __future__ import annotations

import pytest

from brainlessdb.core.codec import encode_tombstone
from brainlessdb.core.meta import meta
from brainlessdb.core.sync.outbox import PendingWrite
from brainlessdb.errors import StorageError
from brainlessdb.events import Delete

from .sync_fakes import Node, data_of, deleted_at, schema_of

SCHEMA = schema_of({"state": {"type": "str"}, "queue": {"type": "int", "required": False, "default": 0}})


def test_an_added_entity_is_dirty_and_announced() -> None:
    node = Node()
    entity = node.add("u-1", {"state": "idle"})
    assert meta(entity).dirty
    assert node.outbox.is_dirty("u-1")
    assert node.outbox.pending_count() == 1
    assert node.outbox.pending_keys() == ["u-1"]
    # The schema inferred from the first add is announced first (None), then the entity.
    assert node.changed_calls == [None, "u-1"]
    assert node.sync.schema.pending


def test_the_first_take_gives_one_create_expecting_no_revision() -> None:
    node = Node(schema=SCHEMA)
    node.add("u-1", {"state": "idle"})
    [write] = node.outbox.take_writes()
    assert isinstance(write, PendingWrite)
    assert (write.key, write.expected_revision, write.delete, write.version) == ("u-1", 0, False, 1)
    assert data_of(write.value) == {"state": "idle", "queue": 0}
    assert node.outbox.is_inflight("u-1")
    assert node.outbox.sent_value("u-1") == write.value


def test_a_write_in_flight_is_not_taken_again() -> None:
    node = Node(schema=SCHEMA)
    node.add("u-1", {"state": "idle"})
    assert len(node.outbox.take_writes()) == 1
    assert node.outbox.take_writes() == []
    assert node.outbox.pending_count() == 1  # still not acknowledged


def test_an_acknowledged_write_makes_the_entity_clean_at_its_revision() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add("u-1", {"state": "idle"})
    write = node.take_one()
    node.outbox.written(write, 5)
    assert meta(entity).revision == 5
    assert not meta(entity).dirty
    assert not node.outbox.is_dirty("u-1")
    assert not node.outbox.is_inflight("u-1")
    assert node.outbox.sent_value("u-1") is None
    assert node.outbox.pending_count() == 0
    assert node.outbox.take_writes() == []


def test_a_change_made_while_in_flight_is_written_after_the_ack() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add("u-1", {"state": "idle"})
    first = node.take_one()
    entity.state = "busy"
    assert node.outbox.take_writes() == []  # the create is still in flight
    node.outbox.written(first, 5)
    assert meta(entity).revision == 5
    assert meta(entity).dirty
    assert node.outbox.is_dirty("u-1")
    second = node.take_one()
    assert (second.key, second.expected_revision, second.version) == ("u-1", 5, 2)
    assert data_of(second.value) == {"state": "busy", "queue": 0}
    node.outbox.written(second, 6)
    assert (meta(entity).revision, meta(entity).dirty, node.outbox.pending_count()) == (6, False, 0)


def test_changes_between_takes_make_one_write_of_the_latest_version() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add_stored("u-1", {"state": "idle"}, 3)
    entity.state = "ringing"
    entity.queue = 4
    entity.state = "busy"
    write = node.take_one()
    assert (write.expected_revision, write.version) == (3, 4)
    assert data_of(write.value) == {"state": "busy", "queue": 4}
    assert node.changed_calls == ["u-1", "u-1", "u-1"]


def test_a_failed_write_stays_pending_with_its_error_and_is_taken_again() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add("u-1", {"state": "idle"})
    write = node.take_one()
    error = StorageError("no responders")
    node.outbox.failed(write, error)
    assert meta(entity).dirty
    assert not node.outbox.is_inflight("u-1")
    assert node.outbox.sent_value("u-1") is None
    assert node.outbox.errors == {"u-1": error}
    assert node.sync.errors() == {"u-1": error}
    assert node.sync.pending_keys() == ["u-1"]
    again = node.take_one()
    assert again == write
    node.outbox.written(again, 2)
    assert node.outbox.errors == {}
    assert node.sync.errors() == {}
    assert not meta(entity).dirty


def test_an_older_ack_does_not_lower_the_revision() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add_stored("u-1", {"state": "idle"}, 3)
    entity.state = "busy"
    write = node.take_one()
    node.outbox.overwrite("u-1", 9)  # the key was seen at 9 meanwhile
    node.outbox.written(write, 4)
    assert meta(entity).revision == 9
    assert not meta(entity).dirty


# -- deletes ---------------------------------------------------------------------------------------


def test_deleting_a_never_stored_entity_writes_no_marker() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add("u-1", {"state": "idle"})
    node.forget_calls()
    assert node.delete("u-1")
    assert "u-1" not in node.table.entities
    assert node.outbox.take_writes() == []
    assert node.outbox.pending_count() == 0
    assert not node.sync.has_pending()
    assert node.sync.is_deleted("u-1")
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and (tomb.revision, tomb.pending) == (None, False)
    assert node.changed_calls == ["u-1"]
    assert node.events == [Delete("calls", "u-1", entity, "local")]


def test_deleting_an_unknown_uuid_does_nothing() -> None:
    node = Node(schema=SCHEMA)
    assert not node.delete("u-1")
    assert node.changed_calls == []
    assert len(node.sync.tombstones) == 0


def test_deleting_a_stored_entity_writes_a_marker_expecting_its_revision() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("u-1", {"state": "idle"}, 4)
    node.delete("u-1")
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and (tomb.revision, tomb.pending) == (4, True)
    assert node.sync.pending_keys() == ["u-1"]
    write = node.take_one()
    assert (write.key, write.expected_revision, write.delete) == ("u-1", 4, True)
    assert write.value == encode_tombstone(tomb.stamp)
    assert deleted_at(write.value) == tomb.stamp
    assert node.outbox.take_writes() == []  # in flight
    node.outbox.written(write, 5)
    assert (tomb.revision, tomb.pending) == (5, False)
    assert not node.sync.has_pending()


def test_a_delete_forgets_the_pending_change_and_its_error() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add_stored("u-1", {"state": "idle"}, 4)
    entity.state = "busy"
    node.outbox.failed(node.take_one(), StorageError("timeout"))
    node.delete("u-1")
    assert not node.outbox.is_dirty("u-1")
    assert node.outbox.errors == {}
    [write] = node.outbox.take_writes()
    assert write.delete


def test_a_create_acknowledged_after_a_local_delete_leaves_the_marker_pending() -> None:
    node = Node(schema=SCHEMA)
    node.add("u-1", {"state": "idle"})
    create = node.take_one()
    node.delete("u-1")
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and tomb.pending  # the create may be stored: a marker must follow
    assert node.outbox.take_writes() == []  # not while the create is in flight
    node.outbox.written(create, 7)
    assert (tomb.revision, tomb.pending) == (7, True)
    marker = node.take_one()
    assert (marker.key, marker.expected_revision, marker.delete) == ("u-1", 7, True)
    node.outbox.written(marker, 8)
    assert (tomb.revision, tomb.pending) == (8, False)
    assert not node.sync.has_pending()


def test_a_create_that_failed_after_a_local_delete_still_writes_the_marker() -> None:
    node = Node(schema=SCHEMA)
    node.add("u-1", {"state": "idle"})
    create = node.take_one()
    node.delete("u-1")
    node.outbox.failed(create, StorageError("timeout"))  # it may have been stored all the same
    marker = node.take_one()
    assert (marker.expected_revision, marker.delete) == (0, True)


# -- the journal -----------------------------------------------------------------------------------


def test_pending_value_and_settled_for_the_journal() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("u-2", {"state": "busy"}, 2)
    entity = node.add("u-1", {"state": "idle"})
    pending = node.outbox.pending_value("u-1")
    assert pending is not None
    value, deleted = pending
    assert not deleted
    assert data_of(value) == {"state": "idle", "queue": 0}
    assert node.outbox.pending_value("u-2") is None
    assert node.outbox.pending_value("nope") is None
    assert node.outbox.settled(["u-1", "u-2", "nope"]) == ["u-2", "nope"]

    node.outbox.written(node.take_one(), 3)
    assert node.outbox.settled(["u-1"]) == ["u-1"]
    assert meta(entity).revision == 3

    node.delete("u-2")
    tomb = node.sync.tombstones.get("u-2")
    assert tomb is not None
    assert node.outbox.pending_value("u-2") == (encode_tombstone(tomb.stamp), True)
    assert node.outbox.settled(["u-1", "u-2"]) == ["u-1"]
    node.outbox.written(node.take_one(), 4)
    assert node.outbox.pending_value("u-2") is None
    assert node.outbox.settled(["u-2"]) == ["u-2"]


# -- overwrite and settle --------------------------------------------------------------------------


def test_overwrite_raises_the_revision_to_write_over() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add_stored("u-1", {"state": "idle"}, 3)
    node.outbox.overwrite("u-1", 8)
    assert meta(entity).revision == 8
    node.outbox.overwrite("u-1", 5)
    assert meta(entity).revision == 8
    node.add_stored("u-2", {"state": "idle"}, 9)
    node.delete("u-2")
    node.outbox.overwrite("u-2", 12)
    tomb = node.sync.tombstones.get("u-2")
    assert tomb is not None and tomb.revision == 12
    node.outbox.overwrite("u-2", 10)
    assert tomb.revision == 12
    node.outbox.overwrite("nope", 4)  # nothing known of it: nothing to do


def test_settle_cleans_a_dirty_entity_unless_in_flight() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add_stored("u-1", {"state": "idle"}, 3)
    entity.state = "busy"
    node.outbox.failed(node.take_one(), StorageError("timeout"))
    node.outbox.settle(entity)
    assert not meta(entity).dirty
    assert node.outbox.errors == {}
    assert node.outbox.take_writes() == []

    entity.state = "away"
    write = node.take_one()
    node.outbox.settle(entity)
    assert meta(entity).dirty  # the write in flight decides
    node.outbox.written(write, 4)
    assert not meta(entity).dirty


@pytest.mark.parametrize("outcome", ["written", "failed"])
def test_release_ends_the_flight_whatever_the_outcome(outcome: str) -> None:
    node = Node(schema=SCHEMA)
    node.add("u-1", {"state": "idle"})
    write = node.take_one()
    if outcome == "written":
        node.outbox.written(write, 1)
    else:
        node.outbox.failed(write, StorageError("x"))
    assert not node.outbox.is_inflight("u-1")
    assert node.outbox.sent_value("u-1") is None


def test_clear_forgets_everything_pending() -> None:
    node = Node(schema=SCHEMA)
    node.add("u-1", {"state": "idle"})
    node.outbox.failed(node.take_one(), StorageError("x"))
    node.add("u-2", {"state": "idle"})
    assert len(node.outbox.take_writes()) == 2
    node.sync.clear()
    assert node.outbox.pending_count() == 0
    assert node.outbox.errors == {}
    assert not node.outbox.is_inflight("u-2")
    assert node.outbox.take_writes() == []
