"""``NatsKVStorage``: the storage contract on NATS JetStream Key/Value; the one place nats errors are mapped.

Buckets are JetStream streams made and bound by ``buckets``; writes are pipelined compare-and-set
publishes whose acknowledgements are gathered together (``publish``); reads are direct gets; watches are
``KVWatcher``s (``watch``); headers and ack subjects are read by ``protocol``; a publish the server
denies fails what waits on it at once (``denials``). Every nats exception becomes a ``StorageError``:
``ConflictError`` on a revision mismatch, ``UnavailableError`` (retryable) when the server cannot be
reached or elects a leader, ``PermissionDeniedError`` when the account may not use a bucket (see
``denied_subject``). Credentials never reach a log line, a message or a repr: server URLs are shown
through ``redact_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import DEFAULT_PREFIX, Header

from brainlessdb.errors import ConflictError, PermissionDeniedError, StorageError, UnavailableError
from brainlessdb.storage.base import (
    Entry,
    Retained,
    WatchBatch,
    WatchEvent,
    Write,
    check_key,
    flatten,
    validate_bucket,
    validate_domain,
)
from brainlessdb.storage.nats.buckets import bind_stream, list_bucket_names, source_peers
from brainlessdb.storage.nats.denials import ErrorCallback, ErrorFanOut, Guards
from brainlessdb.storage.nats.errors import api_bucket_of, denied_subject, redact_servers, translate_error
from brainlessdb.storage.nats.protocol import KV_OPERATION, operation_of, time_ns_of
from brainlessdb.storage.nats.publish import Publisher
from brainlessdb.storage.nats.sources import copied_sequence, peer_own_sequence, restart_source
from brainlessdb.storage.nats.watch import KVWatcher

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT: Final = 1.0  # seconds to wait for the socket of a connection that could not be made
# A server that does not answer a ping within this long is not drained: nats-py would wait 10-30 s.
DRAIN_PING_TIMEOUT: Final = 1  # nats-py takes whole seconds
PROBE_TIMEOUT: Final = 0.5  # seconds a peer location's JetStream API may take to answer through its link


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
        self._publisher = Publisher(nc, timeout)
        self._watchers: set[KVWatcher] = set()
        self._closed = False
        self._failed_reconnects = 0  # connection errors since the connection was lost (one is a warning)
        self._guards = Guards()
        self._chained_error_cb: ErrorCallback | None = None
        self._fan_out = None if owns_connection else ErrorFanOut.install(nc)
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
        if not self.handle_denial(exc):
            if self._nc.is_connected:
                logger.warning("NATS connection error: %r", exc)
            else:
                # While the server is away every reconnect attempt fails: one warning, not one per attempt.
                self._failed_reconnects += 1
                if self._failed_reconnects == 1:
                    logger.warning("NATS connection error: %r (reconnecting; repeats at DEBUG)", exc)
                else:
                    logger.debug("NATS connection error: %r", exc)
        if self._chained_error_cb is not None:
            await self._chained_error_cb(exc)

    def handle_denial(self, exc: BaseException) -> bool:
        """Fail what waits on the subject of a permissions violation; False if ``exc`` is not one."""
        subject = denied_subject(exc)
        if subject is None:
            return False
        logger.warning("NATS denied publishing to %s: no permission", subject)
        self._publisher.deny(subject)
        # A key's subject fails only what publishes to that key; an API subject, what asks about its bucket
        # (or, for one about no bucket, such as the listing of buckets, what asks it).
        key = subject if subject.startswith("$kv.") else api_bucket_of(subject) or subject
        self._guards.deny(key, subject)
        return True

    async def _log_disconnect(self) -> None:
        if not self._closed:
            logger.warning("NATS disconnected")

    async def _log_reconnect(self) -> None:
        url = self._nc.connected_url
        failed, self._failed_reconnects = self._failed_reconnects, 0
        # Host and port only: the URL may carry credentials.
        logger.info(
            "NATS reconnected to %s:%s (%d failed attempts)",
            url.hostname if url else "?",
            url.port if url else "?",
            failed,
        )

    @property
    def max_value_size(self) -> int:
        """The largest value a write may carry: the server's ``max_payload`` (from the connection's server
        information, 1 MiB by default), less the headers of a compare-and-set write."""
        return self._publisher.max_value_size

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._direct)} buckets, {len(self._watchers)} watches"
        return f"<NatsKVStorage {state}, replicas={self.replicas}, history={self.history}>"

    async def open_bucket(self, bucket: str, *, create: bool = True, expiring: bool = False) -> bool:
        """Bind ``bucket``, or create it with our settings if ``create``; False if absent and not created.

        ``expiring``: the bucket allows per-message TTL (created so; an existing one must allow it).
        """
        self._check_open()
        validate_bucket(bucket)
        if bucket in self._direct and not expiring:
            return True  # bound already: spare the round trip (callers may open before every use)
        if not self._nc.is_connected:
            # Asking now would only wait in the client's reconnect buffer for the timeout.
            raise UnavailableError("NATS is not connected")
        stream = f"KV_{bucket}"
        try:
            binding = bind_stream(
                self._js,
                bucket,
                create=create,
                replicas=self.replicas,
                history=self.history,
                expiring=expiring,
            )
            info = await self._guards.guarded(binding, bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        if info is None:
            return False
        if info.config.max_msgs_per_subject < 1:
            raise StorageError(f"stream {stream!r} is not a key/value bucket")
        if expiring and not info.config.allow_msg_ttl:
            raise StorageError(f"bucket {bucket!r} exists without per-message TTL (allow_msg_ttl)")
        self._direct[bucket] = bool(info.config.allow_direct)
        return True

    async def allow_ttl(self, bucket: str, marker_ttl: float) -> bool:
        """Make the open ``bucket`` take writes with a ``ttl`` if the server can; True if it now does.

        Turns on the stream's per-message TTL (for good: a stream cannot turn it off) and the markers the
        server writes when a TTL empties a key, kept ``marker_ttl`` seconds. Only for a bucket keeping one
        version per key: with history, a TTL could bring an older version back (ADR-48). False where the
        server is older than 2.11, or the account may not update the bucket's stream (a warning says why:
        expired entities are then removed by the nodes).
        """
        self._check_open()
        stream = f"KV_{bucket}"
        try:
            info = await self._guards.guarded(self._js.stream_info(stream), bucket)
            config = info.config
            if config.max_msgs_per_subject != 1:
                return False
            if config.allow_msg_ttl:
                return True
            # A server older than 2.11 ignores the setting: the stream it returns does not have it.
            config.allow_msg_ttl = True
            config.subject_delete_marker_ttl = max(1.0, marker_ttl)
            updated = await self._guards.guarded(self._js.update_stream(config), bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            error = translate_error(exc)
            if isinstance(error, UnavailableError):
                raise error from exc
            logger.warning(
                "bucket %s cannot take per-message TTL (%s): the nodes remove expired entities", bucket, error
            )
            return False
        logger.info("bucket %s now takes per-message TTL", bucket)
        return bool(updated.config.allow_msg_ttl)

    async def source_peers(self, bucket: str, peers: Sequence[str]) -> list[str]:
        """Make the open ``bucket`` copy the own keys of the same bucket in each peer location (JetStream
        domain) under the prefix ``_<peer>.`` (see ``buckets``); the peers it did not source before."""
        self._check_open()
        for peer in peers:
            validate_domain(peer)
        try:
            return await self._guards.guarded(source_peers(self._js, bucket, tuple(peers)), bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc

    async def source_progress(self, bucket: str, peer: str) -> tuple[int | None, int]:
        """How far ``bucket`` copied ``peer``: the peer's newest own sequence (None: the peer does not
        answer) and the peer's sequence of the newest copy here (see ``sources``)."""
        self._check_open()
        try:
            own = await peer_own_sequence(self._nc, bucket, peer, PROBE_TIMEOUT)
            copied = await copied_sequence(self._nc, bucket, peer, self.timeout)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        return own, copied

    async def copied_by(self, bucket: str, peer: str, domain: str) -> int | None:
        """How far ``peer`` copied this location's (``domain``'s) keys of ``bucket``: the sequence here of
        the newest one it holds a copy of (0: none); None when the peer does not answer."""
        self._check_open()
        try:
            return await copied_sequence(self._nc, bucket, domain, PROBE_TIMEOUT, f"$JS.{peer}.API")
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, asyncio.TimeoutError):
            return None
        except nats.errors.Error as exc:
            raise translate_error(exc) from exc

    async def restart_source(self, bucket: str, peer: str) -> None:
        """Restart ``bucket``'s source of ``peer`` (one that stalled): it resumes where it stopped."""
        self._check_open()
        try:
            await restart_source(self._js, bucket, peer)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc

    async def jetstream_domain(self) -> str | None:
        """The JetStream domain of the server this storage is connected to (None: it has none)."""
        self._check_open()
        try:
            info = await self._js.account_info()
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        return info.domain or None

    async def list_buckets(self, prefix: str, *, domain: str | None = None) -> list[str]:
        """The names of the existing buckets that start with ``prefix``, sorted; of the JetStream domain
        ``domain`` (another location's, through its link) if given."""
        self._check_open()
        api = DEFAULT_PREFIX if domain is None else f"$JS.{domain}.API"
        timeout = self.timeout if domain is None else PROBE_TIMEOUT
        try:
            return await self._guards.guarded(
                list_bucket_names(self._nc, prefix, timeout, api), f"{api}.STREAM.NAMES"
            )
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        """Publish all writes at once and gather their acks; for each, its new revision or the error.

        A ``ConflictError`` means the key's revision was not the expected one; an ``UnavailableError``
        means no acknowledgement came in time (the write may or may not have been applied).
        """
        await self._bucket(bucket)
        results = await self._publisher.write(bucket, writes)
        failed = sum(isinstance(result, Exception) for result in results)
        self.stats["writes"] += len(results) - failed
        self.stats["write_errors"] += failed
        self.stats["conflicts"] += sum(isinstance(result, ConflictError) for result in results)
        logger.debug("wrote %d to %s, %d failed", len(results), bucket, failed)
        return results

    async def get(self, bucket: str, key: str) -> Entry | None:
        """The last entry of ``key`` (possibly a delete or purge marker), or None if the key has none."""
        direct = await self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        try:
            msg = await self._guards.guarded(
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
            info = await self._guards.guarded(self._js.stream_info(f"KV_{bucket}"), bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        return info.state.last_seq

    async def retained(self, bucket: str) -> Retained:
        """The stream's first and last sequence, and its creation time as its origin (see ``Retained``)."""
        await self._bucket(bucket)
        try:
            info = await self._guards.guarded(self._js.stream_info(f"KV_{bucket}"), bucket)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc) from exc
        state = info.state
        created = "" if info.created is None else info.created.isoformat()
        return Retained(state.first_seq, state.last_seq, created)

    async def purge(self, bucket: str, key: str) -> None:
        """Replace every entry of ``key`` by one ``PURGE`` marker (a KV purge: a subject rollup)."""
        await self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        headers = {KV_OPERATION: "PURGE", Header.ROLLUP.value: "sub"}
        try:
            subject = f"$KV.{bucket}.{key}"
            await self._guards.guarded(self._js.publish(subject, b"", headers=headers), subject)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc, key) from exc

    async def forget(self, bucket: str, key: str) -> None:
        """Remove every message of ``key`` from the bucket's stream, leaving no marker behind."""
        await self._bucket(bucket)
        error = check_key(key)
        if error is not None:
            raise error
        try:
            await self._guards.guarded(
                self._js.purge_stream(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}"), bucket
            )
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise translate_error(exc, key) from exc

    def watch(self, bucket: str, *, after: int | None = None) -> AsyncGenerator[WatchEvent, None]:
        """Entries of ``bucket`` forever: first a replay, then a ``CaughtUp``, then live changes.

        ``after=None`` replays the last entry of every key; ``after=n`` every retained entry with a
        revision above ``n``. The iterator survives reconnects and consumer losses by itself, never
        repeats a revision, and ends when the storage is closed (or raises ``StorageError`` if the
        connection was closed by someone else).
        """
        return flatten(self.watch_batches(bucket, after=after))

    async def watch_batches(
        self, bucket: str, *, after: int | None = None
    ) -> AsyncGenerator[WatchBatch, None]:
        """``watch()`` in batches: each holds every event that arrived since the reader last asked."""
        await self._bucket(bucket)
        watcher = KVWatcher(self._nc, self._js, bucket, after=after, stats=self.stats, timeout=self.timeout)
        self._watchers.add(watcher)
        try:
            async with contextlib.aclosing(watcher.batches()) as batches:
                async for batch in batches:
                    yield batch
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
            except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
                logger.warning("NATS drain failed, closing: %r", exc)
                # While nats-py reconnects, close() can meet the socket it lost (ConnectionResetError).
                with contextlib.suppress(nats.errors.Error, OSError):
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
