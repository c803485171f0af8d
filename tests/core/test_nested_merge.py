"""Merges of dict fields at any depth and of counters, against a model of every write ever made.

Several replicas of one entity change a dict field (the whole field, or one key at any depth, set or
removed) and a counter field (set, or incremented), and exchange versions through the stored format in any
order, late and twice. Whenever all have exchanged everything, every replica must hold exactly what
applying every write ever made gives in stamp order (so no acknowledged key change is lost), and the
counter the sum of the increments counting from its last write.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from brainlessdb.core import counters, nested
from brainlessdb.core.clock import HybridLogicalClock, Stamp
from brainlessdb.core.codec import decode_value, encode_record
from brainlessdb.core.merge import Extras, Record, merge_records
from brainlessdb.core.tracked import untrack

KEYS = st.sampled_from(["a", "b", "c/d", "~e"])
PATHS = st.lists(KEYS, min_size=1, max_size=3).map(tuple)
LEAVES = st.one_of(
    st.integers(-3, 3), st.sampled_from(["x", "y"]), st.none(), st.lists(st.integers(0, 2), max_size=2)
)
VALUES = st.recursive(LEAVES, lambda inner: st.dictionaries(KEYS, inner, max_size=3), max_leaves=6)
REPLICAS = 3
REMOVED: Any = object()


def apply_model(writes: list[tuple[Stamp, tuple[str, ...], Any]]) -> Any:
    """The field's value from every write in stamp order (the root write of each is at path ``()``)."""
    value: Any = None
    for _, path, new in sorted(writes, key=lambda write: write[0]):
        if not path:
            value = untrack(new)
            continue
        node = value if isinstance(value, dict) else {}
        value = node
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        if new is REMOVED:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = untrack(new)
    return value


class Replicas(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clocks = [
            HybridLogicalClock(f"r{i}", now_ms=lambda: 1000, replica=f"r{i}~1") for i in range(REPLICAS)
        ]
        start = self.clocks[0].tick()
        first = Record(data={"f": {"a": 1}, "n": 0}, stamps={"f": start, "n": start})
        self.records = [first, first, first]
        self.writes: list[tuple[Stamp, tuple[str, ...], Any]] = [(start, (), {"a": 1})]
        self.resets: list[tuple[Stamp, int]] = [(start, 0)]
        self.increments: list[tuple[Stamp, int]] = []  # (the write counted from, delta)

    # -- local changes, made as LocalChanges makes them ------------------------------------------

    def _local(self, index: int, change: Any) -> None:
        record = self.records[index]
        data = untrack(record.data)
        stamps = dict(record.stamps)
        extras = Extras(
            {k: dict(v) for k, v in record.extras.paths.items()} if record.extras else None,
            {k: dict(v) for k, v in record.extras.counts.items()} if record.extras else None,
        )
        change(data, stamps, extras)
        self.records[index] = Record(data=data, stamps=stamps, extras=extras)

    @rule(index=st.integers(0, REPLICAS - 1), value=VALUES)
    def set_field(self, index: int, value: Any) -> None:
        stamp = self.clocks[index].tick()

        def change(data: dict[str, Any], stamps: dict[str, Stamp], extras: Extras) -> None:
            data["f"] = untrack(value)
            stamps["f"] = stamp
            extras.set_field("f", None, None)

        self._local(index, change)
        self.writes.append((stamp, (), value))

    @rule(index=st.integers(0, REPLICAS - 1), path=PATHS, value=st.one_of(VALUES, st.just(REMOVED)))
    def set_key(self, index: int, path: tuple[str, ...], value: Any) -> None:
        # As a tracked dict does: only where every dict above the key exists.
        parent = nested.lookup(self.records[index].data["f"], path[:-1])
        if not isinstance(parent, dict):
            return
        stamp = self.clocks[index].tick()

        def change(data: dict[str, Any], stamps: dict[str, Stamp], extras: Extras) -> None:
            node = nested.lookup(data["f"], path[:-1])
            if value is REMOVED:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = untrack(value)
            extras.set_field("f", nested.record_write(extras.paths.get("f"), path, stamp), None)

        self._local(index, change)
        self.writes.append((stamp, path, value))

    @rule(index=st.integers(0, REPLICAS - 1), value=st.integers(-5, 5))
    def set_counter(self, index: int, value: int) -> None:
        stamp = self.clocks[index].tick()

        def change(data: dict[str, Any], stamps: dict[str, Stamp], extras: Extras) -> None:
            data["n"] = value
            stamps["n"] = stamp
            extras.set_field("n", None, None)

        self._local(index, change)
        self.resets.append((stamp, value))

    @rule(index=st.integers(0, REPLICAS - 1), delta=st.integers(-3, 3))
    def increment(self, index: int, delta: int) -> None:
        counted_from = self.records[index].stamps["n"]

        def change(data: dict[str, Any], stamps: dict[str, Stamp], extras: Extras) -> None:
            data["n"] += delta
            extras.counts["n"] = counters.add(extras.counts.get("n"), f"r{index}~1", delta)

        self._local(index, change)
        self.increments.append((counted_from, delta))

    # -- exchanges --------------------------------------------------------------------------------

    @rule(source=st.integers(0, REPLICAS - 1), receiver=st.integers(0, REPLICAS - 1))
    def deliver(self, source: int, receiver: int) -> None:
        """``receiver`` merges what ``source`` stores (through the format), at any time, again and again."""
        sent = decode_value(encode_record(self.records[source]), time_ns=0)
        assert sent == self.records[source]
        mine = self.records[receiver]
        merged = merge_records(mine, sent)
        assert merged == merge_records(sent, mine)  # commutative
        assert merge_records(merged, sent) == merged  # idempotent
        newest = sent.max_stamp()
        assert newest is not None
        self.clocks[receiver].observe(newest[0])
        self.records[receiver] = merged

    @precondition(lambda self: len(self.writes) > 1)
    @rule()
    def everyone_exchanges_everything(self) -> None:
        for _ in range(2):
            for source in range(REPLICAS):
                for receiver in range(REPLICAS):
                    self.deliver(source, receiver)
        first = self.records[0]
        assert all(record == first for record in self.records)
        assert first.data["f"] == apply_model(self.writes)
        winner_stamp, winner_value = max(self.resets)
        counted = sum(delta for counted_from, delta in self.increments if counted_from == winner_stamp)
        assert first.data["n"] == winner_value + counted

    @invariant()
    def every_replica_is_consistent(self) -> None:
        for record in self.records:
            paths = record.extras.paths.get("f", {}) if record.extras else {}
            assert nested.keep_consistent(record.data["f"], record.stamps["f"], paths) == paths


TestReplicas = Replicas.TestCase
TestReplicas.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_merging_three_replicas_in_any_grouping_gives_one_answer() -> None:
    """Associativity on a case with writes at several depths from three nodes."""
    clocks = {name: HybridLogicalClock(name, now_ms=lambda: 5) for name in "xyz"}
    base = clocks["x"].tick()

    def version(node: str, writes: dict[tuple[str, ...], Any], value: dict[str, Any]) -> Record:
        paths = {path: clocks[node].tick() for path in writes}
        return Record(data={"f": value}, stamps={"f": base}, extras=Extras({"f": paths}))

    a = version("x", {("k",): 1}, {"k": 1, "m": {"n": 0}})
    b = version("y", {("m", "n"): 2}, {"m": {"n": 2}})
    c = version("z", {("m",): None}, {"k": 0, "m": {}})
    left = merge_records(merge_records(a, b), c)
    right = merge_records(a, merge_records(b, c))
    assert left == right
    assert left.data["f"]["k"] == 1
