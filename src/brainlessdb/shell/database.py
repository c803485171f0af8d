"""Brainless: one database — its collections, its storage, and the background tasks that sync them.

``start()`` connects the storage, discovers the namespace's collections from their stored schemas, loads
each (one replay per bucket) and keeps watching it, then starts the flusher. ``stop()`` stops the tasks,
writes what is pending and releases the connection if it was opened here. In between, collections are
reached as attributes (``db.call``) and answer from memory.

The module is the composition root: it builds the storage, the collections and every background part,
and implements the ``Host`` protocol the collections call. Each part's work lives in its own module
(``flusher``, ``watches``, ``housekeeping``, ``claims``, ``leases``, ``callbacks``, ``journal``); what
stays here is wiring, a little over the size the other modules keep to.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import warnings
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from brainlessdb.core import names
from brainlessdb.core.claims import Claim
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.collection import Collection, Lag
from brainlessdb.core.ids import location_node
from brainlessdb.core.streams import ChangeStream, Subscription
from brainlessdb.errors import (
    BrainlessError,
    ConfigurationError,
    FlushError,
    NotStartedError,
    UnavailableError,
)
from brainlessdb.events import Event, Listener
from brainlessdb.shell import migration
from brainlessdb.shell.callbacks import CallbackRunner
from brainlessdb.shell.claims import Claims
from brainlessdb.shell.expiry import ExpiryTimer, settle_mode
from brainlessdb.shell.flusher import Flusher
from brainlessdb.shell.housekeeping import Housekeeper
from brainlessdb.shell.journal import Journal
from brainlessdb.shell.lag import WatchLag
from brainlessdb.shell.leases import Lease, Leases
from brainlessdb.shell.presence import Presence
from brainlessdb.shell.snapshots import Snapshots
from brainlessdb.shell.sources import SourceMonitor
from brainlessdb.shell.streams import Stream
from brainlessdb.shell.synced import Syncing
from brainlessdb.shell.watches import CollectionWatches
from brainlessdb.storage.base import LocationStorage, Storage, joins_locations, validate_domain
from brainlessdb.storage.source import open_storage

logger = logging.getLogger(__name__)


NatsSource = Any  # a connected nats-py client, a URL or list of URLs, a Storage, or None


class DatabaseState(enum.Enum):
    """Where a database is in its life: ``start()`` once, ``stop()`` once."""

    NEW = "new"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"


_RUNNING: Final = (DatabaseState.STARTED, DatabaseState.STOPPING)
"""The states of a database that ``stop()`` has not ended."""


class Brainless:
    """A database of collections kept in memory and synced through NATS JetStream KV.

    ``nats`` is a connected nats-py client, a server URL or list of URLs (the connection is then opened
    and closed here, with ``nats_options`` passed to ``nats.connect``: credentials, TLS...), or ``None``
    for a purely in-memory database. ``replicas`` and ``history`` apply to buckets created here;
    delete markers are removed ``delete_retention`` seconds after the delete. ``update_if`` (a
    conditional update) raises ``UnavailableError`` when NATS does not answer within ``claim_timeout``.

    ``snapshot_dir``: this node writes a snapshot of each collection there every ``snapshot_interval``
    seconds and at ``stop()``, and starts from it, replaying only what changed since (the operating
    guide, "Warm restarts"); it needs NATS (or a given storage), not the in-memory mode.

    **Locations** (see docs/locations.md): ``domain`` is the JetStream domain of this node's NATS (its
    location's), ``peers`` those of the other locations, joined by leaf nodes. Each collection's bucket then
    copies the other locations' own keys (under ``_<peer>.``), each node reads the merge of every
    location's version, and writes only its own location's keys: every location keeps working through a
    partition, and all converge once it heals.
    """

    def __init__(
        self,
        nats: NatsSource = None,
        namespace: str = "default",
        location: str | None = None,
        flush_interval: float = 0.5,
        *,
        replicas: int = 1,
        history: int = 1,
        stop_timeout: float = 10.0,
        delete_retention: float = 86400.0,
        nats_options: dict[str, Any] | None = None,
        journal: str | Path | None = None,
        connect_timeout: float = 10.0,
        claim_timeout: float = 5.0,
        domain: str | None = None,
        peers: Sequence[str] = (),
        snapshot_dir: str | Path | None = None,
        snapshot_interval: float = 60.0,
    ) -> None:
        names.check_namespace(namespace)
        self.domain, self.peers = _check_locations(domain, peers)
        if flush_interval < 0:
            raise ValueError("flush_interval must be >= 0")
        self.namespace = namespace
        self.location = location or socket.gethostname()
        self.flush_interval = flush_interval
        self.replicas = replicas
        self.history = history
        self.stop_timeout = stop_timeout
        if delete_retention <= 0:
            raise ValueError("delete_retention must be > 0 seconds")
        self.delete_retention = delete_retention
        self._nats_options = dict(nats_options or {})
        self._journal_path = journal
        self._snapshot_dir = _check_snapshots(snapshot_dir, snapshot_interval, nats, peers)
        self.snapshot_interval = snapshot_interval
        self._snapshots: Snapshots | None = None
        self.connect_timeout = connect_timeout
        if not claim_timeout > 0:
            raise ValueError("claim_timeout must be > 0 seconds")
        self.claim_timeout = claim_timeout
        self._claims: Claims | None = None
        self._journal: Journal | None = None
        self.clock = HybridLogicalClock(self.location)
        self.uuid_node = location_node(self.location)
        self._source = nats
        self._storage: Storage | None = None
        self._owns_storage = False
        self._collections: dict[str, Collection[Any]] = {}
        self._watches: CollectionWatches | None = None
        self._loaded: set[Collection[Any]] = set()
        self._flusher: Flusher | None = None
        self._callbacks = CallbackRunner()
        self.emit: Callable[[Listener, Event], None] = self._callbacks.emit  # for the Host protocol
        self._housekeeper: Housekeeper | None = None
        self._leases: Leases | None = None
        self._sources: SourceMonitor | None = None
        self._presence: Presence | None = None
        self._lag = WatchLag()
        self._syncing: Syncing | None = None
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()  # the open change streams, ended at stop()
        self._expiry = ExpiryTimer(self._collections.values, self.clock.now_ms)
        self._state = DatabaseState.NEW
        self._changes_stopped = False  # once stop() has taken its final flush: changes are refused

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> Brainless:
        """Connect, load every stored collection of the namespace, and start syncing."""
        if self._state is DatabaseState.STARTED:
            return self
        if self._state is DatabaseState.STOPPED:
            raise NotStartedError("a stopped database cannot be started again; make a new one")
        self._storage, self._owns_storage = await self._open_storage()
        locations = await self._check_domain(self._storage) if self.peers else None
        for collection in self._collections.values():
            collection.limit_values(self._value_limit())
        if self._journal_path is not None:
            self._journal = Journal(self._journal_path)
        self._flusher = Flusher(
            self._storage,
            self._collections.values,
            self._bucket,
            self.flush_interval,
            on_written=self._written,
        )
        self._leases = Leases(
            self._storage, names.lease_bucket(self.namespace), self.location, self.connect_timeout
        )
        self._claims = Claims(
            self._storage, self.clock, self.claim_timeout, self.flush_collection, self.ready
        )
        if self._snapshot_dir is not None:
            self._snapshots = Snapshots(
                self._snapshot_dir,
                self._storage,
                self.namespace,
                self.delete_retention,
                self.clock.now_ms,
                self.snapshot_interval,
            )
        self._watches = CollectionWatches(
            self._storage,
            self.bucket_name,
            self.delete_retention,
            locations=locations,
            peers=self.peers,
            restore=None if self._snapshots is None else self._snapshots.restore,
        )
        self._loaded = self._watches.loaded
        moved = await migration.move_schemas(self._storage, self.namespace)
        for name in [*moved, *await migration.stored_collections(self._storage, self.namespace, self.peers)]:
            self.collection(name)
        self._state = DatabaseState.STARTED
        for collection in list(self._collections.values()):
            self._watches.attach(collection)
        collections = list(self._collections.values())
        loaded = await asyncio.gather(*(self.ready(c) for c in collections), return_exceptions=True)
        for collection, result in zip(collections, loaded, strict=True):
            if isinstance(result, BrainlessError):
                # This collection fails at its first use; the others work.
                logger.error("collection %r cannot be loaded: %s", collection.name, result)
            elif isinstance(result, BaseException):
                raise result
        if self._journal is not None:
            await self._journal.restore(self._open_collection)
        self._flusher.start()
        self._expiry.start()
        self._syncing = Syncing(
            self._flusher, self._watches, self._storage, self.bucket_name, self.ready, self._lag
        )
        if locations is not None:
            watches = self._watches
            assert self.domain is not None
            self._sources = SourceMonitor(
                locations,
                lambda: [bucket for _, bucket in watches.followed()],
                self.peers,
                self.domain,
            )
            self._sources.start()
        self._housekeeper = Housekeeper(
            self._storage,
            self._watches.followed,
            lambda: self.delete_retention,
            self.changed,
            None if self._sources is None else self._sources.still_needed,
        )
        self._housekeeper.start()
        if self._snapshots is not None:
            self._snapshots.start(self._watches.followers)
        if any(c.sync.has_pending() for c in self._collections.values()):
            self._flusher.wake()
        self._presence = Presence(
            self._storage,
            self.namespace,
            self.clock.replica,
            self.location,
            domain=self.domain,
            stats=self.stats,
            timeout=self.connect_timeout,
        )
        self._presence.start()
        return self

    async def _check_domain(self, storage: Storage) -> LocationStorage:
        """With peers: the storage must copy other locations' keys, and its server be in ``domain``."""
        if not joins_locations(storage):
            if self._owns_storage:
                await storage.close()
            raise ConfigurationError("locations (peers=...) need a NATS storage: they are JetStream domains")
        actual = await storage.jetstream_domain()
        if actual != self.domain:
            if self._owns_storage:
                await storage.close()
            raise ConfigurationError(
                f"this node's NATS is in the JetStream domain {actual!r}, not {self.domain!r} (domain=...): "
                "set the server's jetstream.domain, or connect to the server of this location"
            )
        return storage

    async def _open_storage(self) -> tuple[Storage, bool]:
        return await open_storage(
            self._source,
            replicas=self.replicas,
            history=self.history,
            nats_options=self._nats_options,
            connect_timeout=self.connect_timeout,
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop syncing, write everything pending (within ``timeout`` seconds), and disconnect.

        Raises ``FlushError`` listing what could not be written; it stays in memory only.
        """
        if self._state is not DatabaseState.STARTED:
            self._state = DatabaseState.STOPPED
            self._stop_changes()
            self._end_streams()
            return
        self._state = DatabaseState.STOPPING
        assert self._flusher is not None
        assert self._storage is not None
        # This node's heartbeat is deleted during the final flush (within a second, or it expires).
        leaving = None if self._presence is None else asyncio.ensure_future(self._presence.stop())
        if self._housekeeper is not None:
            self._housekeeper.stop()
        await self._expiry.stop()
        if self._sources is not None:
            await self._sources.stop()
        budget = timeout if timeout is not None else self.stop_timeout
        try:
            await self._flusher.stop()
            # What changes from here on would miss the final flush, and could never be written.
            self._stop_changes()
            try:
                # Everything left unwritten is reported, even what flush() reported before.
                await asyncio.wait_for(self._flusher.flush(report_all=True), budget)
            except asyncio.TimeoutError:
                raise self._unwritten(budget) from None
        finally:
            self._state = DatabaseState.STOPPED
            if leaving is not None:
                await leaving
            if self._snapshots is not None and self._watches is not None:
                # After the final flush: what it wrote is in the snapshot, what it could not is refetched.
                await self._snapshots.stop(self._watches.followers())
            if self._watches is not None:
                await asyncio.gather(self._watches.stop(), return_exceptions=True)
            self._callbacks.cancel()
            self._end_streams()
            if self._journal is not None:
                self._journal.close()
            if self._owns_storage:
                await self._storage.close()

    def _end_streams(self) -> None:
        for stream in list(self._streams):
            stream.end()

    def _stop_changes(self) -> None:
        self._changes_stopped = True
        for collection in self._collections.values():
            collection.stop_changes()

    def _value_limit(self) -> int | None:
        """The largest stored value the storage takes, if it says (see ``Storage``)."""
        limit = getattr(self._storage, "max_value_size", None)
        return limit if isinstance(limit, int) else None

    def _unwritten(self, budget: float) -> FlushError:
        """The ``FlushError`` of a flush cut short by the stop timeout: every change still pending."""
        errors: dict[str, BaseException] = {}
        for collection in self._collections.values():
            causes = collection.sync.errors()
            for key in collection.sync.pending_keys():
                cause = causes.get(key)
                if not isinstance(cause, Exception):  # none yet, or the cancelled write itself
                    cause = UnavailableError(f"not acknowledged within the stop timeout ({budget}s)")
                errors[f"{collection.name}/{key}"] = cause
        return FlushError(f"{len(errors)} change(s) not written within {budget}s of stop()", errors)

    async def flush(self) -> None:
        """Write every collection's pending changes now; ``FlushError`` if some cannot be written."""
        await self._require_flusher().flush()

    async def synced(self, timeout: float | None = None) -> None:
        """Wait until this node is in step with NATS: every change pending now acknowledged, and every
        collection's memory holding all its bucket held (this node's writes included) once they were.

        Through an outage it waits (``timeout`` seconds at most; None: as long as it takes), then raises
        ``UnavailableError``. Another node's changes are in memory here after ``synced()`` of the node
        that made them, then of this one. ``FlushError`` for changes that can never be written as they
        are (waiting would not help); ``NotStartedError`` before ``start()`` or after ``stop()``.
        """
        self._require_flusher()
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
        assert self._syncing is not None
        try:
            await asyncio.wait_for(self._syncing.synced(self._collections.values()), timeout)
        except asyncio.TimeoutError:
            raise UnavailableError(f"not in sync with NATS within {timeout}s: {self._behind()}") from None

    def _behind(self) -> str:
        """What keeps this node from being in sync, in words (for the error of ``synced()``)."""
        collections = self.stats()["collections"]
        pending = sum(figures["pending"] for figures in collections.values())
        behind = sorted(name for name, figures in collections.items() if figures["watch_behind"])
        known = ", ".join(behind) or "none known"
        return f"{pending} change(s) not acknowledged; watches behind their bucket: {known}"

    def _written(self, collection: Collection[Any], keys: list[str]) -> None:
        """A flush round wrote ``keys``: the journal forgets what is stored, the lag learns revisions."""
        if self._journal is not None:
            self._journal.settle_written(collection, keys)
        entities = collection.entities
        revisions = [entity._revision for entity in map(entities.get, keys) if entity is not None]
        last = max((revision for revision in revisions if revision is not None), default=0)
        if last:
            self._lag.learnt(collection.name, last, self._applied(collection.name))

    def _applied(self, name: str) -> int:
        """The last revision of collection ``name``'s bucket applied to memory (0 before its first load)."""
        follower = None if self._watches is None else self._watches.follower(name)
        return 0 if follower is None else follower.applied

    async def __aenter__(self) -> Brainless:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- collections -----------------------------------------------------------------------------

    def collection(self, name: str, *, ttl: float | None = None) -> Collection[Any]:
        """The collection ``name``, created on first use.

        ``ttl``: every entity added expires that many seconds later (``Collection.declare_ttl``: stored
        with the schema; a collection holding another default keeps it, see ``Collection.set_ttl``).
        """
        found = self._collections.get(name)
        if found is not None:
            if ttl is not None:
                found.declare_ttl(ttl)
            return found
        collection: Collection[Any] = Collection(self, names.check_collection(self.namespace, name))
        if ttl is not None:
            collection.declare_ttl(ttl)  # checked before the collection is kept
        self._collections[name] = collection
        if self._storage is not None:
            collection.limit_values(self._value_limit())
        if self._changes_stopped:
            collection.stop_changes()
        if self._state is DatabaseState.STARTED and self._watches is not None:
            self._watches.attach(collection)
        return collection

    def __getattr__(self, name: str) -> Collection[Any]:
        # Only for names that are not attributes: the collections. Private names never create one.
        if name.startswith("_"):
            raise AttributeError(name)
        return self.collection(name)

    @property
    def collections(self) -> dict[str, Collection[Any]]:
        """The collections known so far, by name."""
        return dict(self._collections)

    def bucket_name(self, collection: str) -> str:
        """The KV bucket of a collection: ``{namespace}-{collection}``."""
        return names.bucket_name(self.namespace, collection)

    async def _bucket(self, collection: Collection[Any]) -> str:
        bucket = self.bucket_name(collection.name)
        assert self._storage is not None
        await self._storage.open_bucket(bucket)
        if collection.sync.expiry.unknown:
            # Before the first write of an expiring entity: may the server remove expired entities?
            allowed = not self.peers
            await settle_mode(self._storage, collection, bucket, self.delete_retention, allowed=allowed)
        return bucket

    async def _open_collection(self, name: str) -> Collection[Any]:
        collection = self.collection(name)
        await self.ready(collection)
        return collection

    # -- leases ----------------------------------------------------------------------------------

    async def lease(self, name: str, ttl: float = 10.0) -> Lease | None:
        """Take the lease ``name`` for ``ttl`` seconds (at least 1); None while another node holds it.

        Exclusive across every node of the namespace on one NATS: see ``brainlessdb.Lease``.
        ``UnavailableError`` when NATS does not answer (a lease is never taken offline).
        """
        key = names.lease_key(name)
        if self._state is not DatabaseState.STARTED or self._leases is None:
            raise NotStartedError("lease() needs a started database")
        return await self._leases.acquire(name, key, ttl)

    # -- the live nodes of the namespace --------------------------------------------------------

    async def nodes(self) -> list[dict[str, Any]]:
        """The running nodes of the namespace (this one included), from their heartbeats, by location.

        One dict per node: see ``brainlessdb.shell.presence``. ``UnavailableError`` when NATS does not answer.
        """
        if self._state is not DatabaseState.STARTED or self._presence is None:
            raise NotStartedError("nodes() needs a started database")
        return await self._presence.nodes()

    # -- resyncs after long outages, and old delete markers -------------------------------------

    @property
    def resyncs(self) -> int:
        """How many full replays of a bucket this node made (after outages longer than the retention)."""
        return 0 if self._watches is None else self._watches.resyncs

    async def resync(self) -> None:
        """Replay every collection's bucket in full and drop what is no longer there."""
        if self._watches is not None:
            await self._watches.resync()

    async def expire_deletes(self) -> int:
        """Remove delete markers older than ``delete_retention`` from the buckets; returns how many."""
        if self._housekeeper is None:
            raise NotStartedError("expire_deletes() needs a started database")
        return await self._housekeeper.expire_deletes()

    # -- what collections ask of the database (the Host protocol) --------------------------------

    def changed(self, collection: Collection[Any], uuid: str | None = None) -> None:
        if self._journal is not None:
            self._journal.note(collection, uuid)
        if self._flusher is not None:
            self._flusher.wake()

    @property
    def callback_errors(self) -> int:
        """How many change callbacks raised."""
        return self._callbacks.errors

    async def ready(self, collection: Collection[Any]) -> None:
        """Wait until the collection's first load is done; return at once when it is, or when not started.

        Every query awaits this, so a loaded collection is answered by one set lookup (see ``watches``).
        """
        if collection in self._loaded:
            return
        if self._state is DatabaseState.STARTED and self._watches is not None:
            await self._watches.ready(collection)

    async def flush_collection(self, collection: Collection[Any]) -> None:
        await self._require_flusher().flush([collection])

    async def load_collection(self, collection: Collection[Any]) -> None:
        if self._state is not DatabaseState.STARTED or self._watches is None:
            raise NotStartedError("load() needs a started database")
        await self._watches.catch_up(collection)

    async def update_if(self, collection: Collection[Any], claim: Claim) -> bool:
        if self._state is not DatabaseState.STARTED or self._claims is None:
            raise NotStartedError("update_if() needs a started database")
        if collection.sync.expiry.unknown:
            await self._bucket(collection)  # whether its write must carry a TTL, known before it is made
        return await self._claims.update_if(collection, self.bucket_name(collection.name), claim)

    def watch_collection(self, collection: Collection[Any], subscription: Subscription) -> ChangeStream:
        if self._state in (DatabaseState.STOPPING, DatabaseState.STOPPED):
            raise NotStartedError("watch() needs a database that is not stopped")
        stream = Stream(subscription, partial(self.ready, collection))
        self._streams.add(stream)
        return stream

    def _require_flusher(self) -> Flusher:
        if self._state is not DatabaseState.STARTED or self._flusher is None:
            raise NotStartedError("the database is not started (call start() or setup() first)")
        return self._flusher

    # -- introspection ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of the sync machinery, for monitoring."""
        flusher = self._flusher.stats if self._flusher is not None else {}
        storage_stats = getattr(self._storage, "stats", {})
        return {
            "state": self._state.value,
            "flush": dict(flusher),
            "claims": {} if self._claims is None else dict(self._claims.stats),
            "storage": dict(storage_stats),
            "callback_errors": self.callback_errors,
            "collections": {
                name: {
                    "entities": len(c),
                    "errors": len(c.sync.errors()),
                    "dead_letters": c.sync.dead_letter_count,
                    "watch_restarts": 0 if self._watches is None else self._watches.restarts(name),
                    **self._lag_figures(c),
                }
                for name, c in self._collections.items()
            },
            "locations": {
                "domain": self.domain,
                "peers": list(self.peers),
                "copies": {} if self._sources is None else self._sources.stats(),
            },
            "presence": {} if self._presence is None else self._presence.stats(),
            "snapshots": {} if self._snapshots is None else self._snapshots.stats(),
        }

    def collection_lag(self, collection: Collection[Any]) -> Lag:
        name = collection.name
        watch = self._lag.of(name, self._applied(name))
        pending_seconds = 0.0 if self._flusher is None else self._flusher.pending_for(name)
        return Lag(collection.sync.pending_count(), pending_seconds, *watch)

    def _lag_figures(self, collection: Collection[Any]) -> dict[str, Any]:
        """The lag figures of ``stats()`` for one collection (see ``Lag``)."""
        lag = self.collection_lag(collection)
        return {
            "pending": lag.pending,
            "pending_seconds": lag.pending_seconds,
            "watch_revision": lag.applied,
            "watch_behind": lag.behind,
            "watch_behind_seconds": lag.behind_seconds,
        }

    def __del__(
        self, _warn: Callable[..., None] = warnings.warn, _running: tuple[DatabaseState, ...] = _RUNNING
    ) -> None:
        # No I/O, and nothing that interpreter shutdown may have torn down (hence the bound defaults): like
        # an unclosed socket or event loop, a started database dropped without stop() says so.
        if getattr(self, "_state", None) in _running:
            _warn(f"{self!r} was not stopped: call 'await db.stop()'", ResourceWarning, source=self)

    def __repr__(self) -> str:
        return (
            f"<Brainless {self.namespace}@{self.location} {self._state.value}, "
            f"{len(self._collections)} collections>"
        )


def _check_snapshots(
    directory: str | Path | None, interval: float, nats: NatsSource, peers: Sequence[str]
) -> Path | None:
    """The snapshot directory, checked: snapshots need a storage that outlives the process, and no peers."""
    if directory is None:
        return None
    if nats is None:
        raise ValueError("snapshot_dir needs NATS: an in-memory database has nothing to restart from")
    if peers:
        raise ValueError("snapshot_dir cannot be combined with peers=... (locations) yet")
    if not interval > 0:
        raise ValueError("snapshot_interval must be > 0 seconds")
    return Path(directory)


def _check_locations(domain: str | None, peers: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """``domain`` and ``peers`` checked: valid domain names, peers distinct and not this domain."""
    if isinstance(peers, str):
        raise TypeError("peers is a list of JetStream domains, not one string")
    peers = tuple(peers)
    if domain is not None:
        validate_domain(domain)
    for peer in peers:
        validate_domain(peer)
    if peers and domain is None:
        raise ValueError("peers=... needs domain=...: the JetStream domain of this node's location")
    if domain in peers or len(set(peers)) != len(peers):
        raise ValueError(f"peers must be distinct and exclude this node's domain {domain!r}: {list(peers)}")
    return domain, peers
