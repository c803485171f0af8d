"""``NatsKVStorage``: the storage contract on NATS JetStream Key/Value; the one place nats errors are mapped.

A bucket ``b`` is the stream ``KV_b`` with subjects ``$KV.b.<key>``, created here with the settings a KV
bucket has (ADR-8) plus direct get, and without the per-message TTL nats-py's ``create_key_value`` always
turns on; existing buckets are bound and never reconfigured. Writes are pipelined compare-and-set
publishes whose acknowledgements are gathered together, reads are direct gets, and watches are
``KVWatcher``s (``nats_watch.py``). Every nats exception becomes a ``StorageError``: ``ConflictError`` on a
revision mismatch, ``UnavailableError`` (retryable) when the server cannot be reached or elects a leader,
``PermissionDeniedError`` when the account may not use a bucket (see ``denied_subject``). Credentials never
reach a log line, a message or a repr: server URLs are shown through ``redact_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DEFAULT_PREFIX, DiscardPolicy, Header, StorageType, StreamConfig, StreamInfo

from brainlessdb.errors import ConflictError, PermissionDeniedError, StorageError, UnavailableError
from brainlessdb.storage.base import Entry, WatchEvent, Write
from brainlessdb.storage.memory import check_key, validate_bucket
from brainlessdb.storage.nats_errors import (
    ERR_STREAM_NAME_IN_USE,
    STATUS_UNAVAILABLE,
    api_bucket_of,
    denied_subject,
    redact_servers,
    translate_error,
)
from brainlessdb.storage.nats_watch import KV_OPERATION, KVWatcher, operation_of, time_ns_of

logger = logging.getLogger(__name__)

DUPLICATE_WINDOW: Final = 120.0  # seconds, as every KV bucket has
HEADER_OVERHEAD: Final = len(b"NATS/1.0\r\n\r\n")
CHECK_INTERVAL: Final = 0.25  # how often a waiting write looks whether the connection dropped
CLOSE_TIMEOUT: Final = 1.0  # seconds to wait for the socket of a connection that could not be made
# A server that does not answer a ping within this long is not drained: nats-py would wait 10-30 s.
DRAIN_PING_TIMEOUT: Final = 1  # nats-py takes whole seconds

T = TypeVar("T")
ErrorCallback = Callable[[Exception], Awaitable[None]]


def _retrieve(task: asyncio.Future[Any]) -> None:
    # The outcome of a request abandoned after a denial is of no interest: read it so nobody warns.
    if not task.cancelled():
        task.exception()


class _ErrorFanOut:
    """The error callback of a client connected by the caller: its own callback, and each storage's check.

    nats-py keeps a client's error callback in ``_error_cb``; wrapping it once per client lets the storages
    over it fail denied publishes fast too, while the caller's callback still sees every error. A client
    without that attribute is left alone: denied writes then time out as unavailable.
    """

    def __init__(self, original: ErrorCallback) -> None:
        self.original = original
        self.storages: weakref.WeakSet[NatsKVStorage] = weakref.WeakSet()

    @classmethod
    def install(cls, nc: Client) -> _ErrorFanOut | None:
        current: ErrorCallback | None = getattr(nc, "_error_cb", None)
        if isinstance(current, _ErrorFanOut) or current is None:
            return current
        fan_out = cls(current)
        nc._error_cb = fan_out
        return fan_out

    async def __call__(self, exc: Exception) -> None:
        for storage in list(self.storages):
            storage._handle_denial(exc)
        await self.original(exc)


class _AckBatch:
    """The writes of one ``write()`` call and their results as the acknowledgements arrive."""

    def __init__(self, writes: Sequence[Write]) -> None:
        self.writes = writes
        self.results: list[int | Exception | None] = [None] * len(writes)
        self.tokens: list[str] = []
        self.subjects: list[str] = []  # lowercased, one per token: what a permissions violation names
        self.remaining = 0
        self.done = asyncio.Event()

    def resolve(self, index: int, result: int | Exception) -> None:
        self.results[index] = result
        self.remaining -= 1
        if self.remaining == 0:
            self.done.set()


class NatsKVStorage:
    """The storage contract on NATS JetStream KV buckets, over a connected nats-py client."""

    def __init__(
        self,
        nc: Client,
        *,
        replicas: int = 1,
        history: int = 1,
        owns_connection: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self.replicas = replicas
        self.history = history
        self.timeout = timeout
        self.stats: dict[str, int] = {"writes": 0, "write_errors": 0, "conflicts": 0, "restarts": 0}
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._owns_connection = owns_connection
        self._direct: dict[str, bool] = {}  # per open bucket: may reads use direct get?
        self._acks: dict[str, tuple[_AckBatch, int]] = {}
        self._ack_prefix: str | None = None
        self._ack_lock = asyncio.Lock()
        self._ack_counter = 0
        self._watchers: set[KVWatcher] = set()
        self._closed = False
        # Who waits on a subject the server may deny, by lowercased subject: the tokens of the writes
        # published to it, and the requests on a bucket (key: the bucket) or on one key (key: its subject).
        self._write_subjects: dict[str, set[str]] = {}
        self._guards: dict[str, set[asyncio.Future[str]]] = {}
        self._chained_error_cb: ErrorCallback | None = None
        self._fan_out = None if owns_connection else _ErrorFanOut.install(nc)
        if self._fan_out is not None:
            self._fan_out.storages.add(self)

    @classmethod
    async def connect(
        cls,
        servers: str | list[str],
        *,
        replicas: int = 1,
        history: int = 1,
        timeout: float = 5.0,
        **options: Any,
    ) -> NatsKVStorage:
        """Connect to ``servers`` (reconnecting for ever) and return a storage that owns the connection.

        ``options`` go to ``nats.connect`` and override the defaults chosen here.
        """

        storage = cls(Client(), replicas=replicas, history=history, owns_connection=True, timeout=timeout)
        storage._chained_error_cb = options.pop("error_cb", None)
        settings: dict[str, Any] = {
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.25,
            "connect_timeout": 2,
            "error_cb": storage._on_error,
            "disconnected_cb": storage._log_disconnect,
            "reconnected_cb": storage._log_reconnect,
            "name": "brainlessdb",
        }
        settings.update(options)
        try:
            await storage._nc.connect(servers, **settings)
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            # nats-py may leave the refused connection's socket open: close it (waiting for the close
            # only briefly: after a failed TLS handshake it never reports being done).
            with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(storage._nc.close(), CLOSE_TIMEOUT)
            message = f"cannot connect to NATS at {redact_servers(servers)}: {exc!r}"
            if isinstance(exc, nats.errors.AuthorizationError):
                raise PermissionDeniedError(message) from exc
            raise UnavailableError(message) from exc
        return storage

    async def _on_error(self, exc: Exception) -> None:
        """The error callback of a connection opened here: act on it, log it, pass it on."""
        if not self._handle_denial(exc):
            logger.warning("NATS connection error: %r", exc)
        if self._chained_error_cb is not None:
            await self._chained_error_cb(exc)

    def _handle_denial(self, exc: BaseException) -> bool:
        """Fail what waits on the subject of a permissions violation; False if ``exc`` is not one."""
        subject = denied_subject(exc)
        if subject is None:
            return False
        logger.warning("NATS denied publishing to %s: no permission", subject)
        for token in self._write_subjects.pop(subject, ()):
            self._deny_write(token, subject)
        # A key's subject fails only what publishes to that key; an API subject, what asks about its bucket.
        key = subject if subject.startswith("$kv.") else api_bucket_of(subject)
        for guard in self._guards.get(key or "", ()):
            if not guard.done():
                guard.set_result(subject)
        return True

    def _deny_write(self, token: str, subject: str) -> None:
        waiting = self._acks.pop(token, None)
        if waiting is not None:
            batch, index = waiting
            key = batch.writes[index].key
            batch.resolve(index, PermissionDeniedError(f"no permission to write {key!r} ({subject})"))

    async def _guarded(self, operation: Coroutine[Any, Any, T], *keys: str) -> T:
        """Run ``operation``, failing it with ``PermissionDeniedError`` as soon as the server denies a
        publish to one of ``keys`` (a bucket's API subjects, or a key's subject)."""
        denied: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        keys = tuple(key.lower() for key in keys)
        for key in keys:
            self._guards.setdefault(key, set()).add(denied)
        task = asyncio.ensure_future(operation)
        try:
            await asyncio.wait((task, denied), return_when=asyncio.FIRST_COMPLETED)
            if task.done() or not denied.done():
                return task.result()
            raise PermissionDeniedError(f"no permission to publish to {denied.result()}")
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_retrieve)
            for key in keys:
                waiting = self._guards.get(key)
                if waiting is not None:
                    waiting.discard(denied)
                    if not waiting:
                        del self._guards[key]

    async def _log_disconnect(self) -> None:
        if not self._closed:
            logger.warning("NATS disconnected")

    async def _log_reconnect(self) -> None:
        url = self._nc.connected_url
        # Host and port only: the URL may carry credentials.
        logger.info("NATS reconnected to %s:%s", url.hostname if url else "?", url.port if url else "?")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._direct)} buckets, {len(self._watchers)} watches"
        return f"<NatsKVStorage {state}, replicas={self.replicas}, history={self.history}>"

    async def open_bucket(self, bucket: str, *, create: bool = True) -> bool:
        """Bind ``bucket``, or create it with our settings if ``create``; False if absent and not created."""
        self._check_open()
        validate_bucket(bucket)
        if bucket in self._direct:
            return True  # bound already: spare the round trip (callers may open before every use)
        stream = f"KV_{bucket}"
        try:
            info = await self._guarded(self._bind(bucket, create), bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        if info is None:
            return False
        if info.config.max_msgs_per_subject < 1:
            raise StorageError(f"stream {stream!r} is not a key/value bucket")
        self._direct[bucket] = bool(info.config.allow_direct)
        return True

    async def _bind(self, bucket: str, create: bool) -> StreamInfo | None:
        stream = f"KV_{bucket}"
        try:
            return await self._js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            if not create:
                return None
        try:
            info = await self._js.add_stream(self._stream_config(bucket))
            if info.did_create:
                logger.info("created bucket %s (replicas=%d)", bucket, self.replicas)
            return info
        except nats.js.errors.APIError as exc:
            # Another node created it first, with other settings: bind what it made.
            if exc.err_code != ERR_STREAM_NAME_IN_USE:
                raise
            return await self._js.stream_info(stream)

    def _stream_config(self, bucket: str) -> StreamConfig:
        return StreamConfig(
            name=f"KV_{bucket}",
            subjects=[f"$KV.{bucket}.>"],
            max_msgs_per_subject=self.history,
            max_msgs=-1,
            max_bytes=-1,
            max_age=0,
            max_msg_size=-1,
            max_consumers=-1,
            discard=DiscardPolicy.NEW,
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
            num_replicas=self.replicas,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW,
        )

    async def list_buckets(self, prefix: str) -> list[str]:
        """The names of the existing buckets that start with ``prefix``, sorted."""
        self._check_open()
        names: list[str] = []
        offset = 0
        try:
            while True:
                request = json.dumps({"offset": offset}).encode()
                reply = await self._nc.request(
                    f"{DEFAULT_PREFIX}.STREAM.NAMES", request, timeout=self.timeout
                )
                response = json.loads(reply.data)
                if "error" in response:
                    nats.js.errors.APIError.from_error(response["error"])
                page: list[str] = response.get("streams") or []
                names.extend(page)
                offset += len(page)
                if not page or offset >= int(response.get("total", 0)):
                    break
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        start = f"KV_{prefix}"
        return sorted(name[3:] for name in names if name.startswith(start))

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        """Publish all writes at once and gather their acks; for each, its new revision or the error.

        A ``ConflictError`` means the key's revision was not the expected one; an ``UnavailableError``
        means no acknowledgement came in time (the write may or may not have been applied).
        """
        await self._bucket(bucket)
        batch = _AckBatch(writes)
        if not self._nc.is_connected:
            # Publishing now would only fill the client's reconnect buffer and wait for the timeout.
            batch.results = [UnavailableError("NATS is not connected")] * len(writes)
        else:
            inbox = await self._ack_inbox()
            try:
                for index, write in enumerate(writes):
                    try:
                        await self._publish(inbox, bucket, batch, index)
                    except StorageError as exc:
                        batch.results[index] = exc
                    except (nats.errors.Error, asyncio.TimeoutError) as exc:
                        batch.results[index] = translate_error(exc, write.key, write.expected_revision)
                    except OSError as exc:
                        # nats-py flushes its buffer inline at times, and the broken socket's error comes out.
                        batch.results[index] = UnavailableError(f"NATS connection lost: {exc!r}")
                await self._gather(batch)
            finally:
                # Also when cancelled: forget the acknowledgements nobody waits for any more.
                for token, subject in zip(batch.tokens, batch.subjects, strict=True):
                    self._forget_subject(subject, token)
                    if (waiting := self._acks.pop(token, None)) is not None:
                        key = writes[waiting[1]].key
                        batch.resolve(waiting[1], UnavailableError(f"no acknowledgement for {key!r} in time"))
        results: list[int | Exception] = []
        for result in batch.results:
            assert result is not None  # _gather() gave every write a revision or an error
            results.append(result)
        failed = sum(isinstance(result, Exception) for result in results)
        self.stats["writes"] += len(results) - failed
        self.stats["write_errors"] += failed
        self.stats["conflicts"] += sum(isinstance(result, ConflictError) for result in results)
        logger.debug("wrote %d to %s, %d failed", len(results), bucket, failed)
        return results

    async def _ack_inbox(self) -> str:
        # One wildcard subscription receives every acknowledgement. nats-py's publish_async does the
        # same but loses JetStream API errors (its reply handler raises instead of failing the future,
        # so a revision conflict looks like a timeout), and it measured ~1.3x slower.
        async with self._ack_lock:
            if self._ack_prefix is None:
                prefix = self._nc.new_inbox()
                await self._nc.subscribe(f"{prefix}.*", cb=self._on_ack)
                self._ack_prefix = prefix
            return self._ack_prefix

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._acks.pop(msg.subject.rpartition(".")[2], None)
        if waiting is None:
            return  # the write gave up waiting already
        batch, index = waiting
        write = batch.writes[index]
        failure: BaseException
        if msg.headers is not None and msg.headers.get(Header.STATUS.value) == str(STATUS_UNAVAILABLE):
            failure = nats.errors.NoRespondersError()
        else:
            try:
                response = json.loads(msg.data)
                error = response.get("error")
                if error is None:
                    batch.resolve(index, int(response["seq"]))
                    return
                failure = nats.js.errors.APIError(
                    code=error.get("code"),
                    err_code=error.get("err_code"),
                    description=error.get("description"),
                )
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                failure = exc
        batch.resolve(index, translate_error(failure, write.key, write.expected_revision))

    async def _publish(self, inbox: str, bucket: str, batch: _AckBatch, index: int) -> None:
        write = batch.writes[index]
        error = check_key(write.key)
        if error is not None:
            raise error
        headers: dict[str, str] = {}
        if write.expected_revision is not None:
            headers[Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value] = str(write.expected_revision)
        if write.delete:
            headers[KV_OPERATION] = "DEL"
        # The server closes a connection that sends more than its max_payload (headers included), so a
        # too large value must never be sent.
        size = len(write.value) + HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items())
        if size > self._nc.max_payload:
            raise StorageError(f"{write.key!r}: {size} bytes, over the {self._nc.max_payload} bytes limit")
        self._ack_counter += 1
        token = str(self._ack_counter)
        subject = f"$KV.{bucket}.{write.key}"
        denial_key = subject.lower()
        self._acks[token] = (batch, index)
        self._write_subjects.setdefault(denial_key, set()).add(token)
        batch.tokens.append(token)
        batch.subjects.append(denial_key)
        batch.remaining += 1
        batch.done.clear()
        try:
            await self._nc.publish(subject, write.value, reply=f"{inbox}.{token}", headers=headers or None)
        except BaseException:
            del self._acks[token]
            self._forget_subject(batch.subjects.pop(), batch.tokens.pop())
            batch.remaining -= 1
            raise

    def _forget_subject(self, subject: str, token: str) -> None:
        tokens = self._write_subjects.get(subject)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._write_subjects[subject]

    async def _gather(self, batch: _AckBatch) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while batch.remaining > 0 and self._nc.is_connected and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(batch.done.wait(), min(left, CHECK_INTERVAL))

    async def get(self, bucket: str, key: str) -> Entry | None:
        """The last entry of ``key`` (possibly a delete or purge marker), or None if the key has none."""
        direct = await self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        try:
            msg = await self._guarded(
                self._js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{key}", direct=direct), bucket
            )
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        if msg.seq is None:
            raise StorageError(f"message of {key!r} without a sequence")
        return Entry(
            key=key,
            revision=msg.seq,
            value=msg.data or b"",
            op=operation_of(msg.headers),
            time_ns=time_ns_of(msg.headers, msg.time),
        )

    async def last_revision(self, bucket: str) -> int:
        """The bucket's stream last sequence (0 when it never had an entry)."""
        await self._bucket(bucket)
        try:
            info = await self._guarded(self._js.stream_info(f"KV_{bucket}"), bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        return info.state.last_seq

    async def purge(self, bucket: str, key: str) -> None:
        """Replace every entry of ``key`` by one ``PURGE`` marker (a KV purge: a subject rollup)."""
        await self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        headers = {KV_OPERATION: "PURGE", Header.ROLLUP.value: "sub"}
        try:
            subject = f"$KV.{bucket}.{key}"
            await self._guarded(self._js.publish(subject, b"", headers=headers), subject)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc, key) from exc

    async def forget(self, bucket: str, key: str) -> None:
        """Remove every message of ``key`` from the bucket's stream, leaving no marker behind."""
        await self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        try:
            await self._guarded(self._js.purge_stream(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}"), bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc, key) from exc

    async def watch(self, bucket: str, *, after: int | None = None) -> AsyncGenerator[WatchEvent, None]:
        """Entries of ``bucket`` forever: first a replay, then a ``CaughtUp``, then live changes.

        ``after=None`` replays the last entry of every key; ``after=n`` every retained entry with a
        revision above ``n``. The iterator survives reconnects and consumer losses by itself, never
        repeats a revision, and ends when the storage is closed (or raises ``StorageError`` if the
        connection was closed by someone else).
        """
        await self._bucket(bucket)
        watcher = KVWatcher(self._nc, self._js, bucket, after=after, stats=self.stats, timeout=self.timeout)
        self._watchers.add(watcher)
        try:
            async with contextlib.aclosing(watcher.events()) as events:
                async for event in events:
                    yield event
        finally:
            self._watchers.discard(watcher)
            await watcher.stop()

    async def close(self) -> None:
        """Stop every watch; drain and close the connection if this storage owns it."""
        if self._closed:
            return
        self._closed = True
        if self._fan_out is not None:
            self._fan_out.storages.discard(self)
        await asyncio.gather(*(watcher.stop() for watcher in list(self._watchers)))
        if self._owns_connection and not self._nc.is_closed:
            try:
                if self._nc.is_connected:
                    await self._nc.flush(timeout=DRAIN_PING_TIMEOUT)
                await self._nc.drain()
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                logger.warning("NATS drain failed, closing: %r", exc)
                with contextlib.suppress(nats.errors.Error):
                    await self._nc.close()

    def _check_open(self) -> None:
        if self._closed or self._nc.is_closed:
            raise StorageError("the storage is closed")

    async def _bucket(self, bucket: str) -> bool:
        """Whether ``bucket`` has direct get; binds it on first use, a ``StorageError`` if absent."""
        self._check_open()
        if bucket not in self._direct and not await self.open_bucket(bucket, create=False):
            raise StorageError(f"no bucket {bucket!r}: open_bucket() it first")
        return self._direct[bucket]
