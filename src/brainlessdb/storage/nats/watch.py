"""The supervised watcher of one NATS KV bucket: an ordered push consumer that resumes by itself.

nats-py's ``kv.watch()`` can signal the end of the initial data too early (nats-io/nats.py#842) and does
not survive reconnects, so ``KVWatcher`` runs its own consumer: a fresh inbox, an ephemeral in-memory
consumer without acks, flow control and idle heartbeats. Every data message carries its stream sequence
(the revision) and consumer sequence in its ``$JS.ACK`` reply subject; a consumer-sequence gap, three
missed heartbeats, a reconnect of the client or a failed creation make the supervisor drop the consumer
and create a new one from the last delivered revision + 1, with exponential backoff and jitter while it
fails. The end of the replay is decided against the stream's last sequence captured before the first
consumer, never by a pending count alone. Events are handed over in batches: the subscription callback
appends to a list and the reader takes the whole list at once (one wake-up per burst of messages, not
one queue hand-off per message). The list is bounded: a slow reader blocks the subscription callback,
which delays the flow-control replies, which makes the server pause delivery.

One concern, longer than most modules here: the supervisor's states (replaying, live, stalled,
restarting) and the messages that move between them are one state machine, easier to check whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import AsyncGenerator
from time import monotonic
from typing import Final

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy, StatusCode

from brainlessdb.errors import StorageError
from brainlessdb.retry import Backoff, cancel_and_wait
from brainlessdb.storage.base import CaughtUp, Entry, Op, Resumed, WatchBatch, WatchEvent
from brainlessdb.storage.nats.protocol import (
    CONSUMER_STALLED,
    KV_OPERATION,
    LAST_CONSUMER,
    MARKER_REASON,
    STATUS,
    operation_of,
    parse_ack_reply,
)

logger = logging.getLogger(__name__)

HEARTBEAT: Final = 1.0  # seconds between the server's idle heartbeats
MISSED_HEARTBEATS: Final = 3  # silent heartbeats before the consumer counts as lost
INACTIVE_THRESHOLD: Final = 30.0  # the server deletes a consumer nobody listens to after this
BACKOFF_MIN: Final = 0.1  # seconds before the first restart of a lost consumer
BACKOFF_MAX: Final = 5.0
HEALTHY_AFTER: Final = 10.0  # a consumer that lived this long resets the backoff
CHECK_INTERVAL: Final = 0.25
QUEUE_SIZE: Final = 1024  # events the reader may be behind before the subscription callback waits
DELETE_TIMEOUT: Final = 1.0
# Creating an R1 in-memory consumer takes milliseconds; longer means an election is under way, and
# asking again soon beats waiting for the full request timeout.
CREATE_TIMEOUT: Final = 2.0


class KVWatcher:
    """One supervised ordered push consumer on a KV bucket, read through ``batches()``."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        bucket: str,
        *,
        after: int | None,
        stats: dict[str, int],
        timeout: float = 5.0,
    ) -> None:
        self.bucket = bucket
        self._nc = nc
        self._js = js
        self._stream = f"KV_{bucket}"
        self._prefix = f"$KV.{bucket}."
        self._after = after
        self._stats = stats
        self._timeout = timeout
        self._prefix_length = len(self._prefix)
        # The events not yet taken by the reader, the reader waiting for some, and a subscription
        # callback waiting for the reader to take them (when QUEUE_SIZE are waiting).
        self._pending: WatchBatch = []
        self._wakeup: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        # Set once the iteration is over: the error to raise then, if any.
        self._ended = False
        self._error: StorageError | None = None
        # Revision of the last entry handed to the reader: the resume point, and the floor below which
        # a recreated consumer's messages are skipped.
        self._floor = after or 0
        self._target: int | None = None
        self._caught_up = False
        self._generation = 0
        self._sub: Subscription | None = None
        self._consumer: str | None = None
        self._delivered = 0
        self._reconnects = 0
        # Liveness: messages received (counted per message, cheaper than reading the clock), and when the
        # monitor last saw that count move (or a consumer started, or the reader made room).
        self._received = 0
        self._received_seen = 0
        self._last_activity = 0.0
        self._blocked = False
        self._idle_seen = False
        self._trouble: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX)
        self._deletions: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"after revision {self._floor}"
        failures = self._backoff.failures
        return f"<KVWatcher {self.bucket} {state}, consumer {self._consumer}, {failures} restarts in a row>"

    async def batches(self) -> AsyncGenerator[WatchBatch, None]:
        """The watch events in batches; closing this iterator (or cancelling its reader) stops the watcher."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"brainless-watch-{self.bucket}")
        try:
            while True:
                if not self._pending and not self._ended:
                    self._wakeup = asyncio.get_running_loop().create_future()
                    try:
                        await self._wakeup
                    finally:
                        self._wakeup = None
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return
                if self._pending:
                    # Revisions only grow in the list (the callback drops what is not above the floor),
                    # so a batch never repeats one, also across consumers.
                    batch, self._pending = self._pending, []
                    self._make_room()
                    yield batch
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop supervising, delete the consumer (best effort) and end the iteration."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not asyncio.current_task():
            await cancel_and_wait(task)
        await self._teardown()
        await asyncio.gather(*self._deletions)
        self._finish(None)

    def _push(self, event: WatchEvent) -> None:
        """Hand ``event`` to the reader (waking it if it waits)."""
        if self._ended:
            return
        self._pending.append(event)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _make_room(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    async def _wait_for_room(self) -> None:
        """Block the subscription callback until the reader took the pending events (or the watch ended)."""
        while len(self._pending) >= QUEUE_SIZE and not self._ended:
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            self._blocked = True
            try:
                await asyncio.shield(self._room)
            finally:
                self._blocked = False
        self._last_activity = monotonic()

    def _finish(self, error: StorageError | None) -> None:
        # What the reader has not taken is dropped: it resumes (or ends) after what it applied.
        self._pending = []
        self._ended = True
        self._error = error
        self._make_room()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _supervise(self) -> None:
        backoff = self._backoff
        stalled_since: float | None = None
        try:
            while not self._closed:
                if self._nc.is_closed:
                    self._closed = True
                    await self._teardown()
                    self._finish(StorageError(f"watch of {self.bucket!r} ended: the connection is closed"))
                    return
                if not self._nc.is_connected:
                    await asyncio.sleep(CHECK_INTERVAL)
                    continue
                started = monotonic()
                try:
                    await self._start_consumer()
                except (nats.errors.Error, asyncio.TimeoutError) as exc:
                    reason = f"consumer creation failed: {exc!r}"
                else:
                    if stalled_since is not None:
                        self._push(Resumed(self._floor, monotonic() - stalled_since))
                        stalled_since = None
                    reason = await self._monitor()
                    if monotonic() - started > HEALTHY_AFTER:
                        backoff.reset()
                if self._closed:
                    return
                if stalled_since is None:
                    # Live until the last message or heartbeat: the gap starts there.
                    self._note_activity()
                    stalled_since = min(self._last_activity, monotonic())
                self._stats["restarts"] = self._stats.get("restarts", 0) + 1
                delay = backoff.next()
                logger.warning(
                    "watch of %s restarts after revision %d in %.2fs: %s",
                    self.bucket,
                    self._floor,
                    delay,
                    reason,
                )
                await self._teardown()
                await asyncio.sleep(delay)
        except Exception as exc:
            # Never die silently: the reader gets the error and the log has the traceback.
            logger.exception("watch of %s failed", self.bucket)
            self._closed = True
            self._finish(StorageError(f"watch of {self.bucket!r} failed: {exc!r}"))

    async def _start_consumer(self) -> None:
        if self._target is None:
            state = (await self._js.stream_info(self._stream)).state
            self._target = state.last_seq
            if self._after is not None and state.last_seq < self._after:
                logger.warning(
                    "bucket %s ends at revision %d, before the requested %d: was it recreated?",
                    self.bucket,
                    state.last_seq,
                    self._after,
                )
            if state.messages == 0 or state.last_seq <= self._floor:
                self._mark_caught_up()
        self._generation += 1
        generation = self._generation
        self._delivered = 0
        self._trouble = None
        self._idle_seen = False
        self._reconnects = self._nc.stats["reconnects"]
        self._last_activity = monotonic()

        inbox = self._nc.new_inbox()
        # A partial, not a closure calling the method: one coroutine per message instead of two.
        self._sub = await self._nc.subscribe(inbox, cb=functools.partial(self._on_message, generation))
        replaying_lasts = self._after is None and not self._caught_up
        policy = DeliverPolicy.LAST_PER_SUBJECT if replaying_lasts else DeliverPolicy.BY_START_SEQUENCE
        config = ConsumerConfig(
            name=f"brainless_{secrets.token_hex(8)}",
            deliver_subject=inbox,
            # Until caught up, a recreated consumer replays the last entry per key again and skips those
            # at or below the floor: older revisions of a key need not be delivered.
            deliver_policy=policy,
            opt_start_seq=None if replaying_lasts else self._floor + 1,
            ack_policy=AckPolicy.NONE,
            flow_control=True,
            idle_heartbeat=HEARTBEAT,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=INACTIVE_THRESHOLD,
            filter_subject=f"{self._prefix}>",
            replay_policy=ReplayPolicy.INSTANT,
            headers_only=False,
        )
        # Named here, so that a creation that timed out (and may still happen) can be deleted too.
        self._consumer = config.name
        await self._js.add_consumer(self._stream, config, timeout=min(self._timeout, CREATE_TIMEOUT))
        logger.debug("watch of %s: consumer %s after revision %d", self.bucket, config.name, self._floor)

    async def _monitor(self) -> str:
        while not self._closed:
            await asyncio.sleep(CHECK_INTERVAL)
            if self._trouble is not None:
                return self._trouble
            if self._nc.is_closed or self._nc.stats["reconnects"] != self._reconnects:
                return "the client reconnected"
            self._note_activity()
            silent = monotonic() - self._last_activity
            if not self._blocked and silent > HEARTBEAT * MISSED_HEARTBEATS:
                return f"no message nor heartbeat for {silent:.1f}s"
            if self._idle_seen and not self._caught_up:
                await self._probe_caught_up()
        return "stopped"

    def _note_activity(self) -> None:
        """Move the time of the last activity to now if messages arrived since the last look (so it is
        known to within ``CHECK_INTERVAL``, plenty against a silence of ``MISSED_HEARTBEATS`` seconds)."""
        if self._received != self._received_seen:
            self._received_seen = self._received
            self._last_activity = monotonic()

    async def _probe_caught_up(self) -> None:
        # The normal end of the replay is an entry at or above the target. Should that entry be gone
        # (a subject purged by an operator), an idle consumer with nothing pending has delivered all.
        self._idle_seen = False
        consumer = self._consumer
        if consumer is None:
            return
        try:
            info = await self._js.consumer_info(self._stream, consumer, timeout=self._timeout)
        except (nats.errors.Error, asyncio.TimeoutError):
            return
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        if info.num_pending == 0 and delivered == self._delivered and consumer == self._consumer:
            self._mark_caught_up()

    def _mark_caught_up(self) -> None:
        if not self._caught_up and self._target is not None:
            self._caught_up = True
            self._push(CaughtUp(self._target))

    async def _on_message(self, generation: int, msg: Msg) -> None:
        # Runs for every message of the watch (the hot path of a load and of a node's own echoes).
        if generation != self._generation or self._closed:
            return  # a message for a consumer torn down since
        self._received += 1
        headers = msg.headers
        op = Op.PUT
        if headers:
            # Status messages are headers only; entries written by brainlessdb carry the CAS header.
            if STATUS in headers:
                await self._on_status(msg, headers)
                return
            if KV_OPERATION in headers or MARKER_REASON in headers:
                op = operation_of(headers)
        sequences = parse_ack_reply(msg.reply)
        if sequences is None:
            self._trouble = f"message without JetStream metadata on {msg.subject!r}"
            return
        stream_seq, consumer_seq, time_ns = sequences
        if consumer_seq != self._delivered + 1:
            self._trouble = f"consumer sequence gap: {self._delivered} then {consumer_seq}"
            return
        self._delivered = consumer_seq
        if stream_seq > self._floor:
            self._floor = stream_seq
            # _push() inlined: this runs for every entry.
            if not self._ended:
                self._pending.append(
                    Entry(msg.subject[self._prefix_length :], stream_seq, msg.data, op, time_ns)
                )
                wakeup = self._wakeup
                if wakeup is not None and not wakeup.done():
                    wakeup.set_result(None)
        if not self._caught_up and self._target is not None and stream_seq >= self._target:
            self._mark_caught_up()
        if len(self._pending) >= QUEUE_SIZE:
            await self._wait_for_room()

    async def _on_status(self, msg: Msg, headers: dict[str, str]) -> None:
        if headers[STATUS] != StatusCode.CONTROL_MESSAGE:
            self._trouble = f"status {headers[STATUS]} from the consumer"
            return
        # A flow-control request carries its reply subject; a heartbeat may carry one for a stalled
        # flow control. Answering is what lets the server send more.
        reply = msg.reply or headers.get(CONSUMER_STALLED)
        if reply:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.publish(reply)
        if msg.reply:
            return
        last = headers.get(LAST_CONSUMER)
        if last is not None and last.isdigit() and int(last) != self._delivered:
            self._trouble = f"heartbeat says consumer sequence {last}, received {self._delivered}"
            return
        self._idle_seen = True

    async def _teardown(self) -> None:
        self._generation += 1
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await sub.unsubscribe()
        consumer, self._consumer = self._consumer, None
        if consumer is not None and self._nc.is_connected:
            # In the background, so that a restart during a leader election does not wait for it;
            # stop() waits. Best effort: the server drops an abandoned consumer after INACTIVE_THRESHOLD.
            task = asyncio.create_task(self._delete_consumer(consumer))
            self._deletions.add(task)
            task.add_done_callback(self._deletions.discard)

    async def _delete_consumer(self, consumer: str) -> None:
        # OSError: a socket that broke under nats-py's publish; best effort, like the rest.
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError, OSError):
            await asyncio.wait_for(self._js.delete_consumer(self._stream, consumer), DELETE_TIMEOUT)
