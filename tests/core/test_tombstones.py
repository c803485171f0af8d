"""Tombstones: the deletes a collection remembers, and what to do with one past its retention."""

from __future__ import annotations

import pytest

from brainlessdb.core.sync.tombstones import ExpiryAction, Tombstone, Tombstones, expiry_action
from brainlessdb.storage.base import Entry, Op

from .sync_fakes import START_MS, Node, put, schema_of, stamp

SCHEMA = schema_of({"state": {"type": "str"}})


def remembered() -> Tombstones:
    tombstones = Tombstones()
    tombstones.add("old", stamp(START_MS - 10_000), 3, pending=False)
    tombstones.add("recent", stamp(START_MS), 4, pending=False)
    tombstones.add("unwritten", stamp(START_MS - 10_000), None, pending=True)
    tombstones.add("never-seen", stamp(START_MS - 20_000), None, pending=False)
    return tombstones


def test_what_is_remembered() -> None:
    tombstones = remembered()
    assert len(tombstones) == 4
    assert "old" in tombstones
    assert "other" not in tombstones
    assert tombstones.get("old") == Tombstone(stamp(START_MS - 10_000), 3, pending=False)
    assert tombstones.get("other") is None
    assert [uuid for uuid, _ in tombstones.pending()] == ["unwritten"]
    assert tombstones.pending_count() == 1
    assert tombstones.is_settled("old")
    assert tombstones.is_settled("other")
    assert not tombstones.is_settled("unwritten")


def test_add_replaces_what_was_remembered() -> None:
    tombstones = remembered()
    tombstones.add("old", stamp(START_MS), 9, pending=True)
    assert tombstones.get("old") == Tombstone(stamp(START_MS), 9, pending=True)
    assert len(tombstones) == 4


def test_expired_lists_only_written_deletes_older_than_the_cutoff() -> None:
    tombstones = remembered()
    assert tombstones.expired(START_MS - 5_000) == [("old", 3), ("never-seen", None)]
    assert tombstones.expired(START_MS - 10_000) == [("never-seen", None)]  # not older: kept
    assert tombstones.expired(START_MS + 1) == [("old", 3), ("recent", 4), ("never-seen", None)]
    assert tombstones.expired(START_MS - 30_000) == []


def test_forget_keeps_a_pending_delete() -> None:
    tombstones = remembered()
    tombstones.forget("old")
    tombstones.forget("unwritten")
    tombstones.forget("other")
    assert "old" not in tombstones
    assert "unwritten" in tombstones
    assert len(tombstones) == 3


def test_delete_again_makes_a_delete_pending_over_the_revision_given() -> None:
    tombstones = remembered()
    tombstones.delete_again("old", 8)
    assert tombstones.get("old") == Tombstone(stamp(START_MS - 10_000), 8, pending=True)
    assert tombstones.expired(START_MS) == [("never-seen", None)]
    tombstones.delete_again("other", 8)
    assert "other" not in tombstones


def test_clear_forgets_every_delete() -> None:
    tombstones = remembered()
    tombstones.clear()
    assert len(tombstones) == 0
    assert tombstones.pending_count() == 0


# -- expiry_action ---------------------------------------------------------------------------------


def entry(revision: int, op: Op) -> Entry:
    return Entry("u-1", revision, b"", op, 0)


@pytest.mark.parametrize(
    ("revision", "current", "action"),
    [
        (5, None, ExpiryAction.FORGET),
        (None, None, ExpiryAction.FORGET),
        (5, entry(3, Op.PUT), ExpiryAction.DELETE_AGAIN),
        (5, entry(7, Op.PUT), ExpiryAction.KEEP),
        (5, entry(5, Op.PUT), ExpiryAction.KEEP),
        (None, entry(1, Op.PUT), ExpiryAction.KEEP),
        (5, entry(7, Op.DELETE), ExpiryAction.KEEP),
        (5, entry(5, Op.DELETE), ExpiryAction.REMOVE_MARKER),
        (5, entry(5, Op.PURGE), ExpiryAction.REMOVE_MARKER),
        (5, entry(3, Op.DELETE), ExpiryAction.REMOVE_MARKER),
        (None, entry(4, Op.DELETE), ExpiryAction.REMOVE_MARKER),
    ],
    ids=[
        "marker gone",
        "marker gone, never seen",
        "older put brought back",
        "newer put",
        "put at the delete's revision",
        "put, delete never seen stored",
        "newer delete marker",
        "the same marker",
        "the same purge marker",
        "an older marker",
        "a marker, delete never seen stored",
    ],
)
def test_expiry_action(revision: int | None, current: Entry | None, action: ExpiryAction) -> None:
    assert expiry_action(revision, current) is action


# -- through the sync state ------------------------------------------------------------------------


def test_delete_again_through_the_sync_state_writes_the_marker_over_the_old_version() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("u-1", {"state": "idle"}, 3)
    node.delete("u-1")
    node.outbox.written(node.take_one(), 4)
    assert not node.sync.has_pending()
    node.sync.delete_again("u-1", 3)  # the server brought back the version at 3
    write = node.take_one()
    assert (write.key, write.expected_revision, write.delete) == ("u-1", 3, True)
    node.outbox.written(write, 9)
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and (tomb.revision, tomb.pending) == (9, False)


def test_delete_again_leaves_a_delete_in_flight_alone() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("u-1", {"state": "idle"}, 3)
    node.delete("u-1")
    write = node.take_one()
    node.sync.delete_again("u-1", 1)
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and tomb.revision == 3
    node.outbox.written(write, 4)
    assert not node.sync.has_pending()


def test_a_forgotten_delete_lets_the_uuid_live_again() -> None:
    node = Node(schema=SCHEMA)
    node.add_stored("u-1", {"state": "idle"}, 3)
    node.delete("u-1")
    node.outbox.written(node.take_one(), 4)
    assert node.sync.is_deleted("u-1")
    node.sync.tombstones.forget("u-1")
    assert not node.sync.is_deleted("u-1")
    node.inbox.apply(put("u-1", 10, {"state": "new"}, stamp(START_MS + 1)))
    assert node.entity("u-1")["state"] == "new"
