"""Change streams (docs/guides/change-streams.md): async for over a collection's events.

Brno keeps a board of the waiting calls from a stream, while Prague changes them:
calls enter the board, change on it, leave it and are deleted. Then a follower that
falls behind starts again from the current calls, and a plain loop waits for one
call.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from brainlessdb import (
    Brainless,
    Change,
    Collection,
    Delete,
    Enter,
    Leave,
    StreamEvent,
    StreamOverflowError,
)

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Call:
    channel_id: str
    state: str
    agent_id: int | None = None
    uuid: str | None = None


# --8<-- [start:view]
def apply(board: dict[str, Call], event: StreamEvent) -> None:
    """Keep ``board`` equal to the calls matching the stream's criteria."""
    match event:
        case Enter():  # new, changed into the criteria, or there when it began
            board[event.uuid] = event.entity
        case Change():  # still matching: event.entity is live, the board has it
            pass
        case Leave() | Delete():  # changed out of the criteria, or deleted
            del board[event.uuid]


# --8<-- [end:view]


async def prague_works(prague: Brainless, call: Call, other: Call) -> None:
    """Changes made on Prague, each written at once so that Brno sees each."""
    calls = prague.call.typed(Call)
    call.state = "waiting"  # enters Brno's board
    await prague.flush()
    call.agent_id = 7  # changes on it
    await prague.flush()
    call.state = "answered"  # leaves it
    await prague.flush()
    calls.delete(other)  # deleted while waiting
    await prague.flush()


async def waiting_board(prague: Brainless, brno: Brainless) -> None:
    here = prague.call.typed(Call)
    ringing = here.add(Call(channel_id="chan-1", state="ringing"))
    waiting = here.add(Call(channel_id="chan-2", state="waiting"))
    await prague.flush()
    await brno.call.load()  # Brno holds both now

    # --8<-- [start:watch]
    board: dict[str, Call] = {}
    seen: list[str] = []
    calls = brno.call.typed(Call)
    async with calls.watch(state="waiting", include_current=True) as changes:
        work = asyncio.create_task(prague_works(prague, ringing, waiting))
        async for event in changes:
            apply(board, event)
            seen.append(f"{type(event).__name__} {event.entity.channel_id}")
            if len(seen) == 5:
                break
        await work
    assert seen == [
        "Enter chan-2",  # waiting when the stream began (event.current)
        "Enter chan-1",  # Prague's change made it match
        "Change chan-1",  # agent_id 7, still waiting
        "Leave chan-1",  # answered: no longer waiting
        "Delete chan-2",  # deleted on Prague (event.reason == "deleted")
    ]
    assert board == {}
    # --8<-- [end:watch]


# --8<-- [start:follow]
async def follow(
    calls: Collection[Call], board: dict[str, Call], ready: asyncio.Event
) -> int:
    """Keep ``board`` equal to the waiting calls until the database stops.

    Returns how many times it fell behind and started again.
    """
    resyncs = 0
    while True:
        try:
            async with calls.watch(
                state="waiting", include_current=True, buffer=100
            ) as changes:
                board.clear()  # the current calls come first: it is rebuilt
                ready.set()
                async for event in changes:
                    apply(board, event)
            return resyncs  # the stream ended: the database stopped
        except StreamOverflowError:
            resyncs += 1  # over 100 events behind: start again from what is


# --8<-- [end:follow]


async def falling_behind(brno: Brainless) -> None:
    calls = brno.call.typed(Call)
    board: dict[str, Call] = {}
    ready = asyncio.Event()
    follower = asyncio.create_task(follow(calls, board, ready))
    await ready.wait()
    ready.clear()
    for number in range(500):  # 500 events at once: more than the buffer holds
        calls.add(Call(channel_id=f"burst-{number}", state="waiting"))
    await ready.wait()  # the follower started again
    expected = {call.uuid for call in await calls.filter(state="waiting")}
    await brno.stop()  # ends the stream once its events are read
    assert await follower == 1
    assert set(board) == expected
    assert len(board) == 500


# --8<-- [start:plain]
async def first_waiting(calls: Collection[Call]) -> Call:
    """The first call found waiting, now or later."""
    async for event in calls.watch(state="waiting", include_current=True):
        if isinstance(event, Enter):
            call: Call = event.entity
            return call  # leaving the loop unregisters the stream
    raise RuntimeError("the database stopped")


# --8<-- [end:plain]


async def main() -> None:
    async with (
        Brainless(NATS_URL, namespace="guide-streams", location="prague-1") as prague,
        Brainless(NATS_URL, namespace="guide-streams", location="brno-1") as brno,
    ):
        await waiting_board(prague, brno)
        calls = prague.call.typed(Call)
        first = calls.add(Call(channel_id="chan-3", state="waiting"))
        assert (await first_waiting(calls)).channel_id == "chan-3"
        first.state = "answered"
        await prague.flush()
        await brno.call.load()
        await falling_behind(brno)
        await calls.load()  # with Brno's calls, written when it stopped
        for call in await calls.all():  # leave the namespace empty for the next run
            calls.delete(call)


if __name__ == "__main__":
    asyncio.run(main())
