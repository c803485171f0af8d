"""One answer for every write another client makes into a bucket, without a database or an event loop.

Whatever a client other than BrainlessDB puts on a key (a whole object, a partial one, one that breaks
the schema, bytes that are not JSON), every node ends with the same entities and the same data, whether
it held the entity when the put came or loads the bucket afterwards: another client's object is the
entity's complete state at the time NATS stored it, and what cannot be used is a dead letter everywhere,
written over by the nodes that hold a version of the entity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from brainlessdb.core.clock import Stamp, hlc_from_ms
from brainlessdb.core.codec import FOREIGN_NODE
from brainlessdb.core.meta import meta
from brainlessdb.core.stamps import field_stamps
from brainlessdb.core.sync.outbox import PendingWrite
from brainlessdb.storage.base import Entry, Op

from .sync_fakes import OTHER, START_MS, TIME_NS, Node, data_of, put, raw_put, schema_of, stamp

SCHEMA = schema_of(
    {
        "state": {"type": "str"},
        "queue": {"type": "int", "required": False, "default": 0},
        "agent": {"type": "int", "required": False, "nullable": True, "default": None},
    }
)
EARLY = stamp(START_MS - 1000)
"""A stamp of the other node from before the foreign writes (which NATS stamps at ``START_MS``)."""
FOREIGN = (hlc_from_ms(START_MS), FOREIGN_NODE)
"""The stamp of another client's put stored at ``TIME_NS``."""


def holding(values: dict[str, Any] | None = None, *, node: str = "prague-1", revision: int = 3) -> Node:
    """A node holding ``u-1`` as the other node stored it (at ``EARLY``, ``revision``)."""
    held = Node(node, schema=SCHEMA)
    held.inbox.apply(put("u-1", revision, values or {"state": "idle", "queue": 1, "agent": 7}, EARLY))
    held.forget_calls()
    return held


def fresh(*entries: Entry) -> Node:
    """A node that starts after ``entries`` were stored and loads them."""
    loaded = Node("fresh-1", schema=SCHEMA)
    for entry in entries:
        loaded.inbox.apply(entry)
    return loaded


def state_of(node: Node) -> dict[str, tuple[dict[str, Any], dict[str, Stamp]]]:
    """What a node holds: per uuid, the data and the stamp of each field."""
    return {
        uuid: (meta(entity).data, dict(field_stamps(entity._stamps, entity._data)))
        for uuid, entity in node.table.entities.items()
    }


def stored_entry(write: PendingWrite, revision: int) -> Entry:
    return Entry(write.key, revision, write.value, Op.DELETE if write.delete else Op.PUT, TIME_NS)


# -- another client's object is the entity's complete state ----------------------------------------


def test_a_partial_object_is_the_complete_state_on_a_running_node_and_on_a_fresh_one() -> None:
    running = holding()
    entry = raw_put("u-1", 4, b'{"state": "busy"}')
    running.inbox.apply(entry)
    # The fields it lacks are gone at its stamp: an optional field takes its default.
    assert meta(running.entity("u-1")).data == {"state": "busy", "queue": 0, "agent": None}
    assert state_of(running) == state_of(fresh(entry))
    assert set(field_stamps(running.entity("u-1")._stamps, running.entity("u-1")._data).values()) == {FOREIGN}
    # The bucket holds what the node holds: nothing to write back.
    assert running.outbox.take_writes() == []
    assert not meta(running.entity("u-1")).dirty


def test_a_field_changed_after_the_foreign_put_is_kept_and_written_back() -> None:
    """A node whose clock runs ahead changed ``queue`` after (in stamps) the other client's put: the
    bucket lacks that change, so the node writes its merge over the put, and a fresh node takes it."""
    running = holding()
    running.now_ms = START_MS + 5_000
    running.entity("u-1").queue = 5
    write = running.take_one()
    running.outbox.written(write, 4)
    entry = raw_put("u-1", 5, b'{"state": "busy", "agent": 9}')
    running.inbox.apply(entry)
    assert meta(running.entity("u-1")).data == {"state": "busy", "queue": 5, "agent": 9}
    again = running.take_one()
    assert again.expected_revision == 5
    assert data_of(again.value) == {"state": "busy", "queue": 5, "agent": 9}
    late = fresh(entry)
    assert meta(late.entity("u-1")).data == {"state": "busy", "queue": 0, "agent": 9}
    late.inbox.apply(stored_entry(again, 6))
    assert state_of(late) == state_of(running)
    assert late.outbox.take_writes() == []


def test_a_new_key_from_another_client_is_completed_with_the_defaults() -> None:
    running = holding()
    entry = raw_put("u-2", 4, b'{"state": "new", "agent": null}')
    running.inbox.apply(entry)
    assert meta(running.entity("u-2")).data == {"state": "new", "agent": None, "queue": 0}
    assert state_of(running) == state_of(
        fresh(put("u-1", 3, {"state": "idle", "queue": 1, "agent": 7}, EARLY), entry)
    )


def test_without_a_schema_a_foreign_object_is_taken_as_it_is() -> None:
    node = Node()
    node.inbox.apply(raw_put("u-1", 1, b'{"anything": [1, 2]}'))
    assert meta(node.entity("u-1")).data == {"anything": [1, 2]}


# -- what cannot be used is a dead letter everywhere, and written over --------------------------------


UNUSABLE: Final = {
    "lacks a required field": b'{"queue": 2}',
    "a wrong type": b'{"state": 5}',
    "an unknown field": b'{"state": "busy", "colour": "red"}',
    "a null where none is allowed": b'{"state": null}',
    "not JSON": b"{garbage",
    "a JSON list": b"[1, 2]",
    "a version lacking a required field": b'{"_v": 2, "d": {"queue": 2}, "s": [1735689600000, 0, "x"]}',
}


def test_an_unusable_put_over_a_held_entity_is_a_dead_letter_written_over_everywhere() -> None:
    for what, value in UNUSABLE.items():
        running = holding()
        before = state_of(running)
        entry = raw_put("u-1", 4, value)
        running.inbox.apply(entry)
        assert running.inbox.dead_letter_count == 1, what
        assert state_of(running) == before, what
        assert running.events == [], what
        # The node writes its version over it, on its revision.
        write = running.take_one()
        assert (write.key, write.expected_revision) == ("u-1", 4), what
        assert data_of(write.value) == {"state": "idle", "queue": 1, "agent": 7}, what
        # A node loading the bucket now sets it aside too, then takes the version written over it.
        late = fresh(entry)
        assert late.inbox.dead_letter_count == 1, what
        assert "u-1" not in late.table.entities, what
        late.inbox.apply(stored_entry(write, 5))
        running.outbox.written(write, 5)
        assert state_of(late) == state_of(running), what
        assert not running.sync.has_pending() and not late.sync.has_pending(), what


def test_an_unusable_put_that_no_node_holds_is_a_dead_letter_and_nothing_else() -> None:
    for what, value in UNUSABLE.items():
        running = holding()
        running.inbox.apply(raw_put("u-2", 4, value))
        assert running.inbox.dead_letter_count == 1, what
        assert "u-2" not in running.table.entities, what
        assert running.outbox.take_writes() == [], what


def test_an_unusable_put_over_a_deleted_entity_gets_the_delete_written_again() -> None:
    running = holding()
    running.delete("u-1")
    marker = running.take_one()
    running.outbox.written(marker, 4)
    running.inbox.apply(raw_put("u-1", 5, b"{garbage"))
    assert running.inbox.dead_letter_count == 1
    again = running.take_one()
    assert (again.key, again.expected_revision, again.delete, again.value) == ("u-1", 5, True, marker.value)


def test_a_put_over_a_delete_in_flight_gets_the_delete_written_again() -> None:
    """While this node's delete is in flight, the watch brings another client's delete (so the delete is
    stored), then its put of the uuid: the delete must still be written over the put."""
    for value in (b'{"state": "back"}', b"{garbage"):
        running = holding()
        running.delete("u-1")
        marker = running.take_one()  # in flight, expecting revision 3
        running.inbox.apply(Entry("u-1", 4, b"", Op.DELETE, TIME_NS))
        entry = raw_put("u-1", 5, value)
        running.inbox.apply(entry)
        running.sync.conflicted(marker, entry)
        again = running.take_one()
        assert (again.key, again.expected_revision, again.delete) == ("u-1", 5, True), value


def test_an_older_entry_that_cannot_be_used_is_not_written_over_again() -> None:
    running = holding(revision=6)
    running.inbox.apply(raw_put("u-1", 5, b"{garbage"))
    assert running.outbox.take_writes() == []


def test_a_version_missing_a_required_field_never_creates_an_entity() -> None:
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("u-1", 1, {"queue": 1}, EARLY))
    # As many fields as the schema has, one of them unknown here: still one missing.
    node.inbox.apply(put("u-2", 2, {"queue": 1, "agent": 2, "colour": "red"}, EARLY))
    assert node.table.entities == {}
    assert node.inbox.dead_letter_count == 2
    assert all("missing required field 'state'" in letter.reason for letter in node.inbox.dead_letters)


def test_a_stored_version_holds_every_field_when_it_holds_as_many_and_none_unknown() -> None:
    assert SCHEMA.check_stored_version({"state": "a", "queue": 1, "agent": None})
    assert not SCHEMA.check_stored_version({"state": "a", "queue": 1})
    assert not SCHEMA.check_stored_version({"state": "a", "queue": 1, "colour": "red"})
    assert not SCHEMA.check_stored_version({"state": "a", "queue": 1, "agent": 2, "colour": "red"})


# -- a stored version behind what a node holds is written back --------------------------------------


def test_a_version_from_a_node_that_did_not_know_a_field_is_completed_by_a_write_back() -> None:
    running = holding({"state": "idle", "queue": 1, "agent": 7, "colour": "red"})
    running.inbox.apply(put("u-1", 4, {"state": "busy", "queue": 1, "agent": 7}, stamp(START_MS)))
    write = running.take_one()
    assert write.expected_revision == 4
    assert data_of(write.value) == {"state": "busy", "queue": 1, "agent": 7, "colour": "red"}


def test_a_version_holding_everything_the_node_has_is_not_written_back() -> None:
    running = holding()
    running.inbox.apply(put("u-1", 4, {"state": "busy", "queue": 1, "agent": 7}, stamp(START_MS)))
    assert running.outbox.take_writes() == []


def test_a_version_a_javascript_client_rewrote_is_not_a_change_and_not_written_back() -> None:
    running = holding({"state": "idle", "queue": 1, "agent": 7})
    running.inbox.apply(raw_put("u-1", 4, b'{"_v":2,"d":{"state":"idle","queue":1,"agent":7},"s":[1,0,"x"]}'))
    running.forget_calls()
    running.inbox.apply(raw_put("u-2", 5, b'{"_v":2,"d":{"state":"a","queue":3,"agent":null},"s":[1,0,"x"]}'))
    # A float field's 2.0 comes back as 2 from JSON.stringify: same stamp, same number.
    float_schema = schema_of({"state": {"type": "str"}, "price": {"type": "float"}})
    node = Node(schema=float_schema)
    node.inbox.apply(raw_put("u-3", 1, b'{"_v":2,"d":{"state":"a","price":2.0},"s":[1,0,"x"]}'))
    node.forget_calls()
    node.inbox.apply(raw_put("u-3", 2, b'{"_v":2,"d":{"price":2,"state":"a"},"s":[1,0,"x"]}'))
    assert node.events == []
    assert meta(node.entity("u-3")).data == {"state": "a", "price": 2.0}
    assert type(meta(node.entity("u-3")).data["price"]) is float
    assert node.outbox.take_writes() == []
    assert node.inbox.dead_letter_count == 0


# -- the property: every node, running or fresh, ends with the same --------------------------------


UUIDS: Final = ("u-1", "u-2")
FOREIGN_VALUES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "state": st.one_of(st.sampled_from(["idle", "busy"]), st.none(), st.integers(0, 1)),
            "queue": st.integers(0, 3),
            "agent": st.one_of(st.none(), st.integers(0, 3)),
            "colour": st.just("red"),
        },
    ).map(msgspec.json.encode),
    st.sampled_from([b"{garbage", b"[1]", b'"text"', b""]),
)


@dataclass
class Running:
    """A node that was running all along, and how far it has read the bucket's log."""

    node: Node
    read: int = 0
    sent: list[PendingWrite] = field(default_factory=list)


class OneAnswer(RuleBasedStateMachine):
    """Two running nodes, a bucket, and another client putting anything on its keys at any time.

    The nodes change fields, delete, flush and read the bucket's log in any interleaving. Whenever all
    is let settle (every write sent, every entry read), both nodes and a node that loads the bucket afresh
    hold the same entities with the same data and stamps, and the bucket holds it too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.nodes = [Running(Node("prague-1", schema=SCHEMA)), Running(Node(OTHER, schema=SCHEMA))]
        self.log: list[Entry] = []
        self.last: dict[str, Entry] = {}
        self.nats_ms = START_MS
        self.added: set[str] = set()  # uuids are never reused: each is added once, by one node

    # -- the nodes ---------------------------------------------------------------------------------

    @rule(which=st.integers(0, 1), uuid=st.sampled_from(UUIDS), state=st.sampled_from(["a", "b"]))
    def add_or_set(self, which: int, uuid: str, state: str) -> None:
        node = self.nodes[which].node
        if uuid in node.table.entities:
            node.entity(uuid).state = state
        elif uuid not in self.added and uuid not in self.last:
            node.add(uuid, {"state": state})
            self.added.add(uuid)

    @rule(which=st.integers(0, 1), uuid=st.sampled_from(UUIDS), queue=st.integers(0, 3))
    def set_queue(self, which: int, uuid: str, queue: int) -> None:
        node = self.nodes[which].node
        if uuid in node.table.entities:
            node.entity(uuid).queue = queue

    @rule(which=st.integers(0, 1), uuid=st.sampled_from(UUIDS))
    def delete(self, which: int, uuid: str) -> None:
        self.nodes[which].node.delete(uuid)

    @rule(which=st.integers(0, 1), ms=st.integers(-3, 5))
    def time_passes(self, which: int, ms: int) -> None:
        """The node's clock moves (or is set back, as skew); so does NATS's, independently."""
        self.nodes[which].node.now_ms += ms
        self.nats_ms += 1

    @rule(which=st.integers(0, 1))
    def flush(self, which: int) -> None:
        running = self.nodes[which]
        running.sent.extend(running.node.outbox.take_writes())

    @rule(which=st.integers(0, 1))
    def writes_arrive(self, which: int) -> None:
        running = self.nodes[which]
        for write in running.sent:
            self._store(running.node, write)
        running.sent = []

    @rule(which=st.integers(0, 1), count=st.integers(1, 3))
    def read(self, which: int, count: int) -> None:
        running = self.nodes[which]
        for entry in self.log[running.read : running.read + count]:
            running.node.inbox.apply(entry)
        running.read = min(len(self.log), running.read + count)

    # -- another client ----------------------------------------------------------------------------

    @rule(uuid=st.sampled_from(UUIDS), value=FOREIGN_VALUES)
    def another_client_puts(self, uuid: str, value: bytes) -> None:
        self._append(Entry(uuid, len(self.log) + 1, value, Op.PUT, self.nats_ms * 1_000_000))

    @rule(uuid=st.sampled_from(UUIDS))
    def another_client_deletes(self, uuid: str) -> None:
        self._append(Entry(uuid, len(self.log) + 1, b"", Op.DELETE, self.nats_ms * 1_000_000))

    # -- settling ----------------------------------------------------------------------------------

    @rule()
    def settle(self) -> None:
        for _ in range(20):
            busy = False
            for running in self.nodes:
                for entry in self.log[running.read :]:
                    running.node.inbox.apply(entry)
                running.read = len(self.log)
                writes = [*running.sent, *running.node.outbox.take_writes()]
                running.sent = []
                busy = busy or bool(writes)
                for write in writes:
                    self._store(running.node, write)
            if not busy:
                break
        else:
            raise AssertionError("the nodes keep writing")
        loaded = Node("fresh-1", schema=SCHEMA)
        for entry in self.last.values():
            loaded.inbox.apply(entry)
        expected = state_of(loaded)
        for running in self.nodes:
            assert not running.node.sync.has_pending()
            assert state_of(running.node) == expected
        if any(entry.op is Op.PUT and entry.value[:1] != b"{" for entry in self.last.values()):
            event("an unusable value is left where no node held the entity")
        if expected:
            event("settled with entities")

    def teardown(self) -> None:
        self.settle()

    # -- helpers -----------------------------------------------------------------------------------

    def _append(self, entry: Entry) -> None:
        self.log.append(entry)
        self.last[entry.key] = entry

    def _store(self, node: Node, write: PendingWrite) -> None:
        last = self.last.get(write.key)
        if (0 if last is None else last.revision) != write.expected_revision:
            node.sync.conflicted(write, last)
            return
        entry = Entry(write.key, len(self.log) + 1, write.value, Op.DELETE if write.delete else Op.PUT, 0)
        self._append(entry)
        node.outbox.written(write, entry.revision)


OneAnswer.TestCase.settings = settings(max_examples=300, stateful_step_count=40)
test_every_node_running_or_fresh_ends_with_the_same = OneAnswer.TestCase
