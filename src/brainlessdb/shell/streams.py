"""Change streams: the async iterator over a collection's events that ``collection.watch(...)`` returns.

The events come from the collection's table, inline, as each change is made here or merged from the
bucket (``core.streams.Subscription`` says what each is to the stream); this module holds them in a
bounded buffer until the consumer asks, and wakes it. A stream is fed from memory, so it lives through
NATS outages and reconnections untouched: the events of what was missed arrive as the watch catches up.

A stream is registered from its opening to its closing, and only holds a weak reference from the
table's side: one that nobody references any more (a plain ``async for`` that was left, a consuming task
that was cancelled) is unregistered when it is freed, and its buffer is bounded meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

from brainlessdb.core.entity import Entity
from brainlessdb.core.streams import Subscription
from brainlessdb.errors import StreamOverflowError
from brainlessdb.events import StreamEvent


class _State(enum.Enum):
    NEW = "new"  # not opened yet: opens at __aenter__ or at the first __anext__
    OPEN = "open"  # registered, taking events
    OVERFLOWED = "overflowed"  # its buffer was full: what it holds is read, then StreamOverflowError
    ENDED = "ended"  # the database stopped: what it holds is read, then the iteration ends
    CLOSED = "closed"  # closed: the iteration ends at once


class Stream:
    """A change stream (``brainlessdb.ChangeStream``): events held in a bounded buffer until read."""

    def __init__(self, subscription: Subscription, ready: Callable[[], Awaitable[None]]) -> None:
        self._subscription = subscription
        self._ready = ready
        self._state = _State.NEW
        self._current: deque[Entity] = deque()
        self._buffer: deque[StreamEvent] = deque()
        self._limit = subscription.options.buffer
        self._drop_oldest = subscription.options.overflow == "drop_oldest"
        self._arrived = asyncio.Event()
        self._reading = False
        self._in_block = False  # opened by ``async with``: the block's end closes it
        self.dropped = 0

    @property
    def collection(self) -> str:
        return self._subscription.collection

    async def _open(self) -> None:
        if self._state is not _State.NEW:
            return
        await self._ready()
        if self._state is not _State.NEW:
            return  # closed, or ended by the database, while the collection loaded
        held = weakref.ref(self)

        def deliver(event: StreamEvent) -> None:
            stream = held()
            if stream is not None:
                stream._put(event)

        # One step: registered and the current entities read, with no change in between.
        self._current.extend(self._subscription.open(deliver))
        self._state = _State.OPEN
        weakref.finalize(self, self._subscription.close).atexit = False

    def _put(self, event: StreamEvent) -> None:
        buffer = self._buffer
        if len(buffer) >= self._limit:
            if not self._drop_oldest:
                self._state = _State.OVERFLOWED
                self._subscription.close()  # nothing after this point is wanted: the consumer resyncs
                self._arrived.set()
                return
            buffer.popleft()
            self.dropped += 1
        buffer.append(event)
        self._arrived.set()

    async def __aenter__(self) -> Stream:
        self._in_block = True
        await self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._reading:
            raise RuntimeError("a change stream is read by one consumer at a time")
        self._reading = True
        try:
            await self._open()
            while True:
                if self._current:
                    return self._subscription.entered(self._current.popleft())
                if self._buffer:
                    return self._buffer.popleft()
                state = self._state
                if state is _State.OVERFLOWED:
                    self._state = _State.CLOSED
                    raise StreamOverflowError(self.collection, self._limit)
                if state is not _State.OPEN:
                    raise StopAsyncIteration
                self._arrived.clear()
                await self._arrived.wait()
        except asyncio.CancelledError:
            if not self._in_block:
                # A plain loop's task was cancelled: closed now, as an async generator would be, rather
                # than when the traceback that holds this frame is freed. A block closes at its end, so
                # that a read given up (asyncio.wait_for) leaves the stream to read again.
                self.close()
            raise
        finally:
            self._reading = False

    def close(self) -> None:
        """Unregister now and drop what is held: iteration ends at once (idempotent)."""
        self._state = _State.CLOSED
        self._subscription.close()
        self._current.clear()
        self._buffer.clear()
        self._arrived.set()

    async def aclose(self) -> None:
        """``close()``, for ``contextlib.aclosing`` and code that closes async iterators."""
        self.close()

    def end(self) -> None:
        """The database stops: no more events; those held are still read, then the iteration ends."""
        if self._state in (_State.NEW, _State.OPEN):
            self._state = _State.ENDED
        self._subscription.close()
        self._arrived.set()

    def __repr__(self) -> str:
        held = len(self._buffer) + len(self._current)
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        return f"<Stream {self.collection} {self._state.value}: {held} held of {self._limit}{dropped}>"
