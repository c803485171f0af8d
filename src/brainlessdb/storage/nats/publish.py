"""Pipelined compare-and-set publishing to KV buckets: every write of a batch sent at once, acks gathered.

A write of key ``k`` to bucket ``b`` is a publish to ``$KV.b.k`` carrying the key's expected last revision
in ``Nats-Expected-Last-Subject-Sequence`` (``0``: the key must not exist), and ``KV-Operation: DEL`` for a
delete marker. All writes of a batch are published without waiting; the server's acknowledgements
(``PubAck``: the stored sequence, or an API error such as a revision mismatch) arrive on one wildcard
subscription and are matched to their writes by reply subject. This runs for every write of every flush,
so the per-write work is kept small: no per-write registration, acks parsed by msgspec into a struct.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import Header

from brainlessdb.errors import PermissionDeniedError, StorageError, TooLargeError, UnavailableError
from brainlessdb.storage.base import Write, check_key
from brainlessdb.storage.nats.errors import STATUS_UNAVAILABLE, translate_error
from brainlessdb.storage.nats.protocol import KV_OPERATION

HEADER_OVERHEAD: Final = len(b"NATS/1.0\r\n\r\n")
EXPECTED_LAST_SUBJECT_SEQUENCE: Final = Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value
STATUS_HEADER: Final = Header.STATUS.value
MSG_TTL: Final = "Nats-TTL"  # per-message TTL (nats-server 2.11+), in a bucket that allows it
WINDOW: Final = 20_000
"""Writes sent before their acknowledgements are awaited. Far more at once (a million entities added before
one flush) and the server closes the connection: its acknowledgements pile up faster than the client, still
publishing, reads them."""
CHECK_INTERVAL: Final = 0.25  # how often a waiting write looks whether the connection dropped
_UNAVAILABLE: Final = str(STATUS_UNAVAILABLE)


class _ApiError(msgspec.Struct, gc=False):
    code: int | None = None
    err_code: int | None = None
    description: str | None = None


class _PubAck(msgspec.Struct, gc=False):
    """A JetStream publish acknowledgement: the stored message's sequence, or an API error."""

    seq: int | None = None
    error: _ApiError | None = None


# msgspec into a typed struct: an acknowledgement per write, parsed in C (stdlib json took 5% of a flush).
_pub_ack_decoder = msgspec.json.Decoder(_PubAck)


class AckBatch:
    """The writes of one ``Publisher.write()`` call and their results as the acknowledgements arrive.

    Write ``i`` of batch ``n`` is published with the reply subject ``<ack inbox>.<n>.<i>``, so an
    acknowledgement finds its write without any per-write registration. Only writes below ``sent`` were
    handed to the client; each of them gets exactly one result (``resolve`` ignores later ones).
    """

    __slots__ = ("bucket", "by_subject", "done", "remaining", "results", "sent", "writes")

    def __init__(self, bucket: str, writes: Sequence[Write]) -> None:
        self.bucket = bucket
        self.writes = writes
        self.results: list[int | Exception | None] = [None] * len(writes)
        self.sent = 0
        self.remaining = 0
        self.done = asyncio.Event()
        # Lowercased subject -> indexes of its writes, built on the first denial only (a rare event).
        self.by_subject: dict[str, list[int]] | None = None

    def resolve(self, index: int, result: int | Exception) -> None:
        if self.results[index] is not None:
            return
        self.results[index] = result
        self.remaining -= 1
        if self.remaining == 0:
            self.done.set()

    def deny(self, subject: str) -> None:
        """The server denied publishing to ``subject`` (lowercased): fail the writes sent to it."""
        if self.by_subject is None:
            self.by_subject = {}
            for index, write in enumerate(self.writes):
                self.by_subject.setdefault(f"$kv.{self.bucket}.{write.key}".lower(), []).append(index)
        for index in self.by_subject.get(subject, ()):
            if index < self.sent:
                key = self.writes[index].key
                self.resolve(index, PermissionDeniedError(f"no permission to write {key!r} ({subject})"))


class Publisher:
    """Writes batches of compare-and-set writes through one nats-py client and gathers their acks.

    A write that gets no acknowledgement fails with ``UnavailableError`` once none of its batch's
    acknowledgements came for ``timeout`` seconds: a batch of any size is waited for as long as the server
    keeps answering it.
    """

    def __init__(self, nc: Client, timeout: float) -> None:
        self.timeout = timeout
        self._nc = nc
        self._batches: dict[str, AckBatch] = {}  # the batches waiting for acknowledgements, by number
        self._inbox: str | None = None
        self._inbox_lock = asyncio.Lock()
        self._counter = 0

    @property
    def max_value_size(self) -> int:
        """The largest value a compare-and-set write of an entity may carry: the server's max_payload, less
        the headers such a write sends (with an expected revision of 20 digits at most)."""
        return self._nc.max_payload - (HEADER_OVERHEAD + len(EXPECTED_LAST_SUBJECT_SEQUENCE) + 20 + 4)

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        """Publish the writes and gather their acks; for each, its new revision or the error.

        A ``ConflictError`` means the key's revision was not the expected one; an ``UnavailableError``
        means no acknowledgement came in time (the write may or may not have been applied). Up to
        ``WINDOW`` writes are sent at once, then their acknowledgements awaited before the next ones.
        """
        if len(writes) <= WINDOW:
            return await self._write_window(bucket, writes)
        results: list[int | Exception] = []
        for start in range(0, len(writes), WINDOW):
            results.extend(await self._write_window(bucket, writes[start : start + WINDOW]))
        return results

    async def _write_window(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        """Publish ``writes`` all at once and gather their acks."""
        if not self._nc.is_connected:
            # Publishing now would only fill the client's reconnect buffer and wait for the timeout.
            return [UnavailableError("NATS is not connected")] * len(writes)
        inbox = await self._ack_inbox()
        self._counter += 1
        number = str(self._counter)
        reply_prefix = f"{inbox}.{number}."
        batch = AckBatch(bucket, writes)
        self._batches[number] = batch
        publish = self._nc.publish
        try:
            for index, write in enumerate(writes):
                batch.sent = index + 1  # from here on, a denial of its subject may resolve it
                batch.remaining += 1
                try:
                    subject, headers = self._prepare(bucket, write)
                    await publish(subject, write.value, reply=f"{reply_prefix}{index}", headers=headers)
                except StorageError as exc:
                    batch.resolve(index, exc)
                except (nats.errors.Error, asyncio.TimeoutError) as exc:
                    batch.resolve(index, translate_error(exc, write.key, write.expected_revision))
                except OSError as exc:
                    # nats-py flushes its buffer inline at times, and the broken socket's error comes out.
                    batch.resolve(index, UnavailableError(f"NATS connection lost: {exc!r}"))
            await self._gather(batch)
        finally:
            # Also when cancelled: forget the acknowledgements nobody waits for any more.
            del self._batches[number]
            for index in range(batch.sent):
                if batch.results[index] is None:
                    key = writes[index].key
                    batch.resolve(index, UnavailableError(f"no acknowledgement for {key!r} in time"))
        results: list[int | Exception] = []
        for result in batch.results:
            assert result is not None  # _gather() gave every write a revision or an error
            results.append(result)
        return results

    def deny(self, subject: str) -> None:
        """The server denied publishing to ``subject`` (lowercased): fail the writes waiting on it."""
        for batch in list(self._batches.values()):
            batch.deny(subject)

    async def _ack_inbox(self) -> str:
        # One wildcard subscription receives every acknowledgement (reply subjects ``<inbox>.<batch>.<i>``).
        # nats-py's publish_async does the same but loses JetStream API errors (its reply handler raises
        # instead of failing the future, so a revision conflict looks like a timeout), and it is slower
        # (see docs/performance.md).
        async with self._inbox_lock:
            if self._inbox is None:
                inbox = self._nc.new_inbox()
                await self._nc.subscribe(f"{inbox}.*.*", cb=self._on_ack)
                self._inbox = inbox
            return self._inbox

    async def _on_ack(self, msg: Msg) -> None:
        _, number, index_text = msg.subject.rsplit(".", 2)
        batch = self._batches.get(number)
        if batch is None:
            return  # the write gave up waiting already
        try:
            index = int(index_text)
            write = batch.writes[index]
        except (ValueError, IndexError):
            return  # not a reply to one of ours
        failure: BaseException
        headers = msg.headers
        if headers is not None and headers.get(STATUS_HEADER) == _UNAVAILABLE:
            failure = nats.errors.NoRespondersError()
        else:
            try:
                ack = _pub_ack_decoder.decode(msg.data)
            except msgspec.DecodeError as exc:
                failure = exc
            else:
                error = ack.error
                if error is None:
                    if ack.seq is not None:
                        batch.resolve(index, ack.seq)
                        return
                    failure = KeyError("seq")
                else:
                    failure = nats.js.errors.APIError(
                        code=error.code, err_code=error.err_code, description=error.description
                    )
        batch.resolve(index, translate_error(failure, write.key, write.expected_revision))

    def _prepare(self, bucket: str, write: Write) -> tuple[str, dict[str, str] | None]:
        """The subject and headers to publish ``write`` with; ``StorageError`` if it must not be sent."""
        key = write.key
        error = check_key(key)
        if error is not None:
            raise error
        size = len(write.value) + HEADER_OVERHEAD
        headers: dict[str, str] | None = None
        if write.expected_revision is not None:
            expected = str(write.expected_revision)
            headers = {EXPECTED_LAST_SUBJECT_SEQUENCE: expected}
            size += len(EXPECTED_LAST_SUBJECT_SEQUENCE) + len(expected) + 4
        if write.delete:
            headers = headers or {}
            headers[KV_OPERATION] = "DEL"
            size += len(KV_OPERATION) + len("DEL") + 4
        if write.ttl is not None:
            headers = headers or {}
            ttl = headers[MSG_TTL] = f"{max(1000, round(write.ttl * 1000))}ms"  # a Go duration, 1 s at least
            size += len(MSG_TTL) + len(ttl) + 4
        # The server closes a connection that sends more than its max_payload (headers included), so a
        # too large value must never be sent.
        if size > self._nc.max_payload:
            raise TooLargeError(key, size, self._nc.max_payload)
        return f"$KV.{bucket}.{key}", headers

    async def _gather(self, batch: AckBatch) -> None:
        if batch.remaining == 0:
            return
        batch.done.clear()  # set whenever the count touched zero while publishing
        loop = asyncio.get_running_loop()
        # ``timeout`` is how long the acknowledgements may stop coming, not how long they may take all
        # together: the server works through a large batch at its own pace, long after the last write was
        # sent, and a batch it answers more slowly than the timeout would otherwise never be written whole.
        deadline = loop.time() + self.timeout
        waiting = batch.remaining
        while batch.remaining > 0 and self._nc.is_connected:
            if batch.remaining < waiting:  # some came since the last look: the server is answering
                waiting = batch.remaining
                deadline = loop.time() + self.timeout
            left = deadline - loop.time()
            if left <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(batch.done.wait(), min(left, CHECK_INTERVAL))
