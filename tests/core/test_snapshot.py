"""Snapshots, without I/O: the file round trip, what is refused as corrupt or foreign, when a snapshot may
stand for a replay, and the law that makes warm restarts safe: a snapshot of memory after the entries up to
revision ``k``, restored and followed by the entries after ``k``, gives exactly what a full replay gives."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb import meta
from brainlessdb.core import snapshot, snapshot_format
from brainlessdb.core.clock import Stamp
from brainlessdb.core.codec import encode_entity
from brainlessdb.core.collection import Collection
from brainlessdb.core.merge import Extras
from brainlessdb.errors import DecodeError
from brainlessdb.storage.base import Entry, Op
from tests.core.host_fakes import Host
from tests.core.sync_fakes import START_MS, marker, put, stamp
from tests.helpers import stored_state

EXPECTED = snapshot.Expected(
    namespace="ns",
    collection="call",
    bucket="ns-call",
    origin="2026-12-03T10:00:00+00:00",
    first_revision=1,
    last_revision=10,
    schema_version=None,
    now_ms=START_MS + 1000,
    retention_ms=86_400_000,
)


def collection() -> Collection[Any]:
    return Collection(Host(), "call")  # type: ignore[arg-type]  # the fake host has what a collection calls


def capture(source: Collection[Any], revision: int) -> snapshot_format.CollectionSnapshot:
    return snapshot.capture(
        source,
        namespace="ns",
        bucket="ns-call",
        origin=EXPECTED.origin,
        revision=revision,
        now_ms=START_MS,
    )


def loaded(entries: list[Entry]) -> Collection[Any]:
    """A collection that applied ``entries`` in order."""
    target = collection()
    for entry in entries:
        target.sync.inbox.apply(entry)
    return target


def state(source: Collection[Any]) -> tuple[Any, ...]:
    """Everything a replay puts in memory: fields, stored versions (stamps, extras), revisions, deletes."""
    return stored_state(source)


ENTRIES = [
    put("a", 1, {"state": "ringing", "caller": {"city": "Brno"}}, stamp(START_MS)),
    put("b", 2, {"state": "idle", "caller": {}}, stamp(START_MS + 1)),
    put("a", 3, {"state": "talking", "caller": {"city": "Brno"}}, stamp(START_MS + 2)),
    marker("b", 4, stamp(START_MS + 3)),
]


def test_a_snapshot_file_round_trips() -> None:
    taken = capture(loaded(ENTRIES), 4)
    assert snapshot_format.decode(snapshot_format.encode(taken)) == taken
    assert [item.uuid for item in taken.entities] == ["a"]
    assert [(item.uuid, item.revision) for item in taken.deletes] == [("b", 4)]


def test_restoring_a_snapshot_gives_the_memory_it_was_taken_of() -> None:
    source = loaded(ENTRIES)
    restored = collection()
    snapshot.restore(restored, snapshot_format.decode(snapshot_format.encode(capture(source, 4))))
    assert state(restored) == state(source)
    assert meta(restored["a"]).revision == 3
    assert restored.sync.is_deleted("b")


# Entities lacking fields (a row holds MISSING there, or ends before them) and stamped apart per field.
SPARSE = [
    put("a", 1, {"state": "ringing", "queue": None}, stamp(START_MS)),
    put("b", 2, {"caller": {"city": "Brno"}}, stamp(START_MS + 1)),
    put(
        "c", 3, {"state": "idle", "caller": {}}, {"state": stamp(START_MS + 2), "caller": stamp(START_MS + 3)}
    ),
]


@pytest.mark.parametrize("order", [[], ["caller", "queue", "state"], ["agent", "state"]])
def test_rows_are_restored_in_the_order_of_the_layout_restoring_them(order: list[str]) -> None:
    """Rows lacking fields come back lacking them, also where the restoring collection's layout gives the
    fields other positions (or has more of them) than the one that took the snapshot."""
    source = loaded(SPARSE)
    taken = snapshot_format.decode(snapshot_format.encode(capture(source, 3)))
    assert taken.fields == ["state", "queue", "caller"]
    restored = collection()
    for name in order:
        restored._table.layout.position(name)
    snapshot.restore(restored, taken)
    assert state(restored) == state(source)
    assert "caller" not in restored["a"] and "state" not in restored["b"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum"),
        (lambda data: b"not a snapshot at all, just some text", "not a snapshot"),
        (lambda data: b"", "truncated"),
        (lambda data: data[:7] + b"\x01" + data[8:], "format 1"),  # the format before rows
        (lambda data: data[:7] + b"\x03" + data[8:], "format 3"),
    ],
)
def test_a_damaged_or_foreign_file_is_refused(damage: Any, message: str) -> None:
    data = snapshot_format.encode(capture(loaded(ENTRIES), 4))
    with pytest.raises(DecodeError, match=message):
        snapshot_format.decode(damage(data))


def test_content_of_another_format_version_is_refused() -> None:
    later = capture(loaded(ENTRIES), 4)
    later.format = snapshot_format.FORMAT + 1
    with pytest.raises(DecodeError, match="format"):
        snapshot_format.decode(snapshot_format.encode(later))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"namespace": "other"}, "namespace 'ns'"),
        ({"bucket": "other-call"}, "collection"),
        ({"origin": "2026-12-03T11:00:00+00:00"}, "recreated"),
        ({"last_revision": 3}, "recreated"),
        ({"schema_version": 2}, "schema version"),
        ({"now_ms": START_MS + 86_400_001}, "older than the delete retention"),
        ({"first_revision": 6}, "no longer holds"),
        ({"first_revision": 5}, None),
    ],
)
def test_a_snapshot_stands_for_a_replay_only_of_the_same_bucket_and_recent_history(
    change: dict[str, Any], reason: str | None
) -> None:
    taken = capture(loaded(ENTRIES), 4)
    found = snapshot.unusable(taken, dataclasses.replace(EXPECTED, **change))
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_a_pending_change_is_left_to_the_bucket() -> None:
    source = loaded(ENTRIES)
    source["a"].state = "held"  # not acknowledged: the snapshot must not hold it
    source.add(state="new", caller={})  # never stored
    taken = capture(source, 4)
    assert taken.entities == []
    assert taken.refetch[0] == "a" and len(taken.refetch) == 2


# -- the law: snapshot + later entries == full replay --------------------------------------------------

KEYS = ["k0", "k1", "k2", "k3", "k4"]
FIELDS = ["state", "queue", "caller"]
values = st.one_of(st.integers(-3, 3), st.sampled_from(["idle", "ringing"]), st.none(), st.just({"a": 1}))
operations = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.one_of(st.none(), st.dictionaries(st.sampled_from(FIELDS), values, min_size=1)),
        st.integers(0, 40),  # ms after START_MS
        st.sampled_from(["prague-1", "brno-1"]),
    ),
    max_size=25,
)


def bucket_of(ops: list[tuple[str, dict[str, Any] | None, int, str]]) -> list[Entry]:
    """The entries nodes write for ``ops`` (each a merge of what the key holds with a change; ``None`` a
    delete), in revision order: what a bucket with every revision kept holds."""
    stored: dict[str, tuple[dict[str, Any], dict[str, Stamp]] | None] = {}
    entries: list[Entry] = []
    for revision, (key, fields, ms, node) in enumerate(ops, start=1):
        change_stamp = stamp(START_MS + ms, node)
        current = stored.get(key, ({}, {}))
        if current is None:
            continue  # deleted: a delete is final
        if fields is None:
            stored[key] = None
            entries.append(marker(key, revision, change_stamp))
            continue
        data, stamps = dict(current[0]), dict(current[1])
        for name, value in fields.items():
            if name not in stamps or change_stamp > stamps[name]:
                data[name], stamps[name] = value, change_stamp
        stored[key] = (data, stamps)
        entries.append(put(key, revision, data, stamps))
    return [dataclasses.replace(entry, revision=index) for index, entry in enumerate(entries, start=1)]


def last_per_key(entries: list[Entry]) -> list[Entry]:
    """What a full replay delivers: the last entry of every key, in revision order."""
    last = {entry.key: entry for entry in entries}
    return sorted(last.values(), key=lambda entry: entry.revision)


@given(ops=operations, cut=st.integers(0, 25))
def test_a_snapshot_then_the_later_entries_equal_a_full_replay(
    ops: list[tuple[str, dict[str, Any] | None, int, str]], cut: int
) -> None:
    entries = bucket_of(ops)
    cut = min(cut, len(entries))
    # The node that took the snapshot: it followed the bucket up to revision ``cut``.
    before = loaded(last_per_key(entries[:cut]))
    restarted = collection()
    snapshot.restore(restarted, snapshot_format.decode(snapshot_format.encode(capture(before, cut))))
    for entry in entries[cut:]:
        restarted.sync.inbox.apply(entry)
    assert state(restarted) == state(loaded(last_per_key(entries)))


def test_a_restore_tells_listeners_and_the_clock_what_a_replay_tells_them() -> None:
    entries = [*ENTRIES, put("c", 5, {"state": "late"}, stamp(START_MS + 60_000))]
    taken = snapshot_format.decode(snapshot_format.encode(capture(loaded(entries), 5)))
    restored, replayed = collection(), collection()
    for target in (restored, replayed):
        target.on_change(lambda event: None)
    snapshot.restore(restored, taken)
    for entry in last_per_key(entries):
        replayed.sync.inbox.apply(entry)
    told = [[(event.uuid, event.changes) for event in target._host.events] for target in (restored, replayed)]
    assert told[0] == told[1] and len(told[0]) == 2
    # Changes made after the restore win over everything restored, as after a replay.
    assert restored._host.clock.tick() > stamp(START_MS + 60_000, "prague-1")
    assert restored.sync.inbox.last_revision == 5


def test_fields_messagepack_cannot_hold_are_kept_as_stored_versions() -> None:
    # "big" lacks "caller", which the layout places between its fields: its row marks it missing.
    source = loaded(
        [*ENTRIES[:1], put("big", 1, {"n": 2**70, "state": "idle"}, stamp(START_MS)), *ENTRIES[1:]]
    )
    taken = snapshot_format.decode(snapshot_format.encode(capture(source, 4)))
    assert {item.uuid: item.value is not None for item in taken.entities} == {"big": True, "a": False}
    restored = collection()
    snapshot.restore(restored, taken)
    assert state(restored) == state(source)
    assert meta(restored["big"]).data["n"] == 2**70


def test_a_restore_into_memory_that_holds_some_entities_merges_them() -> None:
    taken = snapshot_format.decode(snapshot_format.encode(capture(loaded(ENTRIES), 4)))
    restored = loaded(ENTRIES[:2])  # an attach tried again after a partial restore: "a" and "b" held
    restored._host.now_ms = START_MS + 100
    restored["a"].state = "mine"  # a local change, later than every stored one, not written yet
    snapshot.restore(restored, taken)
    assert meta(restored["a"]).data == {"state": "mine", "caller": {"city": "Brno"}}
    assert meta(restored["a"]).revision == 3
    assert restored.sync.is_deleted("b")
    assert "b" not in restored


def test_an_entity_past_its_deadline_at_the_restart_is_deleted_as_a_replay_deletes_it() -> None:
    deadline = START_MS + 500
    expiring = Entry(
        "e",
        5,
        encode_entity({"state": "idle"}, stamp(START_MS), Extras(expiry=(deadline, stamp(START_MS)))),
        Op.PUT,
        0,
    )
    entries = [*ENTRIES, expiring]
    taken = snapshot_format.decode(snapshot_format.encode(capture(loaded(entries), 5)))
    assert [item.uuid for item in taken.entities if item.value is not None] == ["e"]  # kept as stored
    restored, replayed = collection(), collection()
    for target in (restored, replayed):
        target._host.now_ms = deadline + 1
    snapshot.restore(restored, taken)
    for entry in last_per_key(entries):
        replayed.sync.inbox.apply(entry)
    assert "e" not in restored
    assert state(restored) == state(replayed)


def test_indexes_built_before_a_restore_hold_the_restored_entities() -> None:
    restored = collection()
    assert list(restored._selection.select({"state": "idle"})) == []  # builds the index on state
    snapshot.restore(restored, snapshot_format.decode(snapshot_format.encode(capture(loaded(SPARSE), 3))))
    assert [meta(entity).uuid for entity in restored._selection.select({"state": "idle"})] == ["c"]


def test_stamps_packed_by_another_process_are_read_with_its_node_names() -> None:
    """A snapshot's stamps are packed with the node names of the process that took it, in its order: a
    process that packs them in another order (or knows other names first) restores the same stamps."""
    source = loaded(SPARSE)
    taken = snapshot_format.decode(snapshot_format.encode(capture(source, 3)))
    elsewhere = ["elsewhere-1", *reversed(taken.nodes)]  # the taking process's own table, another order
    moved = {index: elsewhere.index(node) for index, node in enumerate(taken.nodes)}
    for item in taken.entities:
        assert item.node is not None
        item.node = moved[item.node]
    taken.nodes = elsewhere
    restored = collection()
    snapshot.restore(restored, taken)
    assert state(restored) == state(source)


def test_a_stamp_the_stored_format_cannot_hold_is_refused_with_the_file() -> None:
    taken = capture(loaded(ENTRIES), 4)
    taken.entities[0].hlc = -1  # would read as a packed stamp of another form
    with pytest.raises(DecodeError, match="unreadable"):
        snapshot_format.decode(snapshot_format.encode(taken))
