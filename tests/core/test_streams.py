"""Change streams, their pure half (``core.streams``): what each event of a collection is to a stream.

No event loop: a collection is built on a tiny host that hands each event to its listener at once, and its
``watch_collection`` returns the ``Subscription`` itself, which the tests open with a list to fill. The
law tested last: whatever happens to a collection, the set a consumer builds from a stream's events (in
on ``Enter``, out on ``Leave`` and ``Delete``) is what ``filter()`` answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.codec import encode_entity
from brainlessdb.core.collection import Collection
from brainlessdb.core.streams import StreamOptions, Subscription
from brainlessdb.core.values import MISSING
from brainlessdb.errors import QueryError
from brainlessdb.events import Change, Delete, Enter, Event, Leave, Listener, StreamEvent
from brainlessdb.storage.base import Entry, Op
from tests.core import host_fakes
from tests.core.sync_fakes import START_MS, TIME_NS, marker, stamp

OTHER_UUID = "6f1c2a4e-0000-11ef-8000-0242ac120002"


class Host(host_fakes.Host):
    """Events go to their listener at once, and streams stay pure: a subscription is its own stream."""

    def emit(self, listener: Listener, event: Event) -> None:
        listener.callback(event)

    def watch_collection(self, collection: Collection[Any], subscription: Subscription) -> Subscription:
        return subscription


def make_calls() -> tuple[Host, Collection[Any]]:
    host = Host()
    return host, Collection(cast("Any", host), "call")


def watching(
    calls: Collection[Any], *criteria: dict[str, Any], **options: Any
) -> tuple[Subscription, list[Any]]:
    """A subscription of ``calls`` opened on a list; the list is returned with the current entities first."""
    subscription = cast("Subscription", calls.watch(*criteria, **options))
    seen: list[Any] = []
    current = subscription.open(seen.append)
    seen.extend(subscription.entered(entity) for entity in current)
    return subscription, seen


def kinds(events: list[Any]) -> list[str]:
    return [type(event).__name__ for event in events]


def remote_put(revision: int, data: dict[str, Any], ms: int, uuid: str = OTHER_UUID) -> Entry:
    """A version of ``uuid`` written by another node at ``ms``."""
    return Entry(uuid, revision, encode_entity(data, stamp(ms)), Op.PUT, TIME_NS)


# -- local changes -------------------------------------------------------------------------------


def test_a_change_into_the_criteria_enters_one_within_them_changes_one_out_of_them_leaves() -> None:
    _, calls = make_calls()
    call = calls.add(state="ringing", queue=1)
    _, seen = watching(calls, state="waiting")
    call.state = "waiting"
    call.queue = 2
    call.state = "answered"
    call.queue = 3  # outside the criteria now: not the stream's business
    assert kinds(seen) == ["Enter", "Change", "Leave"]
    enter, change, leave = seen
    assert enter.changes == {"state": ("ringing", "waiting")} and not enter.created and not enter.current
    assert enter.origin == "local" and enter.uuid == call.uuid and enter.entity is call
    assert change.changes == {"queue": (1, 2)}
    assert isinstance(leave, Leave) and leave.changes == {"state": ("waiting", "answered")}
    assert leave.entity is call and leave.origin == "local"


def test_a_new_matching_entity_enters_as_created_and_a_matching_delete_is_a_delete() -> None:
    _, calls = make_calls()
    _, seen = watching(calls, state="waiting")
    outside = calls.add(state="ringing", queue=1)
    inside = calls.add(state="waiting", queue=2)
    calls.delete(outside)
    calls.delete(inside)
    assert kinds(seen) == ["Enter", "Delete"]
    assert seen[0].created and seen[0].changes == {"state": (MISSING, "waiting"), "queue": (MISSING, 2)}
    assert seen[1].uuid == inside.uuid and seen[1].reason == "deleted" and seen[1].origin == "local"


def test_without_criteria_every_new_entity_enters_and_nothing_ever_leaves() -> None:
    _, calls = make_calls()
    _, seen = watching(calls)
    call = calls.add(state="ringing")
    call.state = "gone"
    calls.delete(call)
    assert kinds(seen) == ["Enter", "Change", "Delete"]
    assert seen[0].created


def test_lookups_and_nested_criteria_read_the_entity_before_and_after_the_change() -> None:
    _, calls = make_calls()
    call = calls.add(caller={"city": "Brno"}, priority=5)
    _, seen = watching(calls, caller__city="Prague", priority__lt=3)
    call.priority = 1
    call.caller["city"] = "Prague"  # a change inside the dict: its old value is a copy from before
    call.caller["zip"] = "110 00"
    call.priority = 4
    assert kinds(seen) == ["Enter", "Change", "Leave"]
    assert seen[0].changes["caller"][0] == {"city": "Brno"}  # the new value is the live field
    assert seen[2].changes == {"priority": (1, 4)}


def test_a_field_taking_a_value_it_did_not_have_is_read_as_absent_before() -> None:
    _, calls = make_calls()
    call = calls.add(state="new", agent=None)
    _, seen = watching(calls, agent__isnull=False)
    call.agent = 7
    assert kinds(seen) == ["Enter"]
    # Reading the data before the change: a field whose old value is MISSING was absent.
    subscription, seen = watching(calls, {"agent__isnull": True})
    event = Change("call", call.uuid, call, {"agent": (MISSING, 7)}, "remote")
    assert isinstance(subscription.classify(event), Leave)


def test_criteria_on_the_uuid_never_move_an_entity() -> None:
    _, calls = make_calls()
    call = calls.add(state="new")
    other = calls.add(state="new")
    _, seen = watching(calls, uuid=call.uuid)
    call.state = "old"
    other.state = "old"
    assert kinds(seen) == ["Change"] and seen[0].uuid == call.uuid


def test_typed_collections_send_their_typed_views() -> None:
    @dataclass
    class Call:
        state: str
        uuid: str | None = None

    _, untyped = make_calls()
    calls = untyped.typed(Call)
    _, seen = watching(calls, state="waiting", include_current=True)
    call = calls.add(Call(state="waiting"))
    call.state = "done"
    assert kinds(seen) == ["Enter", "Leave"]
    assert all(isinstance(event.entity, Call) for event in seen)


# -- origins, remote changes and deletes of every reason -----------------------------------------


def test_changes_merged_from_other_nodes_enter_change_leave_and_delete_as_remote() -> None:
    _, calls = make_calls()
    _, seen = watching(calls, state="waiting")
    apply = calls.sync.inbox.apply
    apply(remote_put(1, {"state": "ringing", "queue": 1}, START_MS))
    apply(remote_put(2, {"state": "waiting", "queue": 1}, START_MS + 1))
    apply(remote_put(3, {"state": "waiting", "queue": 2}, START_MS + 2))
    apply(remote_put(4, {"state": "answered", "queue": 2}, START_MS + 3))
    apply(remote_put(5, {"state": "waiting", "queue": 2}, START_MS + 4))
    apply(marker(OTHER_UUID, 6, stamp(START_MS + 5)))
    assert kinds(seen) == ["Enter", "Change", "Leave", "Enter", "Delete"]
    assert all(event.origin == "remote" for event in seen)
    assert seen[0].changes == {"state": ("ringing", "waiting")}
    assert seen[1].changes == {"queue": (1, 2)}


def test_local_and_remote_choose_the_origins_a_stream_has() -> None:
    _, calls = make_calls()
    _, mine = watching(calls, remote=False)
    _, theirs = watching(calls, local=False)
    _, both = watching(calls)
    calls.add(state="here")
    calls.sync.inbox.apply(remote_put(1, {"state": "there"}, START_MS))
    assert [event.origin for event in mine] == ["local"]
    assert [event.origin for event in theirs] == ["remote"]
    assert [event.origin for event in both] == ["local", "remote"]


def test_an_expired_entity_is_a_delete_whose_reason_says_so() -> None:
    host, calls = make_calls()
    call = calls.add(state="waiting")
    calls.expire(call, 10)
    _, seen = watching(calls, state="waiting")
    host.now_ms += 11_000
    calls.sync.expire_due()
    assert kinds(seen) == ["Delete"]
    assert seen[0].reason == "expired" and seen[0].uuid == call.uuid


# -- include_current, opening and closing --------------------------------------------------------


def test_include_current_starts_with_the_matching_entities_as_current_enters() -> None:
    _, calls = make_calls()
    waiting = [calls.add(state="waiting", n=i) for i in range(3)]
    calls.add(state="ringing", n=9)
    _, seen = watching(calls, state="waiting", include_current=True)
    waiting[0].n = 10
    assert kinds(seen) == ["Enter", "Enter", "Enter", "Change"]
    assert {event.uuid for event in seen[:3]} == {call.uuid for call in waiting}  # in filter()'s order
    assert all(event.current and event.origin is None and event.changes == {} for event in seen[:3])
    assert not any(event.created for event in seen[:3])
    _, not_current = watching(calls, state="waiting")
    assert not_current == []


def test_close_unregisters_and_a_closed_subscription_delivers_nothing() -> None:
    _, calls = make_calls()
    subscription, seen = watching(calls)
    assert len(calls._table.listeners) == 1 and subscription.is_open
    subscription.close()
    subscription.close()
    assert calls._table.listeners == [] and not subscription.is_open
    calls.add(state="after")
    assert seen == []


def test_a_subscription_closed_while_the_table_tells_its_listeners_skips_none_of_the_others() -> None:
    _, calls = make_calls()
    first = cast("Subscription", calls.watch())
    second = cast("Subscription", calls.watch())
    seen: list[StreamEvent] = []

    def close_both(event: StreamEvent) -> None:
        first.close()
        second.close()

    later: list[Any] = []
    first.open(close_both)
    second.open(seen.append)
    calls.on_change(later.append, local=True)
    calls.add(state="one")
    # The second stream was closed before the table reached it; the callback after it still ran.
    assert seen == [] and len(later) == 1
    assert calls._table.listeners == [calls._table.listeners[0]]


def test_open_twice_is_refused() -> None:
    _, calls = make_calls()
    subscription, _ = watching(calls)
    with pytest.raises(RuntimeError):
        subscription.open(print)


# -- refusals ------------------------------------------------------------------------------------


def test_bad_criteria_are_a_query_error_at_the_call() -> None:
    _, calls = make_calls()
    calls.add(state="new", n=1)
    with pytest.raises(QueryError) as raised:
        calls.watch(stat="waiting")
    assert raised.value.key == "stat"
    with pytest.raises(QueryError):
        calls.watch(n__gtt=3)
    with pytest.raises(QueryError):
        calls.watch(n__in=5)
    with pytest.raises(QueryError):
        calls.watch(["state"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("buffer", 0),
        ("buffer", -1),
        ("buffer", 2.5),
        ("buffer", True),
        ("overflow", "block"),
        ("include_current", 1),
        ("local", None),
    ],
)
def test_bad_options_are_a_query_error_naming_the_option(option: str, value: Any) -> None:
    _, calls = make_calls()
    with pytest.raises(QueryError) as raised:
        calls.watch(**{option: value})
    assert raised.value.key == option


def test_a_stream_of_no_origin_is_refused() -> None:
    _, calls = make_calls()
    with pytest.raises(QueryError):
        calls.watch(local=False, remote=False)


def test_options_are_kept_and_a_field_named_like_an_option_is_watched_through_a_mapping() -> None:
    _, calls = make_calls()
    call = calls.add(local=True, buffer=1)
    subscription, seen = watching(calls, {"local": False}, buffer=5, overflow="drop_oldest")
    assert subscription.options == StreamOptions(False, 5, "drop_oldest", True, True)
    call.local = False
    assert kinds(seen) == ["Enter"]


# -- the law -------------------------------------------------------------------------------------

STATES = ["waiting", "ringing", "answered"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(STATES), st.integers(0, 3)),
        st.tuples(st.just("set_state"), st.integers(0, 20), st.sampled_from(STATES)),
        st.tuples(st.just("set_n"), st.integers(0, 20), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 20), st.just(0)),
        st.tuples(st.just("remote"), st.sampled_from(STATES), st.integers(0, 3)),
        st.tuples(st.just("watch"), st.just(""), st.just(0)),
    ),
    max_size=40,
)
criteria_strategy = st.sampled_from(
    [{}, {"state": "waiting"}, {"n__gte": 2}, {"state__in": ["waiting", "ringing"], "n__lt": 3}]
)


@given(operations, criteria_strategy)
def test_the_set_built_from_a_streams_events_is_what_filter_answers(
    steps: list[tuple[str, Any, Any]], criteria: dict[str, Any]
) -> None:
    host, calls = make_calls()
    remote_revision = 0
    streams: list[tuple[set[str], list[Any]]] = []

    def open_stream() -> None:
        _, seen = watching(calls, criteria, include_current=True)
        streams.append((set(), seen))

    open_stream()
    for operation, first, second in steps:
        entities = list(calls.entities.values())
        if operation == "add":
            calls.add(state=first, n=second)
        elif operation == "remote":
            remote_revision += 1
            uuid = f"6f1c2a4e-{remote_revision:04x}-11ef-8000-0242ac120002"
            calls.sync.inbox.apply(remote_put(remote_revision, {"state": first, "n": second}, START_MS, uuid))
        elif operation == "watch":
            open_stream()
        elif entities:
            entity = entities[first % len(entities)]
            if operation == "set_state":
                entity.state = second
            elif operation == "set_n":
                entity.n = second
            else:
                calls.delete(entity)
        host.now_ms += 1
        expected = {entity.uuid for entity in calls._selection.select(criteria)}
        for members, seen in streams:
            for event in seen:
                if isinstance(event, Enter):
                    assert event.uuid not in members
                    members.add(event.uuid)
                elif isinstance(event, (Leave, Delete)):
                    members.remove(event.uuid)
                else:
                    assert event.uuid in members
            seen.clear()
            assert members == expected
