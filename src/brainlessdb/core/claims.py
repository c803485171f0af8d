"""Conditional updates (``Collection.update_if``): the part that needs no I/O.

A conditional update ("a claim": taking a queue item is the typical one) is checked against the latest
stored version of an entity and written with compare-and-set on that version's revision. It is never
merged past its condition: when the write meets another revision, the new stored version is checked
again. ``shell.claims`` does the reading, the writing and the waiting; this module holds the rest:

- ``make_claim``: the criteria and the changes, validated before anything is read or written;
- ``take_stored``: a stored entry applied to the collection's memory (so the local entity holds it) and
  read back as the version to check; ``NotFoundError`` for a missing or deleted entity;
- ``Claim.matches``: the criteria tested against the stored version, as ``filter()`` tests them;
- ``Attempt``: the version to write, the stored one plus the changes, with one stamp newer than every
  stamp of the stored version, so no merge can undo a won claim; and, after a write whose outcome is
  unknown (no acknowledgement came), whether a stored entry shows that it landed (``outcome``);
- ``won``: a written version applied to memory as this node's own change.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from brainlessdb.core.clock import HybridLogicalClock, Stamp, wall_ms
from brainlessdb.core.codec import decode_value, encode_entity
from brainlessdb.core.evolution import upgrade_record
from brainlessdb.core.merge import Record
from brainlessdb.core.query.plan import Condition
from brainlessdb.core.schema import Schema, check_field_name
from brainlessdb.core.sync.state import SyncState
from brainlessdb.core.values import copy_json
from brainlessdb.errors import DecodeError, EncodeError, NotFoundError
from brainlessdb.storage.base import Entry, Op

_canonical: Final = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True, slots=True)
class Claim:
    """A conditional update of entity ``uuid``: ``changes`` if the stored version meets ``conditions``."""

    collection: str
    uuid: str
    conditions: tuple[Condition, ...]
    changes: Mapping[str, Any]

    def matches(self, record: Record) -> bool:
        """True when the stored version ``record`` meets every condition (as ``filter()`` would say)."""
        uuid, data = self.uuid, record.data
        return all(condition.matches(uuid, data) for condition in self.conditions)

    def same_as(self, other: Claim) -> bool:
        """True when ``other`` asks for the same update of the same entity (a retry of this claim)."""
        return (
            self.collection == other.collection
            and self.uuid == other.uuid
            and _fingerprint(self) == _fingerprint(other)
        )


def _fingerprint(claim: Claim) -> bytes:
    conditions = [(c.key, c.lookup, c.value) for c in claim.conditions]
    try:
        return _canonical.encode([sorted(conditions, key=lambda c: c[0]), claim.changes])
    except (TypeError, ValueError):
        return repr((conditions, sorted(claim.changes.items()))).encode()


def make_claim(
    collection: str,
    uuid: str,
    conditions: tuple[Condition, ...],
    changes: Mapping[str, Any],
    schema: Schema | None,
) -> Claim:
    """A claim whose changes are checked against ``schema`` (private copies of dicts and lists).

    Raises:
        TypeError: no change at all (a claim must write something).
        SchemaError: a change the schema refuses (an unknown field, a value of the wrong type).
    """
    if not changes:
        raise TypeError("update_if() needs at least one change (field=value)")
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if schema is None:
            check_field_name(name)
            checked[name] = copy_json(name, value)
        else:
            checked[name] = schema.accept(name, value)
    return Claim(collection, uuid, conditions, checked)


def take_stored(sync: SyncState, claim: Claim, entry: Entry | None) -> tuple[Record, int]:
    """Apply what the bucket holds for the claim's entity to memory; the stored version and its revision.

    Whatever it is, memory takes it first (a delete drops the entity, a newer version is merged), so the
    local entity holds the stored version whatever the claim's answer.

    Raises:
        NotFoundError: the bucket holds nothing for the entity, or its delete marker.
        DecodeError: the stored value cannot be used (it is set aside as a dead letter, as a load would).
    """
    if entry is None:
        sync.vanished(claim.uuid)
        raise NotFoundError(claim.collection, claim.uuid)
    letters = sync.inbox.dead_letter_count
    sync.inbox.apply(entry)
    if entry.op is not Op.PUT or sync.is_deleted(claim.uuid):
        # Deleted in the bucket, or here (the delete wins: it is written over the stored version).
        raise NotFoundError(claim.collection, claim.uuid)
    if sync.inbox.dead_letter_count != letters:
        reason = sync.inbox.dead_letters[-1].reason
        raise DecodeError(f"{claim.collection}/{claim.uuid}: the stored version cannot be used: {reason}")
    record = decode_value(entry.value, time_ns=entry.time_ns)
    if record.deleted is not None:
        raise NotFoundError(claim.collection, claim.uuid)
    schema = sync.schema.current
    if schema is not None and schema.retired:
        record = upgrade_record(schema, record)  # written before an evolution: checked under its names
    return record, entry.revision


class Outcome(enum.Enum):
    """What a stored entry tells of a write whose acknowledgement never came."""

    LANDED = "landed"
    """The write was stored: the entry is it, or a later version still holding its changes."""
    PENDING = "pending"
    """The key is still at the revision the write expected: it may land yet (or be sent again)."""
    LOST = "lost"
    """The key moved on without it: a write expecting an older revision can never be stored now."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One write of a claim: ``value`` on revision ``expected``, its changes stamped ``stamp``."""

    claim: Claim
    expected: int
    value: bytes
    stamp: Stamp

    @classmethod
    def build(cls, claim: Claim, record: Record, revision: int, clock: HybridLogicalClock) -> Attempt:
        """The stored ``record`` (at ``revision``) plus the claim's changes, stamped newer than all of it."""
        newest = record.max_stamp()
        if newest is not None:
            clock.observe(newest[0])
        stamp = clock.tick()
        data = dict(record.data)
        data.update(claim.changes)
        stamps = dict(record.stamps)
        extras = record.extras
        if extras is not None:
            # Each changed field is written whole: the writes inside it and its tallies are behind it.
            extras = extras.copy()
        for name in claim.changes:
            stamps[name] = stamp
            if extras is not None:
                extras.set_field(name, None, None)
        try:
            value = encode_entity(data, stamps, extras or None)
        except EncodeError as exc:
            raise EncodeError(f"{claim.collection}/{claim.uuid}: {exc}") from exc
        return cls(claim, revision, value, stamp)

    def outcome(self, entry: Entry | None) -> Outcome:
        """What ``entry`` (the key's last entry, read after this write went unacknowledged) tells of it."""
        if entry is None:
            return Outcome.LOST
        if entry.op is Op.PUT:
            if entry.value == self.value:
                return Outcome.LANDED
            try:
                record = decode_value(entry.value, time_ns=entry.time_ns)
            except DecodeError:
                record = None
            # The stamp was made for this write alone: a version holding it on every changed field was
            # merged from this write (a later change of one of them would carry a newer stamp).
            if record is not None and record.deleted is None:
                stamps = record.stamps
                if all(stamps.get(name) == self.stamp for name in self.claim.changes):
                    return Outcome.LANDED
        if entry.revision == self.expected:
            return Outcome.PENDING
        return Outcome.LOST


def won(sync: SyncState, attempt: Attempt, revision: int) -> None:
    """NATS stored ``attempt`` at ``revision``: memory takes it as this node's change."""
    time_ns = wall_ms(attempt.stamp[0]) * 1_000_000
    entry = Entry(attempt.claim.uuid, revision, attempt.value, Op.PUT, time_ns)
    sync.inbox.apply(entry, origin="local")
