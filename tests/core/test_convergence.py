"""A model of replicas that exchange entity versions over a lossy, reordering, duplicating network.

Each replica has its own skewed hybrid logical clock and a map uuid -> ``Record``. Every local change sends
the replica's whole new version of the entity; messages are delivered late, twice, or in any order, and a
JavaScript client may re-serialize one (``JSON.parse``/``JSON.stringify``: ``1.0`` becomes ``1``) and send
it again. Another client may write an entity's complete state, which every node reads as every field
stamped with the time NATS stored it (a field it lacks at its default): two such writes within one
millisecond share their stamps. Once every message has reached every replica, all replicas must hold the
same state, and that state must be the one a sequential specification gives: per field the write with
the greatest stamp (among writes sharing it, the one the tie-break picks), in the spelling it was written
with, and every entity deleted anywhere deleted everywhere (an update stamped after the delete does not
bring it back).
"""

from __future__ import annotations

import copy
import functools
import random
from dataclasses import dataclass
from typing import Any

import msgspec
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from brainlessdb.core.clock import HybridLogicalClock, Stamp, hlc_from_ms
from brainlessdb.core.codec import FOREIGN_NODE
from brainlessdb.core.merge import Record, field_wins, js_form, merge_records, merge_stored, same_js_value


def merge_into(data: dict[str, Any], stamps: dict[str, Any], incoming: Record) -> dict[str, Any]:
    """The fields a merge of ``incoming`` changed (``merge_stored`` without the other answers)."""
    return merge_stored(data, stamps, incoming)[0]


_canonical = msgspec.json.Encoder(order="sorted")

START_MS = 1_735_689_600_000
MAX_REPLICAS = 4
FIELDS = ("state", "queue", "agent")

replica_ids = st.integers(min_value=0, max_value=MAX_REPLICAS - 1)
picks = st.integers(min_value=0, max_value=10_000)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, -0.0, 1.5e17, 2.0**60]),  # floats JavaScript writes as integers
    st.text(max_size=3),
    st.lists(st.integers(min_value=0, max_value=3), max_size=2),
    st.lists(st.sampled_from([0.0, 2.0, 0.5]), max_size=2),
)


@dataclass(frozen=True)
class Message:
    sender: int
    uuid: str
    record: Record


def canon(record: Record) -> tuple[Stamp | None, list[tuple[str, Stamp]], bytes]:
    return record.deleted, sorted(record.stamps.items()), _canonical.encode(record.data)


def same_value(left: Any, right: Any) -> bool:
    return _canonical.encode(left) == _canonical.encode(right)


class Replicas(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START_MS
        self.skews: list[int] = []
        self.clocks: list[HybridLogicalClock] = []
        self.states: list[dict[str, Record]] = []
        self.seen_deleted: list[set[str]] = []
        self.in_flight: list[Message] = []
        self.sent: list[Message] = []
        self.created = 0
        self.final_order_seed = 0
        # The sequential specification.
        self.writes: dict[tuple[str, str, Stamp], list[Any]] = {}
        self.latest: dict[tuple[str, str], Stamp] = {}
        self.deletes: dict[str, Stamp] = {}

    # Setup

    @initialize(
        count=st.integers(min_value=2, max_value=MAX_REPLICAS),
        skews=st.lists(
            st.integers(min_value=-50, max_value=50), min_size=MAX_REPLICAS, max_size=MAX_REPLICAS
        ),
        seed=st.integers(min_value=0, max_value=2**32),
    )
    def start(self, count: int, skews: list[int], seed: int) -> None:
        self.skews = skews[:count]
        self.clocks = [
            HybridLogicalClock(f"node-{index}", now_ms=functools.partial(self._wall_ms, index))
            for index in range(count)
        ]
        self.states = [{} for _ in range(count)]
        self.seen_deleted = [set() for _ in range(count)]
        self.final_order_seed = seed

    # Time

    @rule(ms=st.integers(min_value=0, max_value=20))
    def time_passes(self, ms: int) -> None:
        self.now += ms

    @rule(replica=replica_ids, jump=st.integers(min_value=-100, max_value=100))
    def a_wall_clock_jumps(self, replica: int, jump: int) -> None:
        self.skews[replica % len(self.skews)] += jump

    # Local operations

    @rule(replica=replica_ids, fields=st.dictionaries(st.sampled_from(FIELDS), values, min_size=1))
    def create(self, replica: int, fields: dict[str, Any]) -> None:
        index = replica % len(self.states)
        uuid = f"e{self.created}"
        self.created += 1
        stamp = self.clocks[index].tick()
        self.states[index][uuid] = Record(data=dict(fields), stamps=dict.fromkeys(fields, stamp))
        for name, value in fields.items():
            self._spec_write(uuid, name, stamp, value)
        self._send(index, uuid)

    @rule(replica=replica_ids, pick=picks, name=st.sampled_from(FIELDS), value=values)
    def set_field(self, replica: int, pick: int, name: str, value: Any) -> None:
        index = replica % len(self.states)
        uuid = self._pick_live(index, pick)
        if uuid is None:
            return
        stamp = self.clocks[index].tick()
        record = self.states[index][uuid]
        record.data[name] = value
        record.stamps[name] = stamp
        self._spec_write(uuid, name, stamp, value)
        self._send(index, uuid)

    @rule(replica=replica_ids, pick=picks)
    def delete(self, replica: int, pick: int) -> None:
        index = replica % len(self.states)
        uuid = self._pick_live(index, pick)
        if uuid is None:
            return
        stamp = self.clocks[index].tick()
        self.states[index][uuid] = Record(deleted=stamp)
        self.deletes[uuid] = max(stamp, self.deletes.get(uuid, stamp))
        self._send(index, uuid)

    @precondition(lambda self: self.created)
    @rule(pick=picks, fields=st.dictionaries(st.sampled_from(FIELDS), values))
    def another_client_writes_a_complete_state(self, pick: int, fields: dict[str, Any]) -> None:
        """A put by another client: to every node, each field at the time NATS stored it (lacking: None)."""
        uuid = f"e{pick % self.created}"
        stamp = (hlc_from_ms(self.now), FOREIGN_NODE)
        data = {name: fields.get(name) for name in FIELDS}
        for name, value in data.items():
            if (uuid, name, stamp) in self.writes:
                event("two writes of another client share a stamp")
            self._spec_write(uuid, name, stamp, value)
        message = Message(-1, uuid, Record(data=data, stamps=dict.fromkeys(FIELDS, stamp)))
        self.in_flight.append(message)
        self.sent.append(message)

    # The network

    @precondition(lambda self: self.in_flight)
    @rule(pick=picks, replica=replica_ids)
    def deliver_one_message(self, pick: int, replica: int) -> None:
        message = self.in_flight.pop(pick % len(self.in_flight))
        self._receive(replica % len(self.states), message)

    @precondition(lambda self: self.in_flight)
    @rule(pick=picks)
    def deliver_one_message_to_every_replica(self, pick: int) -> None:
        message = self.in_flight.pop(pick % len(self.in_flight))
        for index in range(len(self.states)):
            self._receive(index, message)

    @precondition(lambda self: self.in_flight)
    @rule(pick=picks)
    def duplicate_a_message(self, pick: int) -> None:
        self.in_flight.append(self.in_flight[pick % len(self.in_flight)])

    @precondition(lambda self: self.sent)
    @rule(pick=picks)
    def a_javascript_client_rewrites_a_message(self, pick: int) -> None:
        """Another client reads a version, parses and re-serializes it, and writes it back unchanged."""
        message = self.sent[pick % len(self.sent)]
        record = message.record
        respelled = Record(data=js_form(record.data), stamps=dict(record.stamps), deleted=record.deleted)
        if canon(respelled) != canon(record):
            event("a re-serialized version spells a number differently")
        copy_sent = Message(message.sender, message.uuid, respelled)
        self.in_flight.append(copy_sent)
        self.sent.append(copy_sent)

    @precondition(lambda self: self.sent)
    @rule(rng=st.randoms(use_true_random=False))
    def deliver_everything_sent_so_far(self, rng: random.Random) -> None:
        """A quiet moment: every replica gets every message (messages stay in flight and may come again)."""
        self._deliver_everything(rng)
        self._check_converged()

    # Checks

    @invariant()
    def a_deleted_entity_stays_deleted(self) -> None:
        for state, seen in zip(self.states, self.seen_deleted, strict=True):
            for uuid in seen:
                assert state[uuid].is_deleted, f"{uuid} came back to life"
            seen.update(uuid for uuid, record in state.items() if record.is_deleted)

    @invariant()
    def every_held_value_was_written_under_its_stamp(self) -> None:
        for state in self.states:
            for uuid, record in state.items():
                assert set(record.data) == set(record.stamps)
                for name, stamp in record.stamps.items():
                    # Until the original arrives, a replica may hold a JavaScript spelling of it.
                    written = self.writes[uuid, name, stamp]
                    assert any(same_js_value(record.data[name], value) for value in written)

    @invariant()
    def each_clock_is_past_every_stamp_its_replica_holds(self) -> None:
        for clock, state in zip(self.clocks, self.states, strict=True):
            for record in state.values():
                newest = record.max_stamp()
                assert newest is None or newest[0] <= clock.last

    def teardown(self) -> None:
        if not self.states:
            return
        self._deliver_everything(random.Random(self.final_order_seed))
        self._check_converged()

    # Helpers

    def _wall_ms(self, index: int) -> int:
        return self.now + self.skews[index]

    def _pick_live(self, index: int, pick: int) -> str | None:
        live = sorted(uuid for uuid, record in self.states[index].items() if not record.is_deleted)
        return live[pick % len(live)] if live else None

    def _send(self, index: int, uuid: str) -> None:
        message = Message(index, uuid, copy.deepcopy(self.states[index][uuid]))
        self.in_flight.append(message)
        self.sent.append(message)

    def _receive(self, index: int, message: Message) -> None:
        incoming = copy.deepcopy(message.record)
        newest = incoming.max_stamp()
        if newest is not None:
            self.clocks[index].observe(newest[0])
        state = self.states[index]
        local = state.get(message.uuid)
        if local is None:
            state[message.uuid] = incoming
        elif local.is_deleted or incoming.is_deleted:
            newest_local = local.max_stamp()
            if local.is_deleted and newest is not None and newest_local is not None:
                if not incoming.is_deleted and newest > newest_local:
                    event("an update stamped after the delete arrives at a deleted entity")
                elif incoming.is_deleted and newest != newest_local:
                    event("two different deletes of one entity meet")
            state[message.uuid] = merge_records(local, incoming)
        else:
            merge_into(local.data, local.stamps, incoming)

    def _deliver_everything(self, rng: random.Random) -> None:
        deliveries = [(message, index) for message in self.sent for index in range(len(self.states))]
        rng.shuffle(deliveries)
        for message, index in deliveries:
            self._receive(index, message)

    def _spec_write(self, uuid: str, name: str, stamp: Stamp, value: Any) -> None:
        self.writes.setdefault((uuid, name, stamp), []).append(copy.deepcopy(value))
        current = self.latest.get((uuid, name))
        if current is None or stamp > current:
            self.latest[uuid, name] = stamp

    def _check_converged(self) -> None:
        first = {uuid: canon(record) for uuid, record in self.states[0].items()}
        for state in self.states[1:]:
            assert {uuid: canon(record) for uuid, record in state.items()} == first
        everything_sent = {message.uuid for message in self.sent}
        assert set(self.states[0]) == everything_sent
        for uuid, record in self.states[0].items():
            if uuid in self.deletes:
                assert record.deleted == self.deletes[uuid]
                continue
            expected = {name: stamp for (owner, name), stamp in self.latest.items() if owner == uuid}
            assert record.stamps == expected
            for name, stamp in expected.items():
                assert same_value(record.data[name], self._winner(uuid, name, stamp))

    def _winner(self, uuid: str, name: str, stamp: Stamp) -> Any:
        """Of the writes of one field under one stamp, the one the tie-break keeps."""
        winner, *others = self.writes[uuid, name, stamp]
        for value in others:
            if field_wins(stamp, value, stamp, winner):
                winner = value
        return winner


Replicas.TestCase.settings = settings(max_examples=200, stateful_step_count=50)
test_replicas_converge_to_the_sequential_specification = Replicas.TestCase
