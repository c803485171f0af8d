"""What the console shows, read as the ``brainless`` command reads it: from a database started on the
command's connection (a node that loaded the namespace), with the command's own parsing and decoding.

Nothing here writes: the database is only asked for entities, stats, dead letters and nodes, and the
storage for stored values (their stamps) and bucket sizes. An unknown collection is ``NotFound`` and never
creates a bucket; bad criteria are ``UsageError`` (both carry the command's exit codes, which the HTTP side
turns into 404 and 400).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Final

from brainlessdb.cli.commands import field_order, open_collection, stored_stamps
from brainlessdb.cli.common import UsageError, parse_assignments
from brainlessdb.cli.connection import Session
from brainlessdb.console.events import EventHub
from brainlessdb.core.collection import Collection
from brainlessdb.core.meta import meta
from brainlessdb.errors import QueryError
from brainlessdb.shell.database import Brainless
from brainlessdb.storage.nats.errors import redact_servers

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 10_000


def plain(value: Any) -> Any:
    """``value`` made of what JSON holds: dataclasses, named tuples and objects become dicts."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)) and not hasattr(value, "_asdict"):
        return [plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({field.name: getattr(value, field.name) for field in dataclasses.fields(value)})
    if hasattr(value, "_asdict"):
        return plain(value._asdict())
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "__dict__"):
        return plain({key: item for key, item in vars(value).items() if not key.startswith("_")})
    return repr(value)


def node_rows(listed: Any) -> list[dict[str, Any]]:
    """What ``db.nodes()`` returned, as one dict a node (a mapping of nodes gets its keys as ``node``)."""
    if isinstance(listed, Mapping):
        rows = []
        for key, node in listed.items():
            row = plain(node)
            rows.append(
                {"node": str(key), **row} if isinstance(row, dict) else {"node": str(key), "value": row}
            )
        return rows
    return [row if isinstance(row, dict) else {"value": row} for row in map(plain, listed)]


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise UsageError(f"limit {text!r} is not a whole number") from None
    if not 0 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be from 0 to {MAX_LIMIT}")
    return limit


class Reader:
    """The namespace as the console shows it, from one started database."""

    def __init__(self, session: Session, hub: EventHub) -> None:
        self.session = session
        self.hub = hub
        self._db: Brainless | None = None

    async def start(self) -> None:
        """Start the database (every collection loaded) and follow each collection's changes."""
        self._db = await self.session.database()
        await self.collection_names()

    @property
    def db(self) -> Brainless:
        assert self._db is not None, "Reader.start() first"
        return self._db

    async def collection_names(self) -> list[str]:
        """The namespace's collections, listed anew: one created since the start is loaded and followed."""
        names = await self.session.collections()
        for name in names:
            if name not in self.hub.followed:
                collection = self.db.collection(name)
                await collection.load()
                self.hub.follow(collection)
        return names

    async def collection(self, name: str) -> Collection[Any]:
        """A collection of the namespace, caught up with its bucket; ``NotFound`` for an unknown one."""
        collection = await open_collection(self.session, name)
        self.hub.follow(collection)
        return collection

    def info(self) -> dict[str, Any]:
        """What the page shows in its header, and which sections it has."""
        return {
            "namespace": self.session.settings.namespace,
            "servers": redact_servers(self.session.settings.servers),
            "location": self.db.location,
            "nodes": True,
        }

    async def collections(self) -> list[dict[str, Any]]:
        """Each collection: its counts from ``db.stats()``, its bucket's size, and its schema's fields.

        Not the changes pending: the console's own are always none (it never writes), and those of the
        nodes are in their heartbeats (``nodes``).
        """
        names = await self.collection_names()
        streams = await asyncio.gather(*(self.session.stream(name) for name in names))
        counts = self.db.stats()["collections"]
        rows = []
        for name, stream in zip(names, streams, strict=True):
            collection = self.db.collection(name)
            stats = counts.get(name, {})
            schema = collection.schema
            rows.append(
                {
                    "collection": name,
                    "entities": len(collection),
                    "dead_letters": stats.get("dead_letters", 0),
                    "errors": stats.get("errors", 0),
                    "watch_restarts": stats.get("watch_restarts", 0),
                    "messages": stream.state.messages,
                    "bytes": stream.state.bytes,
                    "last_revision": stream.state.last_seq,
                    "history": stream.config.max_msgs_per_subject,
                    "fields": [] if schema is None else list(schema.fields),
                }
            )
        return rows

    async def entities(
        self, name: str, where: Sequence[str], order_by: Sequence[str], limit: int
    ) -> dict[str, Any]:
        """The entities matching ``where`` (``find``'s criteria: ``state=waiting``, ``priority__lt=3``),
        sorted by ``order_by`` (``-priority`` descending), at most ``limit`` of them."""
        criteria = parse_assignments(where, "criterion")
        collection = await self.collection(name)
        keys = [key for key in order_by if key]
        try:
            if keys:
                found = await collection.order_by(*keys, **criteria)
            else:
                found = await collection.filter(**criteria)
        except QueryError as exc:
            raise UsageError(f"bad criteria: {exc}") from None
        shown = found[:limit]
        data = [meta(entity).data for entity in shown]
        return {
            "collection": name,
            "fields": field_order(collection, data),
            "matched": len(found),
            "total": len(collection),
            "entities": [{"uuid": entity.uuid, **row} for entity, row in zip(shown, data, strict=True)],
        }

    async def entity(self, name: str, uuid: str) -> dict[str, Any] | None:
        """One entity, with the stamp of each field of the stored version (``get --stamps``)."""
        collection = await self.collection(name)
        entity = await collection.get(uuid)
        if entity is None:
            return None
        stamps = await stored_stamps(self.session, name, uuid)
        return {
            "collection": name,
            "uuid": entity.uuid,
            "fields": [
                {"field": field, "value": value, "stamp": stamps.get(field)}
                for field, value in meta(entity).data.items()
            ],
        }

    async def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """The stored values of the collection that no node can use, and why (``dead-letters``)."""
        collection = await self.collection(name)
        return [
            {
                "key": letter.key,
                "revision": letter.revision,
                "reason": letter.reason,
                "value": letter.value.decode("utf-8", "replace"),
            }
            for letter in collection.sync.inbox.dead_letters
        ]

    async def nodes(self) -> list[dict[str, Any]]:
        """The running nodes of the namespace, from their heartbeats (``await db.nodes()``)."""
        return node_rows(await self.db.nodes())
