"""Every exception brainlessdb raises: one hierarchy, each also a subclass of the builtin it resembles.

Callers branch on the type and on the attributes each error carries, never on its message. A failure of
the store is an ``OSError`` (``except OSError`` catches it with the socket errors it stands for), one that
retrying may cure a ``ConnectionError``; a misuse is a ``ValueError``, ``KeyError`` or ``RuntimeError``.
"""

from __future__ import annotations

from typing import Any


class BrainlessError(Exception):
    """Base class for every error brainlessdb raises."""


class NotFoundError(BrainlessError, KeyError):
    """No entity with this uuid in the collection."""

    def __init__(self, collection: str, uuid: str) -> None:
        super().__init__(collection, uuid)
        self.collection = collection
        self.uuid = uuid

    def __str__(self) -> str:
        return f"no entity {self.uuid!r} in collection {self.collection!r}"


class DuplicateError(BrainlessError, ValueError):
    """An entity with this uuid exists already (or existed: uuids are never reused)."""

    def __init__(self, collection: str, uuid: str) -> None:
        super().__init__(f"uuid {uuid!r} is already used in collection {collection!r}")
        self.collection = collection
        self.uuid = uuid


class SchemaError(BrainlessError, ValueError):
    """Data disagrees with the collection's locked schema; nothing of it was kept."""

    def __init__(self, message: str, *, field: str | None = None, expected: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.expected = expected


class QueryError(BrainlessError, ValueError):
    """A criterion or an ordering key that cannot be answered (unknown lookup, impossible path)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ExpiryError(BrainlessError, ValueError):
    """An expiry that cannot be: not a number of seconds, or not above 0 (``expire()``, ``ttl=``)."""


class InvalidNameError(BrainlessError, ValueError):
    """A namespace, collection, lease or bucket name that cannot be used: ``rule`` says what is allowed."""

    def __init__(self, kind: str, name: str, rule: str = "use letters, digits, '_' and '-' only") -> None:
        super().__init__(f"invalid {kind} name {name!r}: {rule}")
        self.kind = kind
        self.name = name
        self.rule = rule


class EncodeError(BrainlessError, ValueError):
    """A value that cannot be stored as JSON."""


class DecodeError(BrainlessError, ValueError):
    """Bytes found in a bucket that are not an entity version this library can read."""


class StorageError(BrainlessError, OSError):
    """The storage backend failed; ``__cause__`` holds the original error."""


class ConflictError(StorageError):
    """A compare-and-set write found another revision than the one it expected."""

    def __init__(self, key: str, expected: int | None) -> None:
        super().__init__(f"revision conflict on {key!r}: expected {expected}")
        self.key = key
        self.expected = expected


class UnavailableError(StorageError, ConnectionError):
    """The store could not be reached in time (outage, leader election); retrying later may succeed."""


class PermissionDeniedError(StorageError, PermissionError):
    """The NATS account may not use this bucket."""


class TooLargeError(StorageError):
    """A value larger than the storage takes (NATS: the server's ``max_payload``); it is never sent."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(f"{key!r}: {size} bytes, over the {limit} bytes limit")
        self.key = key
        self.size = size
        self.limit = limit


class FlushError(StorageError):
    """Some changes could not be written; they stay pending and are retried."""

    def __init__(self, message: str, errors: dict[str, BaseException]) -> None:
        super().__init__(message)
        self.errors = errors


class LeaseLostError(BrainlessError, RuntimeError):
    """A lease is no longer held (it expired, or another node took it): stop what it protected."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"lease {name!r} lost: {reason}")
        self.name = name


class NotStartedError(BrainlessError, RuntimeError):
    """The database was used before ``start()``/``setup()`` or after ``stop()``."""


class ConfigurationError(BrainlessError, ValueError):
    """The NATS deployment contradicts a setting: a location's JetStream domain, or a bucket's sources."""


class ServerError(BrainlessError, RuntimeError):
    """The embedded nats-server could not be found, started or stopped."""


class StreamOverflowError(BrainlessError, RuntimeError):
    """A change stream's buffer filled up (its consumer fell behind) with ``overflow="error"``.

    The stream yielded every event it held before it overflowed, then raises this and is closed: what
    happened after that point is not known to the consumer, which starts again (a new ``watch()``, with
    ``include_current=True`` to read the matching entities as they are now).
    """

    def __init__(self, collection: str, buffer: int) -> None:
        super().__init__(
            f"change stream of {collection!r} overflowed its buffer of {buffer} events: watch again to resync"
        )
        self.collection = collection
        self.buffer = buffer
