"""Change streams on running databases: ``async with coll.watch(...) as changes: async for event in changes``.

On both backends (in memory, and a real nats-server): changes made on one node reach another node's
stream as they enter, change within and leave its criteria; ``include_current`` misses nothing and tells
nothing twice while another node keeps writing; a full buffer ends the stream with an error or drops the
oldest; leaving the block, the loop or the task unregisters the stream; the database's stop ends it. On a
server of its own: a stream keeps going through a server restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from brainlessdb import (
    MISSING,
    Brainless,
    Change,
    ChangeStream,
    Delete,
    Enter,
    Leave,
    NotStartedError,
    QueryError,
    StreamEvent,
    StreamOverflowError,
)
from brainlessdb.embedded import EmbeddedServer
from tests.helpers import MakeDb, converged, eventually

GUARD = 30.0
"""Seconds a test waits for events that must come, so that a bug fails it rather than hangs it."""


async def take(changes: ChangeStream, count: int) -> list[StreamEvent]:
    """The next ``count`` events of a stream (the stream stays open)."""
    events: list[StreamEvent] = []

    async def read() -> None:
        async for event in changes:
            events.append(event)
            if len(events) == count:
                return

    await asyncio.wait_for(read(), GUARD)
    return events


def kinds(events: list[StreamEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


def listeners(db: Brainless, collection: str = "call") -> int:
    return len(db.collection(collection)._table.listeners)


# -- across nodes --------------------------------------------------------------------------------


async def test_changes_made_on_one_node_enter_change_leave_and_delete_on_anothers_stream(
    make_db: MakeDb,
) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    async with b.call.watch(state="waiting") as changes:
        call = a.call.add(state="waiting", queue=1)
        a.call.add(state="ringing", queue=1)  # never matches: not on the stream
        events = await take(changes, 1)
        call.queue = 2
        events += await take(changes, 1)
        call.state = "answered"
        events += await take(changes, 1)
        call.state = "waiting"
        events += await take(changes, 1)
        a.call.delete(call)
        events += await take(changes, 1)
    assert kinds(events) == ["Enter", "Change", "Leave", "Enter", "Delete"]
    assert all(event.origin == "remote" and event.uuid == call.uuid for event in events)
    enter, change, leave, _, delete = events
    assert isinstance(enter, Enter) and enter.created and enter.changes["queue"] == (MISSING, 1)
    assert isinstance(change, Change) and change.changes == {"queue": (1, 2)}
    assert isinstance(leave, Leave) and leave.changes == {"state": ("waiting", "answered")}
    assert isinstance(delete, Delete) and delete.reason == "deleted"
    assert listeners(b) == 0


async def test_a_stream_has_this_nodes_changes_too_unless_told_otherwise(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    async with b.call.watch() as everything, b.call.watch(local=False) as theirs:
        mine = b.call.add(state="here")
        other = a.call.add(state="there")
        both = await take(everything, 2)
        only_theirs = await take(theirs, 1)
    assert [(event.uuid, event.origin) for event in both] == [(mine.uuid, "local"), (other.uuid, "remote")]
    assert [(event.uuid, event.origin) for event in only_theirs] == [(other.uuid, "remote")]


async def test_include_current_misses_nothing_and_tells_nothing_twice_while_another_node_writes(
    make_db: MakeDb,
) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    calls = [a.call.add(state="waiting" if i % 2 else "ringing", n=i) for i in range(40)]
    await a.flush()

    async def keep_writing() -> None:
        for round_ in range(10):
            for call in calls[round_ * 4 : round_ * 4 + 4]:
                call.state = "ringing" if call.state == "waiting" else "waiting"
            a.call.add(state="waiting", n=100 + round_)
            await a.flush()

    writer = asyncio.ensure_future(keep_writing())
    members: set[str] = set()
    async with b.call.watch(state="waiting", include_current=True) as changes:
        await writer
        await eventually(lambda: converged([a, b]), timeout=GUARD)
        expected = {call.uuid for call in await b.call.filter(state="waiting")}
        # Every event the stream holds now is read: the last one is followed by a change made for that.
        marker = b.call.add(state="waiting", n=-1)
        async for event in changes:
            if event.uuid == marker.uuid:
                break
            if isinstance(event, Enter):
                assert event.uuid not in members, "told twice"
                members.add(event.uuid)
            elif isinstance(event, Leave | Delete):
                members.remove(event.uuid)
            else:
                assert event.uuid in members
    assert members == expected


async def test_include_current_starts_with_the_matching_entities_marked_current(make_db: MakeDb) -> None:
    db = await make_db()
    waiting = {db.call.add(state="waiting").uuid for _ in range(3)}
    db.call.add(state="ringing")
    async with db.call.watch(state="waiting", include_current=True) as changes:
        later = db.call.add(state="waiting")
        events = await take(changes, 4)
    assert {event.uuid for event in events[:3]} == waiting
    assert all(isinstance(event, Enter) and event.current and event.origin is None for event in events[:3])
    assert isinstance(events[3], Enter) and events[3].created and events[3].uuid == later.uuid


async def test_a_stream_opened_before_start_tells_what_the_first_load_brings_as_new(
    make_db: MakeDb,
) -> None:
    a = await make_db("prague-1")
    stored = {a.call.add(n=i).uuid for i in range(3)}
    await a.flush()
    b = await make_db("brno-1", start=False)
    async with b.call.watch() as changes:
        await b.start()
        events = await take(changes, 3)
    assert {event.uuid for event in events} == stored
    assert all(isinstance(event, Enter) and event.created for event in events)


# -- a full buffer ---------------------------------------------------------------------------------


async def test_overflow_error_gives_the_events_held_then_raises_and_unregisters(make_db: MakeDb) -> None:
    db = await make_db()
    calls = [db.call.add(n=i) for i in range(5)]
    async with db.call.watch(buffer=3) as changes:
        for call in calls:
            call.n += 10
        assert listeners(db) == 0  # overflowed: it takes no more events
        held = [event async for event in _until_error(changes)]
        assert [event.uuid for event in held[:3]] == [call.uuid for call in calls[:3]]
        assert isinstance(held[3], StreamOverflowError)
        assert held[3].collection == "call" and held[3].buffer == 3
        with pytest.raises(StopAsyncIteration):
            await changes.__anext__()


async def _until_error(changes: ChangeStream) -> Any:
    try:
        async for event in changes:
            yield event
    except StreamOverflowError as exc:
        yield exc


async def test_overflow_drop_oldest_keeps_the_newest_events_and_counts_the_dropped(make_db: MakeDb) -> None:
    db = await make_db()
    calls = [db.call.add(n=i) for i in range(5)]
    async with db.call.watch(buffer=3, overflow="drop_oldest") as changes:
        for call in calls:
            call.n += 10
        assert changes.dropped == 2
        events = await take(changes, 3)
        assert [event.uuid for event in events] == [call.uuid for call in calls[2:]]
        calls[0].n = 0  # still open
        assert (await take(changes, 1))[0].uuid == calls[0].uuid


# -- unregistering ---------------------------------------------------------------------------------


async def test_leaving_the_block_breaking_the_loop_or_cancelling_the_task_unregisters(
    make_db: MakeDb,
) -> None:
    db = await make_db()
    async with db.call.watch() as changes:
        assert listeners(db) == 1
        db.call.add(n=1)
        await take(changes, 1)
    assert listeners(db) == 0

    # A plain loop, without async with: opened by the loop, unregistered once it is left.
    db.call.add(n=2)
    async for _ in db.call.watch(include_current=True):
        assert listeners(db) == 1
        break
    assert listeners(db) == 0

    started = asyncio.Event()

    async def consume() -> None:
        async with db.call.watch() as changes:
            started.set()
            async for _ in changes:
                pass

    task = asyncio.ensure_future(consume())
    await started.wait()
    assert listeners(db) == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert listeners(db) == 0


async def test_a_plain_loop_in_a_cancelled_task_is_unregistered_at_once(make_db: MakeDb) -> None:
    db = await make_db()
    db.call.add(n=1)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in db.call.watch(include_current=True):
            started.set()

    task = asyncio.ensure_future(consume())
    await started.wait()
    assert listeners(db) == 1
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # Not left to the garbage collector: the cancelled read's traceback still holds the stream.
    assert listeners(db) == 0


async def test_a_read_given_up_in_a_block_leaves_the_stream_to_read_again(make_db: MakeDb) -> None:
    db = await make_db()
    async with db.call.watch() as changes:
        reading = asyncio.ensure_future(changes.__anext__())
        await asyncio.sleep(0)  # one turn: the read waits for an event
        reading.cancel()  # as asyncio.wait_for does when it gives up
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        assert listeners(db) == 1
        call = db.call.add(n=1)
        assert (await take(changes, 1))[0].uuid == call.uuid


async def test_close_ends_the_iteration_at_once(make_db: MakeDb) -> None:
    db = await make_db()
    changes = db.call.watch()
    async with changes:
        db.call.add(n=1)
        await changes.aclose()
        assert listeners(db) == 0
        assert [event async for event in changes] == []


async def test_stopping_the_database_ends_its_streams_after_the_events_they_hold(make_db: MakeDb) -> None:
    db = await make_db()
    seen: list[StreamEvent] = []
    started = asyncio.Event()

    async def consume() -> None:
        async with db.call.watch() as changes:
            started.set()
            async for event in changes:
                seen.append(event)

    task = asyncio.ensure_future(consume())
    await started.wait()
    db.call.add(n=1)
    db.call.add(n=2)
    await db.stop()
    await asyncio.wait_for(task, GUARD)
    assert kinds(seen) == ["Enter", "Enter"]
    assert listeners(db) == 0
    with pytest.raises(NotStartedError):
        db.call.watch()


async def test_bad_criteria_and_options_are_refused_at_the_call(make_db: MakeDb) -> None:
    db = await make_db()
    db.call.add(state="new")
    with pytest.raises(QueryError):
        db.call.watch(stat="new")
    with pytest.raises(QueryError):
        db.call.watch(buffer=0)
    assert listeners(db) == 0


# -- outages ---------------------------------------------------------------------------------------


@pytest.mark.nats
async def test_a_stream_keeps_going_through_a_server_restart(
    own_server: EmbeddedServer, namespace: str
) -> None:
    async with (
        Brainless(own_server.url, namespace=namespace, location="prague-1", flush_interval=0.02) as a,
        Brainless(own_server.url, namespace=namespace, location="brno-1", flush_interval=0.02) as b,
        b.call.watch(state="waiting") as changes,
    ):
        call = a.call.add(state="waiting", n=1)
        assert (await take(changes, 1))[0].uuid == call.uuid
        own_server.kill()
        call.n = 2  # pending on node A through the outage
        during = b.call.add(state="waiting", n=3)  # node B's own change is told at once
        assert [(e.uuid, e.origin) for e in await take(changes, 1)] == [(during.uuid, "local")]
        own_server.start()
        # Node A's change of the outage, merged once both are back; node B's own write is no news.
        [after] = await take(changes, 1)
        assert isinstance(after, Change) and after.uuid == call.uuid and after.origin == "remote"
        assert after.changes == {"n": (1, 2)}
        call.state = "answered"
        [leave] = await take(changes, 1)
        assert isinstance(leave, Leave) and leave.uuid == call.uuid and leave.origin == "remote"
