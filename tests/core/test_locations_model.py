"""A model of locations: buckets that copy each other's own keys, cut and healed, with nodes restarting.

Three locations, each with a bucket (compare-and-set writes, a watch) and two nodes. Nodes add, change
fields and dict keys, increment and delete, and write to their location's bucket only; a link copies a
location's own keys into another's bucket under ``_<location>.`` (as a JetStream source does) while it is
up; nodes apply their bucket's entries late, and restart by replaying it. Once every link is up and
everything is applied, every node holds the same, and no change NATS acknowledged is lost: each stored
version is contained in what every node holds (an acknowledged delete wins).
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from brainlessdb.core.codec import decode_delete, decode_value, encode_entity
from brainlessdb.core.merge import Record, dominates
from brainlessdb.storage.base import Entry

from .sync_fakes import START_MS, TIME_NS, Bucket, Conflict, Node, schema_of

LOCATIONS = ("a", "b", "c")
NODES = [(location, index) for location in LOCATIONS for index in (1, 2)]
SCHEMA = schema_of({"state": {"type": "str"}, "n": {"type": "int"}, "tags": {"type": "dict"}})

nodes = st.sampled_from(NODES)


class Locations(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.buckets = {location: Bucket() for location in LOCATIONS}
        self.nodes = {key: self._new_node(key) for key in NODES}
        self.read = dict.fromkeys(NODES, 0)  # how many entries of its bucket's watch each node applied
        self.copied: dict[tuple[str, str], dict[str, int]] = {
            pair: {} for pair in itertools.permutations(LOCATIONS, 2)
        }
        self.cut: set[str] = set()
        self.uuids: list[str] = []
        self.acknowledged: list[tuple[str, Record]] = []
        self.now_ms = START_MS

    def _new_node(self, key: tuple[str, int]) -> Node:
        return Node(f"{key[0]}-{key[1]}", schema=SCHEMA, now_ms=START_MS)

    def _entity(self, key: tuple[str, int], pick: int) -> Any:
        node = self.nodes[key]
        live = [uuid for uuid in self.uuids if uuid in node.table.entities]
        return node.entity(live[pick % len(live)]) if live else None

    # -- what nodes do ----------------------------------------------------------------------------

    @rule(key=nodes, step=st.integers(0, 3))
    def time_passes(self, key: tuple[str, int], step: int) -> None:
        self.nodes[key].now_ms += step

    @rule(key=nodes)
    def add(self, key: tuple[str, int]) -> None:
        uuid = f"u-{len(self.uuids)}"
        self.uuids.append(uuid)
        self.nodes[key].add(uuid, {"state": "new", "n": 0, "tags": {}})

    @rule(key=nodes, pick=st.integers(0, 9), value=st.sampled_from(["x", "y", "z"]))
    def set_state(self, key: tuple[str, int], pick: int, value: str) -> None:
        entity = self._entity(key, pick)
        if entity is not None:
            entity.state = value

    @rule(key=nodes, pick=st.integers(0, 9), tag=st.sampled_from(["p", "q", "r"]), value=st.integers(0, 3))
    def set_tag(self, key: tuple[str, int], pick: int, tag: str, value: int) -> None:
        entity = self._entity(key, pick)
        if entity is not None:
            if value == 0:
                entity.tags.pop(tag, None)
            else:
                entity.tags[tag] = value

    @rule(key=nodes, pick=st.integers(0, 9), by=st.integers(-2, 2))
    def increment(self, key: tuple[str, int], pick: int, by: int) -> None:
        entity = self._entity(key, pick)
        if entity is not None:
            self.nodes[key].increment(entity, "n", by)

    @rule(key=nodes, pick=st.integers(0, 9))
    def delete(self, key: tuple[str, int], pick: int) -> None:
        entity = self._entity(key, pick)
        if entity is not None:
            self.nodes[key].delete(entity.uuid)

    @rule(key=nodes)
    def flush(self, key: tuple[str, int]) -> None:
        """The node writes what it has pending to its location's bucket (compare-and-set)."""
        node, bucket = self.nodes[key], self.buckets[key[0]]
        for write in node.outbox.take_writes():
            try:
                revision = bucket.store(write)
            except Conflict:
                node.sync.conflicted(write, bucket.get(write.key))
                continue
            node.outbox.written(write, revision)
            entry = bucket.get(write.key)
            assert entry is not None
            decode = decode_delete if write.delete else decode_value
            self.acknowledged.append((write.key, decode(entry.value, time_ns=TIME_NS)))

    @rule(key=nodes)
    def apply(self, key: tuple[str, int]) -> None:
        """The node applies what its bucket's watch brought since it last did."""
        node, watch = self.nodes[key], list(self.buckets[key[0]].watch)
        for entry in watch[self.read[key] :]:
            node.inbox.apply(entry)
        self.read[key] = len(watch)

    @rule(key=nodes)
    def restart(self, key: tuple[str, int]) -> None:
        """The node starts again (what it had not written is gone) and loads its bucket."""
        node = self.nodes[key] = self._new_node(key)
        bucket = self.buckets[key[0]]
        for entry in sorted(bucket.entries.values(), key=lambda entry: entry.revision):
            node.inbox.apply(entry)
        self.read[key] = len(bucket.watch)

    # -- links --------------------------------------------------------------------------------------

    @rule(location=st.sampled_from(LOCATIONS))
    def cut_off(self, location: str) -> None:
        self.cut.add(location)

    @rule(location=st.sampled_from(LOCATIONS))
    def heal(self, location: str) -> None:
        self.cut.discard(location)

    @rule(source=st.sampled_from(LOCATIONS), into=st.sampled_from(LOCATIONS))
    def copy(self, source: str, into: str) -> None:
        """While both are linked, ``into``'s bucket copies ``source``'s own keys (what changed)."""
        if source == into or source in self.cut or into in self.cut:
            return
        done = self.copied[(source, into)]
        origin, bucket = self.buckets[source], self.buckets[into]
        for key, entry in sorted(origin.entries.items(), key=lambda item: item[1].revision):
            if key.startswith("_") or done.get(key) == entry.revision:
                continue
            bucket.revision += 1
            copy = Entry(f"_{source}.{key}", bucket.revision, entry.value, entry.op, entry.time_ns)
            bucket.entries[copy.key] = copy
            bucket.watch.append(copy)
            done[key] = entry.revision

    # -- the end ----------------------------------------------------------------------------------

    @precondition(lambda self: self.uuids)
    @rule()
    def everything_heals(self) -> None:
        self.cut.clear()
        for _ in range(4):  # writes made in answer to what arrives (a delete again), and their copies
            for key in NODES:
                self.flush(key)
            for source, into in itertools.permutations(LOCATIONS, 2):
                self.copy(source, into)
            for key in NODES:
                self.apply(key)
        assert not any(node.sync.has_pending() for node in self.nodes.values())
        views = {key: self._view(node) for key, node in self.nodes.items()}
        first = views[NODES[0]]
        assert all(view == first for view in views.values()), views
        for uuid, stored in self.acknowledged:
            if stored.deleted is not None:
                assert uuid not in first, f"{uuid}: an acknowledged delete was undone"
            elif uuid in first:
                assert not dominates(stored, first[uuid]), f"{uuid}: an acknowledged change was lost"
            else:
                assert any(uuid == deleted and r.deleted is not None for deleted, r in self.acknowledged)

    @staticmethod
    def _view(node: Node) -> dict[str, Record]:
        """What the node holds, as stored versions (values, stamps and extras)."""
        return {
            uuid: decode_value(encode_entity(entity._data, entity._stamps, entity._extras), time_ns=0)
            for uuid, entity in node.table.entities.items()
        }


TestLocations = Locations.TestCase
TestLocations.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
