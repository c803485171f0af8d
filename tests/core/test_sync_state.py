"""SyncState: the parts together — conflicts, the questions of the whole, and a property over them."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from brainlessdb.core.clock import Stamp
from brainlessdb.core.codec import encode_entity, encode_tombstone
from brainlessdb.core.meta import meta
from brainlessdb.core.stamps import field_stamps
from brainlessdb.core.sync.outbox import PendingWrite
from brainlessdb.core.sync.state import SCHEMA_ERROR_KEY
from brainlessdb.errors import StorageError
from brainlessdb.events import Change, Delete
from brainlessdb.storage.base import Op

from .sync_fakes import (
    OTHER as OTHER_NODE,
)
from .sync_fakes import (
    START_MS,
    Bucket,
    Conflict,
    Node,
    data_of,
    decoded,
    marker,
    put,
    raw_put,
    schema_of,
    stamp,
)

SCHEMA = schema_of({"state": {"type": "str"}, "queue": {"type": "int", "required": False, "default": 0}})
EARLY = stamp(START_MS - 1000)


def loaded() -> Node:
    """A node holding ``u-1`` as the other node stored it at revision 3."""
    node = Node(schema=SCHEMA)
    node.inbox.apply(put("u-1", 3, {"state": "idle", "queue": 1}, EARLY))
    node.forget_calls()
    return node


# -- conflicted ------------------------------------------------------------------------------------


def test_a_conflict_merges_the_current_entry_and_writes_again_over_it() -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"
    write = node.take_one()
    assert write.expected_revision == 3
    node.forget_calls()
    current = put("u-1", 5, {"state": "idle", "queue": 7}, {"state": EARLY, "queue": stamp(START_MS - 500)})
    node.sync.conflicted(write, current)
    assert not node.outbox.is_inflight("u-1")
    assert meta(entity).data == {"state": "busy", "queue": 7}
    assert meta(entity).revision == 5
    assert meta(entity).dirty
    assert node.events == [Change("calls", "u-1", entity, {"queue": (1, 7)}, "remote")]
    again = node.take_one()
    assert (again.key, again.expected_revision) == ("u-1", 5)
    assert data_of(again.value) == {"state": "busy", "queue": 7}
    node.outbox.written(again, 6)
    assert not meta(entity).dirty


def test_a_conflict_with_a_version_holding_all_of_this_nodes_settles() -> None:
    """The write was stored after all (its acknowledgement lost): the conflict finds it there."""
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"
    first = node.take_one()
    node.outbox.failed(first, TimeoutError())  # it was stored at 4 all the same
    node.forget_calls()
    retry = node.take_one()
    node.sync.conflicted(retry, raw_put("u-1", 4, first.value))
    assert (meta(entity).revision, meta(entity).dirty) == (4, False)
    assert node.outbox.take_writes() == []
    assert node.events == []


def test_a_conflict_with_a_delete_marker_drops_the_entity() -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"
    write = node.take_one()
    node.forget_calls()
    node.sync.conflicted(write, marker("u-1", 5, EARLY))
    assert "u-1" not in node.table.entities
    assert node.events == [Delete("calls", "u-1", entity, "remote")]
    assert not node.sync.has_pending()
    assert node.outbox.take_writes() == []


def test_a_conflict_with_no_current_entry_drops_a_stored_entity() -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"
    write = node.take_one()
    node.forget_calls()
    node.sync.conflicted(write, None)  # deleted, and its marker purged
    assert "u-1" not in node.table.entities
    assert node.events == [Delete("calls", "u-1", entity, "remote")]
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and (tomb.revision, tomb.pending) == (None, False)
    assert not node.sync.has_pending()
    assert node.outbox.take_writes() == []


def test_a_conflict_with_no_current_entry_keeps_a_never_stored_entity() -> None:
    node = Node(schema=SCHEMA)
    entity = node.add("u-1", {"state": "idle"})
    write = node.take_one()
    node.sync.conflicted(write, None)
    assert node.table.entities["u-1"] is entity
    assert meta(entity).dirty
    assert node.take_one() == write


def test_a_conflicting_delete_with_no_current_entry_is_done() -> None:
    node = loaded()
    node.delete("u-1")
    write = node.take_one()
    node.sync.conflicted(write, None)
    tomb = node.sync.tombstones.get("u-1")
    assert tomb is not None and not tomb.pending
    assert not node.sync.has_pending()
    assert node.outbox.take_writes() == []


def test_a_conflict_with_an_unusable_entry_writes_over_it() -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"
    write = node.take_one()
    node.sync.conflicted(write, raw_put("u-1", 5, b"junk"))
    assert node.sync.dead_letter_count == 1
    assert meta(entity).revision == 5
    assert meta(entity).data == {"state": "busy", "queue": 1}
    again = node.take_one()
    assert again.expected_revision == 5
    assert data_of(again.value) == {"state": "busy", "queue": 1}


def test_a_conflict_with_an_entry_not_fitting_the_schema_writes_over_it() -> None:
    node = loaded()
    entity = node.entity("u-1")
    entity.state = "busy"
    node.sync.conflicted(node.take_one(), put("u-1", 5, {"state": 42}, stamp(START_MS + 9)))
    assert node.sync.dead_letter_count == 1
    assert (entity["state"], meta(entity).revision) == ("busy", 5)
    assert node.take_one().expected_revision == 5


def test_a_conflicting_delete_with_an_unusable_entry_writes_the_marker_over_it() -> None:
    node = loaded()
    node.delete("u-1")
    write = node.take_one()
    node.sync.conflicted(write, raw_put("u-1", 6, b"junk"))
    again = node.take_one()
    assert (again.key, again.expected_revision, again.delete) == ("u-1", 6, True)
    assert again.value == write.value


def test_a_delete_settled_by_a_conflict_keeps_no_error() -> None:
    """The marker was stored although its write timed out; the retry meets it: the delete is done, and
    the timeout must not be reported any more (``errors()`` feeds ``flush()``'s FlushError)."""
    node = loaded()
    node.delete("u-1")
    first = node.take_one()
    node.outbox.failed(first, TimeoutError())
    node.sync.conflicted(node.take_one(), marker("u-1", 4, EARLY))
    assert not node.sync.has_pending()
    assert node.sync.errors() == {}


def test_a_delete_settled_by_a_conflict_with_no_current_entry_keeps_no_error() -> None:
    node = loaded()
    node.delete("u-1")
    node.outbox.failed(node.take_one(), TimeoutError())
    node.sync.conflicted(node.take_one(), None)
    assert not node.sync.has_pending()
    assert node.sync.errors() == {}


# -- the questions of the whole --------------------------------------------------------------------


def test_pending_keys_and_counts_span_entities_deletes_and_the_schema() -> None:
    node = Node()
    node.add_stored("u-2", {"state": "idle"}, 1)  # sets the schema: pending
    node.add("u-1", {"state": "idle"})
    node.add("u-3", {"state": "idle"})
    node.delete("u-2")
    assert node.sync.pending_keys() == ["u-1", "u-3", "u-2", SCHEMA_ERROR_KEY]
    assert node.sync.pending_count() == 3
    assert node.sync.has_pending()
    assert node.sync.is_deleted("u-2")
    assert not node.sync.is_deleted("u-1")
    schema = node.table.schema
    assert schema is not None
    node.sync.schema.stored(schema, 1)
    assert node.sync.pending_keys() == ["u-1", "u-3", "u-2"]


def test_has_pending_is_false_only_when_everything_is_acknowledged() -> None:
    node = Node(schema=SCHEMA)
    assert not node.sync.has_pending()
    node.add("u-1", {"state": "idle"})
    write = node.take_one()
    assert node.sync.has_pending()
    node.outbox.written(write, 1)
    assert not node.sync.has_pending()
    node.sync.schema.changed()
    assert node.sync.has_pending()


def test_errors_gather_the_entities_and_the_schema() -> None:
    node = Node()
    node.add("u-1", {"state": "idle"})
    entity_error, schema_error = StorageError("entity"), StorageError("schema")
    node.outbox.failed(node.take_one(), entity_error)
    node.sync.schema.failed(schema_error)
    assert node.sync.errors() == {"u-1": entity_error, SCHEMA_ERROR_KEY: schema_error}
    node.sync.errors().clear()  # a copy
    assert len(node.sync.errors()) == 2


def test_clear_forgets_everything() -> None:
    node = loaded()
    node.delete("u-1")
    node.add("u-2", {"state": "idle"})
    node.sync.schema.failed(StorageError("x"))
    node.sync.clear()
    assert len(node.sync.tombstones) == 0
    assert node.inbox.last_revision == 0
    assert node.sync.errors() == {}
    assert node.sync.pending_count() == 0


def test_repr_tells_the_state() -> None:
    node = loaded()
    node.entity("u-1").state = "busy"
    assert repr(node.sync) == "<SyncState calls: 1 pending (0 tombstones), revision 3, schema stored>"


# -- a property: no change is ever lost ------------------------------------------------------------

UUIDS = ("u-0", "u-1")
FIELDS = ("a", "b")
PROPERTY_SCHEMA = schema_of({name: {"type": "int", "required": False, "default": 0} for name in FIELDS})

picks = st.integers(min_value=0, max_value=7)
values = st.integers(min_value=0, max_value=3)
skews = st.integers(min_value=-3, max_value=3)
"""How far (ms) the other node's clock is from this node's."""


class NoChangeLost(RuleBasedStateMachine):
    """One node and its bucket; writes, acknowledgements, echoes and another node's writes in any order.

    A write taken is stored by the bucket (or meets a conflict) whenever, and the node hears of it
    whenever: an acknowledgement, a timeout although it was stored, or a failure. The watch brings the
    stored entries back whenever. Another node changes a field of what the bucket holds, or deletes it.
    Whenever everything under way is let finish and the node flushes until nothing is left, the bucket
    holds exactly what memory holds, and that is, per field, the change with the greatest stamp (a
    delete wins over everything).
    """

    def __init__(self) -> None:
        super().__init__()
        self.node = Node(schema=PROPERTY_SCHEMA)
        self.bucket = Bucket()
        self.sent: list[PendingWrite] = []  # taken, not stored yet
        self.stored: list[tuple[PendingWrite, int]] = []  # stored, the node not told yet
        self.model: dict[str, dict[str, tuple[Stamp, int]]] = {}  # per uuid and field: the latest change
        self.deleted: set[str] = set()

    # -- this node's changes ---------------------------------------------------------------------

    @rule(uuid=st.sampled_from(UUIDS), name=st.sampled_from(FIELDS), value=values)
    def set_field(self, uuid: str, name: str, value: int) -> None:
        if uuid in self.deleted:
            return  # a deleted uuid is not added again, nor changed
        if uuid in self.node.table.entities:
            entity = self.node.entity(uuid)
            entity[name] = value
        else:
            entity = self.node.add(uuid, {name: value})
            self.model[uuid] = {}
        stamps = field_stamps(entity._stamps, entity._data)
        for field in FIELDS:
            self._record(uuid, field, stamps[field], entity._data[field])

    @rule(uuid=st.sampled_from(UUIDS))
    def delete(self, uuid: str) -> None:
        if self.node.delete(uuid):
            self.deleted.add(uuid)
            self.model.pop(uuid, None)

    @rule()
    def tick(self) -> None:
        self.node.now_ms += 1

    # -- another node's ----------------------------------------------------------------------------

    @rule(uuid=st.sampled_from(UUIDS), name=st.sampled_from(FIELDS), value=values, skew=skews)
    def other_node_sets(self, uuid: str, name: str, value: int, skew: int) -> None:
        last = self.bucket.get(uuid)
        if last is None or last.op is not Op.PUT:
            return
        stored = decoded(last.value)
        data, stamps = dict(stored.data), dict(stored.stamps)
        # Its clock has seen the version it writes over: its stamp is later than what it replaces.
        changed = max(stamp(self.node.now_ms + skew), (stamps[name][0] + 1, OTHER_NODE))
        data[name], stamps[name] = value, changed
        self.bucket.store(PendingWrite(uuid, encode_entity(data, stamps), last.revision))
        if uuid not in self.deleted:
            self._record(uuid, name, changed, value)

    @rule(uuid=st.sampled_from(UUIDS), skew=skews)
    def other_node_deletes(self, uuid: str, skew: int) -> None:
        last = self.bucket.get(uuid)
        if last is None or last.op is not Op.PUT:
            return
        deleted = stamp(self.node.now_ms + skew)
        self.bucket.store(PendingWrite(uuid, encode_tombstone(deleted), last.revision, delete=True))
        self.deleted.add(uuid)
        self.model.pop(uuid, None)

    # -- the shell's part ------------------------------------------------------------------------

    @rule()
    def take(self) -> None:
        self.sent.extend(self.node.outbox.take_writes())

    @rule()
    def flush(self) -> None:
        """What one flush round does: take the writes and send them all; their outcomes come later."""
        for write in self.node.outbox.take_writes():
            self._store(write)

    @precondition(lambda self: self.sent)
    @rule(pick=picks)
    def store(self, pick: int) -> None:
        self._store(self.sent.pop(pick % len(self.sent)))

    @precondition(lambda self: self.sent)
    @rule(pick=picks)
    def fail(self, pick: int) -> None:
        self.node.outbox.failed(self.sent.pop(pick % len(self.sent)), StorageError("down"))

    @precondition(lambda self: self.stored)
    @rule(pick=picks)
    def acknowledge(self, pick: int) -> None:
        write, revision = self.stored.pop(pick % len(self.stored))
        self.node.outbox.written(write, revision)

    @precondition(lambda self: self.stored)
    @rule(pick=picks)
    def lose_acknowledgement(self, pick: int) -> None:
        write, _ = self.stored.pop(pick % len(self.stored))
        self.node.outbox.failed(write, TimeoutError())

    @precondition(lambda self: self.bucket.watch)
    @rule()
    def deliver(self) -> None:
        self.node.inbox.apply(self.bucket.watch.popleft())

    @rule()
    def settle(self) -> None:
        self._drain()
        self._check_settled()

    def teardown(self) -> None:
        self.settle()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def dirty_means_pending(self) -> None:
        for uuid, entity in self.node.table.entities.items():
            assert meta(entity).dirty == self.node.outbox.is_dirty(uuid), uuid

    @invariant()
    def the_journal_holds_every_pending_version(self) -> None:
        outbox = self.node.outbox
        for uuid in outbox.pending_keys():
            pending = outbox.pending_value(uuid)
            assert pending is not None, uuid
            value, deleted = pending
            if deleted:
                assert uuid not in self.node.table.entities
            else:
                assert data_of(value) == meta(self.node.entity(uuid)).data

    # -- helpers ---------------------------------------------------------------------------------

    def _record(self, uuid: str, name: str, changed: Stamp, value: int) -> None:
        fields = self.model[uuid]
        if name not in fields or changed > fields[name][0]:
            fields[name] = (changed, value)

    def _store(self, write: PendingWrite) -> None:
        try:
            revision = self.bucket.store(write)
        except Conflict:
            self.node.sync.conflicted(write, self.bucket.get(write.key))
        else:
            self.stored.append((write, revision))

    def _drain(self) -> None:
        """Let everything under way finish, then flush until nothing is left."""
        outbox = self.node.outbox
        for write in self.sent:
            outbox.failed(write, StorageError("down"))
        for write, revision in self.stored:
            outbox.written(write, revision)
        self.sent, self.stored = [], []
        for _ in range(10):
            self._deliver_all()
            writes = outbox.take_writes()
            if not writes:
                break
            for write in writes:
                self._store(write)
            for write, revision in self.stored:
                outbox.written(write, revision)
            self.stored = []
        self._deliver_all()

    def _deliver_all(self) -> None:
        while self.bucket.watch:
            self.node.inbox.apply(self.bucket.watch.popleft())

    def _check_settled(self) -> None:
        node = self.node
        assert not node.sync.has_pending(), node.sync.pending_keys()
        assert node.sync.errors() == {}
        assert node.sync.dead_letter_count == 0
        for uuid in UUIDS:
            last = self.bucket.get(uuid)
            if uuid in self.model:
                entity = node.entity(uuid)
                assert meta(entity).data == {name: value for name, (_, value) in self.model[uuid].items()}
                assert last is not None and last.op is Op.PUT
                stored = decoded(last.value)
                assert stored.data == meta(entity).data
                assert stored.stamps == field_stamps(entity._stamps, entity._data)
                assert (meta(entity).revision, meta(entity).dirty) == (last.revision, False)
            elif uuid not in self.deleted:
                assert last is None
            else:
                assert uuid not in node.table.entities
                tomb = node.sync.tombstones.get(uuid)
                assert tomb is not None and not tomb.pending
                if last is not None:  # None: deleted before it was ever stored
                    assert last.op is Op.DELETE
                    assert tomb.revision == last.revision


TestNoChangeLost = NoChangeLost.TestCase
TestNoChangeLost.settings = settings(max_examples=300, stateful_step_count=30)
