"""Whole-collection orders kept between ``order_by`` calls: never an order the collection no longer has.

``order_by`` over the whole collection keeps its answer (``IndexSet.keep_order``) until an entity is added
or removed or a field the order reads changes, locally or merged from the bucket. The law: whatever
happened in between, ``order_by(*keys)`` equals the same order made from scratch (a criterion every
entity meets makes ``order_by`` sort afresh, keeping nothing).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.collection import Collection
from brainlessdb.core.query.index import ORDERS_KEPT, IndexSet
from brainlessdb.core.query.plan import parse_order
from brainlessdb.core.rows import Layout
from tests.core.host_fakes import Host, run
from tests.core.sync_fakes import START_MS, marker, put, stamp

LAYOUT = Layout()
"""Where the rows the indexes are given hold each field."""

STATES = ["waiting", "ringing", "answered"]
CITIES = ["Brno", "Ostrava", "Prague"]
FIRST_CALL = {"state": "waiting", "priority": None, "queue": 1, "caller": {"city": "Prague"}}
calls = st.fixed_dictionaries(
    {
        "state": st.sampled_from(STATES),
        "priority": st.one_of(st.none(), st.integers(0, 4)),
        "queue": st.integers(1, 3),
        "caller": st.fixed_dictionaries({}, optional={"city": st.sampled_from(CITIES)}),
    }
)
order_keys = st.lists(
    st.sampled_from(["state", "-state", "priority", "-priority", "queue", "caller__city", "-uuid"]),
    min_size=1,
    max_size=3,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), calls),
        st.tuples(st.just("delete"), st.integers(0, 30)),
        st.tuples(st.just("set"), st.tuples(st.integers(0, 30), st.sampled_from(["state", "queue"]))),
        st.tuples(
            st.just("priority"), st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(0, 4)))
        ),
        st.tuples(st.just("city"), st.tuples(st.integers(0, 30), st.sampled_from(CITIES))),
        st.tuples(st.just("increment"), st.integers(0, 30)),
        st.tuples(st.just("remote"), st.tuples(st.integers(0, 30), calls)),
        st.tuples(st.just("remote_delete"), st.integers(0, 30)),
        st.tuples(st.just("order_by"), order_keys),
    ),
    max_size=25,
)


def uuids(entities: list[Any]) -> list[str]:
    return [entity.uuid for entity in entities]


def afresh(coll: Collection[Any], keys: list[str]) -> list[str]:
    """The order made from scratch: with a criterion, ``order_by`` keeps nothing and reuses nothing."""
    return uuids(run(coll.order_by(*keys, uuid__isnull=False)))


class Remote:
    """Another node's writes, applied through the collection's inbox as the watch would."""

    def __init__(self) -> None:
        self.revision = 1000
        self.ms = START_MS + 60_000  # later than every local change: the remote values win

    def next(self) -> tuple[int, int]:
        self.revision += 1
        self.ms += 1
        return self.revision, self.ms


def apply(coll: Collection[Any], remote: Remote, operation: tuple[str, Any]) -> None:
    kind, argument = operation
    held = list(coll.entities.values())
    if kind == "add":
        coll.add(argument)
        return
    if kind == "order_by":
        assert uuids(run(coll.order_by(*argument))) == afresh(coll, argument)
        return
    if not held:
        return
    index = (argument[0] if isinstance(argument, tuple) else argument) % len(held)
    entity = held[index]
    if kind == "delete":
        coll.delete(entity)
    elif kind == "set":
        field = argument[1]
        setattr(entity, field, STATES[0] if field == "state" else 3)
    elif kind == "priority":
        entity.priority = argument[1]
    elif kind == "city":
        entity.caller["city"] = argument[1]  # a change inside a nested object
    elif kind == "increment":
        if isinstance(entity.priority, int):
            coll.increment(entity, "priority", 1)
    elif kind == "remote":
        revision, ms = remote.next()
        data = argument[1]
        coll.sync.inbox.apply(put(entity.uuid, revision, data, dict.fromkeys(data, stamp(ms))))
    elif kind == "remote_delete":
        revision, ms = remote.next()
        coll.sync.inbox.apply(marker(entity.uuid, revision, stamp(ms)))


@given(st.lists(calls, max_size=25), operations, order_keys)
def test_order_by_the_whole_collection_equals_a_fresh_sort_after_any_changes(
    values: list[dict[str, Any]], operations: list[tuple[str, Any]], keys: list[str]
) -> None:
    coll: Collection[Any] = Collection(Host(), "call")
    for data in [FIRST_CALL, *values]:
        coll.add(data)
    remote = Remote()
    assert uuids(run(coll.order_by(*keys))) == afresh(coll, keys)
    for operation in operations:
        apply(coll, remote, operation)
        assert uuids(run(coll.order_by(*keys))) == afresh(coll, keys)
        assert uuids(run(coll.order_by(*keys, limit=3, offset=1))) == afresh(coll, keys)[1:4]


def test_a_kept_order_is_reused_until_a_field_it_reads_changes() -> None:
    coll: Collection[Any] = Collection(Host(), "call")
    added = [coll.add({**FIRST_CALL, "priority": i % 3, "queue": i}) for i in range(6)]
    first = run(coll.order_by("priority"))
    again = run(coll.order_by("priority"))
    assert again == first
    assert again is not first  # a list of each caller's own: changing it changes nothing kept
    again.clear()
    assert run(coll.order_by("priority")) == first
    key = parse_order(["priority"], coll._table.field_types)
    kept = coll._indexes.kept_order(key)
    assert kept == first
    added[0].queue = 99  # a field the order does not read: the order is kept
    assert coll._indexes.kept_order(key) is kept
    added[0].priority = 2  # a field it reads: made again on the next call
    assert coll._indexes.kept_order(key) is None
    assert uuids(run(coll.order_by("priority"))) == afresh(coll, ["priority"])


def test_kept_orders_are_dropped_on_add_remove_and_change_of_what_they_read() -> None:
    indexes = IndexSet(LAYOUT)
    indexes.keep_order("by-priority", ["priority"], ["a", "b"])
    indexes.keep_order("by-state", ["state"], ["b", "a"])
    assert indexes.fields == {"priority", "state"}
    assert not indexes.covers("priority")  # no old values needed for a kept order
    indexes.on_change("a", "queue", 1, 2)
    assert indexes.kept_order("by-priority") == ["a", "b"]
    indexes.on_change("a", "priority", 1, 2)
    assert indexes.kept_order("by-priority") is None
    assert indexes.kept_order("by-state") == ["b", "a"]
    indexes.on_add("c", LAYOUT.row({"state": "x"}))
    assert indexes.kept_order("by-state") is None
    indexes.keep_order("by-state", ["state"], ["b", "a"])
    indexes.on_remove("a", LAYOUT.row({"state": "x"}))
    assert indexes.kept_order("by-state") is None
    indexes.keep_order("by-state", ["state"], ["b", "a"])
    indexes.clear()
    assert indexes.kept_order("by-state") is None
    assert not indexes.fields


def test_only_the_last_few_orders_are_kept() -> None:
    indexes = IndexSet(LAYOUT)
    for number in range(ORDERS_KEPT + 1):
        indexes.keep_order(number, ["priority"], [number])
    assert indexes.kept_order(0) is None
    assert [indexes.kept_order(number) for number in range(1, ORDERS_KEPT + 1)] == [
        [number] for number in range(1, ORDERS_KEPT + 1)
    ]
