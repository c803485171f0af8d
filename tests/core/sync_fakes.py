"""A tiny host for the sync state: one collection's parts built by hand, no database, no event loop.

``Node`` is the ``LocalChanges`` of one collection with its ``EntityTable`` and ``SyncState``, a clock
whose wall time the test sets (``node.now_ms``), and lists recording what the parts tell their host:
the events emitted (``events``), the ``changed`` calls (``changed_calls``) and the wakes (``wakes``).
``Bucket`` is a key/value store with compare-and-set writes, enough to play the shell's part.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from brainlessdb.core.changes import LocalChanges
from brainlessdb.core.clock import HybridLogicalClock, Stamp, hlc_from_ms
from brainlessdb.core.codec import decode_delete, decode_value, encode_entity, encode_tombstone
from brainlessdb.core.entity import Entity
from brainlessdb.core.merge import Record
from brainlessdb.core.schema import Schema
from brainlessdb.core.stamps import Stamps, unpack_fields, unpacked
from brainlessdb.core.sync.inbox import Inbox
from brainlessdb.core.sync.outbox import Outbox, PendingWrite
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.table import EntityTable
from brainlessdb.events import Change, Delete, Event, Listener
from brainlessdb.storage.base import Entry, Op

START_MS: Final = 1_735_689_600_000
"""The wall time (ms) a node's clock starts at."""

TIME_NS: Final = START_MS * 1_000_000
"""When the fake bucket says an entry was stored (ns), unless a test says otherwise."""

OTHER: Final = "brno-1"
"""The name of the other node whose entries the tests apply."""


def schema_of(fields: dict[str, dict[str, Any]]) -> Schema:
    """A schema as stored: ``{"state": {"type": "str"}, ...}``."""
    return Schema.from_json({"v": 1, "fields": fields})


def stamp(ms: int, node: str = OTHER) -> Stamp:
    """The stamp of a change made at ``ms`` (wall-clock milliseconds) on ``node``."""
    return (hlc_from_ms(ms), node)


def put(key: str, revision: int, data: dict[str, Any], stamps: Stamps, *, time_ns: int = TIME_NS) -> Entry:
    """A bucket entry holding a version of ``key`` written by a brainlessdb node."""
    return Entry(key, revision, encode_entity(data, stamps), Op.PUT, time_ns)


def raw_put(key: str, revision: int, value: bytes, *, time_ns: int = TIME_NS) -> Entry:
    """A bucket entry holding exactly ``value``."""
    return Entry(key, revision, value, Op.PUT, time_ns)


def marker(key: str, revision: int, deleted: Stamp, *, time_ns: int = TIME_NS) -> Entry:
    """A delete marker of ``key`` written by a brainlessdb node that deleted it at ``deleted``."""
    return Entry(key, revision, encode_tombstone(deleted), Op.DELETE, time_ns)


def decoded(value: bytes) -> Record:
    """The entity version stored in ``value``."""
    return decode_value(value, time_ns=0)


def data_of(value: bytes) -> dict[str, Any]:
    """The fields stored in ``value``."""
    return decoded(value).data


def deleted_at(value: bytes) -> Stamp | None:
    """The delete stamp in the body of a delete marker."""
    return decode_delete(value, time_ns=0).deleted


class Node(LocalChanges):
    """One collection of one node, with a settable clock and a record of what it told its host."""

    def __init__(
        self,
        node: str = "prague-1",
        *,
        schema: Schema | None = None,
        collection: str = "calls",
        now_ms: int = START_MS,
    ) -> None:
        self.now_ms = now_ms
        self.clock = HybridLogicalClock(node, now_ms=lambda: self.now_ms)
        self.changed_calls: list[str | None] = []
        self.events: list[Event] = []
        self.wakes = 0
        super().__init__(collection, self.clock, self.changed_calls.append)
        self.table = EntityTable(self, self._dispatch)
        self.sync = SyncState(self.table, self.clock, self._wake)
        self.attach(self.table, self.sync)
        self.table.listeners.append(Listener(Change, _ignore, local=True, remote=True))
        self.table.listeners.append(Listener(Delete, _ignore, local=True, remote=True))
        if schema is not None:
            # Known already, as if loaded: not pending.
            self.table.adopt_schema(schema)

    def _dispatch(self, listener: Listener, event: Event) -> None:
        self.events.append(event)

    def _wake(self) -> None:
        self.wakes += 1

    @property
    def outbox(self) -> Outbox:
        return self.sync.outbox

    @property
    def inbox(self) -> Inbox:
        return self.sync.inbox

    def entity(self, uuid: str) -> Entity:
        return self.table.entities[uuid]

    def take_one(self) -> PendingWrite:
        """The one write to do now (fails unless there is exactly one)."""
        writes = self.outbox.take_writes()
        assert len(writes) == 1, writes
        return writes[0]

    def add_stored(self, uuid: str, values: dict[str, Any], revision: int) -> Entity:
        """Add an entity and have its create acknowledged at ``revision``; forget what that told."""
        entity = self.add(uuid, values)
        write = self.take_one()
        assert write.key == uuid
        self.outbox.written(write, revision)
        self.forget_calls()
        return entity

    def forget_calls(self) -> None:
        """Start recording afresh."""
        self.events.clear()
        self.changed_calls.clear()
        self.wakes = 0


def _ignore(event: Any) -> None:
    """A listener callback; the node's dispatch records the events instead."""


class Conflict(Exception):
    """A compare-and-set write met another revision."""


class Bucket:
    """One bucket: the last entry of each key, compare-and-set writes, and a watch of what was stored."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.revision = 0
        self.watch: deque[Entry] = deque()

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def store(self, write: PendingWrite) -> int:
        """Store ``write`` if its key is at the expected revision: its new revision (else ``Conflict``)."""
        last = self.entries.get(write.key)
        actual = 0 if last is None else last.revision
        if write.expected_revision is not None and actual != write.expected_revision:
            raise Conflict(write.key)
        self.revision += 1
        entry = Entry(write.key, self.revision, write.value, Op.DELETE if write.delete else Op.PUT, TIME_NS)
        self.entries[write.key] = entry
        self.watch.append(entry)
        return self.revision


def unpacked_members(held: Any) -> tuple[Any, ...]:
    """``FieldStamps`` with their stamps unpacked (names kept), packed ones (as an entity holds them)
    first unpacked."""
    if type(held) is int and held < 0:
        held = unpack_fields(held)
    assert isinstance(held, tuple)
    return tuple(unpacked(member) if index % 2 == 0 else member for index, member in enumerate(held))
