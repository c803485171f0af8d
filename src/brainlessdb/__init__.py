"""BrainlessDB: collections held in memory and kept in sync across nodes through NATS JetStream KV.

Two ways to use it. The module-level database:

    import brainlessdb
    await brainlessdb.setup(nats, namespace="myapp", location="prague-1")
    call = brainlessdb.call.add(channel_id="123", state="waiting")
    await brainlessdb.stop()

or instances, for tests and for several databases in one process:

    from brainlessdb import Brainless
    async with Brainless(nats, namespace="test", location="local") as db:
        db.call.add(channel_id="456", state="waiting")
"""

from typing import Any

from brainlessdb.core.collection import Collection, Lag
from brainlessdb.core.entity import Entity
from brainlessdb.core.evolution import field
from brainlessdb.core.meta import EntityMeta, meta
from brainlessdb.core.streams import ChangeStream
from brainlessdb.core.values import MISSING
from brainlessdb.errors import (
    BrainlessError,
    ConfigurationError,
    ConflictError,
    DecodeError,
    DuplicateError,
    EncodeError,
    ExpiryError,
    FlushError,
    InvalidNameError,
    LeaseLostError,
    NotFoundError,
    NotStartedError,
    PermissionDeniedError,
    QueryError,
    SchemaError,
    ServerError,
    StorageError,
    StreamOverflowError,
    TooLargeError,
    UnavailableError,
)
from brainlessdb.events import Change, Delete, Enter, Leave, StreamEvent
from brainlessdb.shell.database import Brainless
from brainlessdb.shell.leases import Lease

__all__ = [
    "MISSING",
    "Brainless",
    "BrainlessError",
    "Change",
    "ChangeStream",
    "Collection",
    "ConfigurationError",
    "ConflictError",
    "DecodeError",
    "Delete",
    "DuplicateError",
    "EncodeError",
    "Enter",
    "Entity",
    "EntityMeta",
    "ExpiryError",
    "FlushError",
    "InvalidNameError",
    "Lag",
    "Lease",
    "LeaseLostError",
    "Leave",
    "NotFoundError",
    "NotStartedError",
    "PermissionDeniedError",
    "QueryError",
    "SchemaError",
    "ServerError",
    "StorageError",
    "StreamEvent",
    "StreamOverflowError",
    "TooLargeError",
    "UnavailableError",
    "field",
    "flush",
    "get_db",
    "meta",
    "setup",
    "stop",
    "synced",
]

_db: Brainless | None = None


async def setup(
    nats: Any = None,
    namespace: str = "default",
    location: str | None = None,
    flush_interval: float = 0.5,
    **options: Any,
) -> Brainless:
    """Create and start the module-level database (stopping a previous one first)."""
    global _db
    if _db is not None:
        previous, _db = _db, None
        await previous.stop()
    db = Brainless(nats, namespace, location, flush_interval, **options)
    await db.start()
    _db = db
    return db


async def stop(timeout: float | None = None) -> None:
    """Stop the module-level database, writing what is pending."""
    global _db
    db, _db = _db, None
    if db is not None:
        await db.stop(timeout)


async def flush() -> None:
    """Write every pending change of the module-level database now."""
    await get_db().flush()


async def synced(timeout: float | None = None) -> None:
    """Wait until the module-level database is in step with NATS (see ``Brainless.synced``)."""
    await get_db().synced(timeout)


def get_db() -> Brainless:
    """The module-level database; ``NotStartedError`` before ``setup()``."""
    if _db is None:
        raise NotStartedError("call 'await brainlessdb.setup(...)' first")
    return _db


def __getattr__(name: str) -> Collection[Any]:
    # PEP 562: `brainlessdb.call` is the module-level database's collection "call".
    if name.startswith("_"):
        raise AttributeError(name)
    return get_db().collection(name)
