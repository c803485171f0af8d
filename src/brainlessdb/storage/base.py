"""The storage seam: what the shell needs from a key/value store, in bytes and integer revisions.

``Storage`` lists the methods the library calls; any object that has them may be given to ``Brainless``.
Two implementations come with it: ``MemoryStorage`` (in-process, the in-memory mode and the unit tests) and
``NatsKVStorage`` (NATS JetStream KV). Encoding and merging stay out of it. The bucket and key name rules
are NATS KV's, and both implementations check them.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeGuard, runtime_checkable

from brainlessdb.errors import InvalidNameError, StorageError

BUCKET_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+")
# Keys become subject tokens: a dot at either end would make an empty token, and wildcards or spaces
# would address other keys or break the protocol line. One match, as every write checks its key.
KEY_PATTERN: Final = re.compile(r"(?!\.)[-/_=.A-Za-z0-9]+(?<!\.)")


DOMAIN_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+")
"""A JetStream domain, as a location's name for the buckets of other locations (one subject token)."""


def validate_domain(domain: str) -> None:
    """Raise ``InvalidNameError`` unless ``domain`` can name a JetStream domain (one subject token)."""
    if not isinstance(domain, str) or DOMAIN_PATTERN.fullmatch(domain) is None:
        raise InvalidNameError("domain", str(domain))


def validate_bucket(bucket: str) -> None:
    """Raise ``InvalidNameError`` unless ``bucket`` is a valid NATS KV bucket name."""
    if BUCKET_PATTERN.fullmatch(bucket) is None:
        raise InvalidNameError("bucket", bucket)


def check_key(key: str) -> StorageError | None:
    """The error to report for ``key`` if it is not a valid KV key, else None."""
    if KEY_PATTERN.fullmatch(key) is None:
        return StorageError(f"invalid key {key!r}")
    return None


class Op(enum.Enum):
    """What a stored entry does to its key."""

    PUT = "PUT"
    DELETE = "DEL"
    PURGE = "PURGE"


@dataclass(slots=True)
class Entry:
    """One entry of a bucket: the key's value (or delete marker) at ``revision``.

    Treated as immutable, but not ``frozen``: a watch makes one per message, and a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` (see docs/performance.md).
    """

    key: str
    revision: int
    value: bytes
    op: Op
    time_ns: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Watch event: every entry up to ``revision`` (the bucket's last when the watch began) was delivered."""

    revision: int


@dataclass(frozen=True, slots=True)
class Resumed:
    """Watch event: the watch was not live for ``stalled_for`` seconds and now resumes after ``after``.

    Entries written meanwhile are delivered next, unless they were removed from the bucket meanwhile
    (delete markers past their retention): a reader that cares compares ``stalled_for`` with that.
    """

    after: int
    stalled_for: float


@dataclass(frozen=True, slots=True)
class Retained:
    """What a bucket holds now: its first retained revision (its last + 1 when it holds none), its last,
    and its ``origin``, which tells the bucket from one recreated under its name (its creation time).

    A storage may offer ``retained(bucket)`` (both implementations do): warm restarts need it to tell
    whether the revisions after a snapshot are all still there.
    """

    first: int
    last: int
    origin: str


@dataclass(slots=True)
class Write:
    """One compare-and-set write.

    ``expected_revision`` is the key's last revision this node saw: ``0`` means the key must not exist,
    ``None`` writes unconditionally. ``delete`` writes a delete marker whose body is ``value``. ``ttl``
    (seconds, at least 1) makes the storage remove the value that long after it was written, unless it
    was replaced meanwhile; only in a bucket opened ``expiring``, or one for which the storage's
    optional ``allow_ttl(bucket, marker_ttl)`` answered True (``NatsKVStorage`` has it). Not frozen, for
    the same reason as ``Entry``; subclasses may carry more (the outbox's ``PendingWrite``).
    """

    key: str
    value: bytes
    expected_revision: int | None
    delete: bool = False
    ttl: float | None = None


WatchEvent = Entry | CaughtUp | Resumed
WatchBatch = list[WatchEvent]
"""Watch events in order, as many as had arrived when the reader asked (never empty)."""


async def flatten(batches: AsyncGenerator[WatchBatch, None]) -> AsyncGenerator[WatchEvent, None]:
    """The events of ``watch_batches()`` one by one: the ``watch()`` both storages offer besides the seam."""
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for event in batch:
                yield event


@runtime_checkable
class Storage(Protocol):
    """A store of buckets of keys with revisions, compare-and-set writes and a resumable watch.

    Only what the library calls. ``MemoryStorage`` and ``NatsKVStorage`` offer more (``list_buckets``,
    ``purge``, a ``watch`` of single events), which the library never needs.

    A storage may also tell the largest value a write may carry, as an ``int`` attribute or property
    ``max_value_size`` (both implementations do): changes that would make an entity larger are then refused
    when they are made, and a write of a larger value fails with ``TooLargeError``. Without it, nothing is
    refused before the write.
    """

    async def open_bucket(self, bucket: str, *, create: bool = True, expiring: bool = False) -> bool:
        """Make sure ``bucket`` exists (creating it when ``create``); False if absent and not created.

        ``expiring``: writes to the bucket may carry a ``ttl`` (a bucket created so; ``StorageError`` if
        an existing bucket was not).
        """
        ...

    def watch_batches(self, bucket: str, *, after: int | None = None) -> AsyncIterator[WatchBatch]:
        """Events of ``bucket`` forever, in batches: first a replay, then a ``CaughtUp``, then live changes.

        ``after=None`` replays the last entry of every key; ``after=n`` every entry with a revision above
        ``n``. The iterator survives reconnects by itself (a ``Resumed`` says when it was not live) and
        never repeats a revision it yielded. Each batch holds every event that had arrived when the reader
        asked, in order: one suspension per batch, not per entry, for readers that apply many.
        """
        ...

    async def write(self, bucket: str, writes: Sequence[Write]) -> list[int | Exception]:
        """Apply many writes at once; for each, its new revision or the error (a ``ConflictError`` on CAS)."""
        ...

    async def get(self, bucket: str, key: str) -> Entry | None:
        """The last entry of ``key`` (possibly a delete marker), or None if the key has none."""
        ...

    async def last_revision(self, bucket: str) -> int:
        """The greatest revision in the bucket (0 when it never had an entry)."""
        ...

    async def forget(self, bucket: str, key: str) -> None:
        """Remove every entry of ``key`` without leaving a marker (old delete markers, past retention)."""
        ...

    async def close(self) -> None:
        """Stop every watch and release the connection if this storage owns it."""
        ...


STORAGE_METHODS: Final = tuple(
    name for name, member in vars(Storage).items() if callable(member) and not name.startswith("_")
)


def is_storage(candidate: object) -> TypeGuard[Storage]:
    """Whether ``candidate`` is an object (not a class) with every method of ``Storage``.

    Unlike ``isinstance(candidate, Storage)`` on Python 3.12+, this also finds methods a wrapper
    delegates through ``__getattr__``.
    """
    return not isinstance(candidate, type) and all(
        callable(getattr(candidate, name, None)) for name in STORAGE_METHODS
    )


class LocationStorage(Storage, Protocol):
    """A storage that can join locations (NATS JetStream domains): what ``peers=`` needs beyond ``Storage``
    (``NatsKVStorage`` has it all; see ``joins_locations``)."""

    async def jetstream_domain(self) -> str | None:
        """The JetStream domain of the server (None: it has none)."""
        ...

    async def source_peers(self, bucket: str, peers: Sequence[str]) -> list[str]:
        """Make ``bucket`` copy each peer's own keys under ``_<peer>.``; the peers it did not copy before."""
        ...

    async def source_progress(self, bucket: str, peer: str) -> tuple[int | None, int]:
        """The peer's newest own sequence (None: it does not answer) and that of its newest copy here."""
        ...

    async def restart_source(self, bucket: str, peer: str) -> None:
        """Restart ``bucket``'s copy of ``peer`` where it stopped."""
        ...

    async def copied_by(self, bucket: str, peer: str, domain: str) -> int | None:
        """How far ``peer`` copied the keys of ``domain`` (this location); None when it does not answer."""
        ...


def joins_locations(storage: Storage) -> TypeGuard[LocationStorage]:
    """Whether ``storage`` has every method of ``LocationStorage``."""
    return all(
        callable(getattr(storage, name, None))
        for name in ("jetstream_domain", "source_peers", "source_progress", "restart_source", "copied_by")
    )
