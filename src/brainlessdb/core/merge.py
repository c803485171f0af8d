"""Merging two versions of an entity: the rules that make every node converge to the same state.

An entity's state is a map of fields, each holding a value and the stamp (see ``core.clock``) of the change
that wrote it, plus an optional delete stamp. Two versions merge field by field: the value with the greater
stamp wins (a last-writer-wins register per field, so concurrent edits of *different* fields both survive).
Equal stamps with different values come from two writers sharing a node name within one clock tick, or
from a client that re-serialized a stored value: the value whose canonical JSON encoding, with numbers
as JavaScript writes them, is greater wins then, so the choice is still the same everywhere. Two spellings
of one number (``1.0`` and the ``1`` that ``JSON.stringify`` makes of it) are one value: the spelling that
is not JavaScript's is kept, so a node never sees a re-serialized value as a change.

A delete absorbs everything: merging anything with a deleted version gives a deleted version whose stamp is
the greater delete stamp, and no fields. That is what makes a delete win over concurrent and later updates
(no resurrection), and it keeps the merge a join: commutative, associative and idempotent, so messages may
arrive late, twice, or in any order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, TypeAlias

import msgspec

from brainlessdb.core.clock import Stamp
from brainlessdb.core.values import MISSING

_canonical = msgspec.json.Encoder(order="sorted")

Stamps: TypeAlias = Stamp | dict[str, Stamp]
"""The stamps of a live entity's fields as held in memory: one ``Stamp`` when every field has that stamp
(an entity just added or loaded, the common case, with no dict to hold), else one per field."""


def field_stamps(stamps: Stamps, data: dict[str, Any]) -> dict[str, Stamp]:
    """The stamp of each field of ``data``: ``stamps`` itself if it is per field (not a copy)."""
    if isinstance(stamps, dict):
        return stamps
    return dict.fromkeys(data, stamps)


class Record:
    """One version of an entity: field values, the stamp of each field, and the delete stamp if deleted.

    ``shared`` is set (by the decoder, or by whoever builds the record) when every field has that one
    stamp. Such a record may be built without ``stamps``: the per-field dict is then made only if someone
    asks for it (a merge), never on the common path of a load, which hands ``compact_stamps`` (the one
    shared stamp) to the new entity. Written by hand rather than as a dataclass for that lazy field.
    """

    __slots__ = ("_stamps", "data", "deleted", "shared")

    data: dict[str, Any]
    deleted: Stamp | None
    shared: Stamp | None
    _stamps: dict[str, Stamp] | None

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        stamps: dict[str, Stamp] | None = None,
        deleted: Stamp | None = None,
        shared: Stamp | None = None,
    ) -> None:
        self.data = {} if data is None else data
        self._stamps = stamps
        self.deleted = deleted
        self.shared = shared

    @property
    def stamps(self) -> dict[str, Stamp]:
        """The stamp of each field (made from ``shared`` on first use if the record was built without)."""
        stamps = self._stamps
        if stamps is None:
            shared = self.shared
            stamps = self._stamps = {} if shared is None else dict.fromkeys(self.data, shared)
        return stamps

    @property
    def compact_stamps(self) -> Stamps:
        """The stamps in the form an entity holds them: ``shared`` when set, else ``stamps``."""
        return self.stamps if self.shared is None else self.shared

    @property
    def is_deleted(self) -> bool:
        return self.deleted is not None

    def max_stamp(self) -> Stamp | None:
        """The newest stamp in this version (the delete stamp for a deleted one)."""
        if self.deleted is not None:
            return self.deleted
        if self.shared is not None:
            return self.shared if self.data else None
        return max(self.stamps.values(), default=None)

    def first_stamp(self) -> Stamp | None:
        """The stamp of the first field (None without fields): all of them for a value stamped alike."""
        if self.shared is not None:
            return self.shared if self.data else None
        return next(iter(self.stamps.values()), None)

    def __eq__(self, other: object) -> bool:
        # As the dataclass it was: ``shared`` is a form of ``stamps``, not part of the value.
        if not isinstance(other, Record):
            return NotImplemented
        return self.data == other.data and self.stamps == other.stamps and self.deleted == other.deleted

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        if self.deleted is not None:
            return f"Record(deleted={self.deleted!r})"
        stamps = f"shared={self.shared!r}" if self._stamps is None else f"stamps={self._stamps!r}"
        return f"Record(data={self.data!r}, {stamps})"


def field_wins(stamp: Stamp, value: Any, other_stamp: Stamp, other_value: Any) -> bool:
    """True when ``(stamp, value)`` beats ``(other_stamp, other_value)`` for one field."""
    if stamp != other_stamp:
        return stamp > other_stamp
    # Not ``value == other_value``: Python finds 0 == False == 0.0 == -0.0, which JSON tells apart.
    mine = _canonical.encode(value)
    theirs = _canonical.encode(other_value)
    if mine == theirs:
        return False
    return _tie_key(value, mine) > _tie_key(other_value, theirs)


def _tie_key(value: Any, encoded: bytes) -> tuple[bytes, bool, bytes]:
    """The order of two values under one stamp: their JavaScript form first, then the spelling that is not
    JavaScript's (``1.0`` before ``1``), then the canonical JSON itself (a total order: it is injective)."""
    js = js_encoded(value, encoded)
    return js, js != encoded, encoded


def _same_value(value: Any, other: Any) -> bool:
    """True when two field values are the same JSON value (``1``, ``1.0`` and ``True`` all differ)."""
    return bool(_canonical.encode(value) == _canonical.encode(other))


# -- numbers as JavaScript writes them ---------------------------------------------------------------

_JS_INTEGRAL_LIMIT: Final = 1e21
"""``JSON.stringify`` writes an integral number below this as digits (``1.0`` as ``1``), above it with an
exponent (``1e+21``), which a JSON decoder reads back as a float."""
_EXACT_LIMIT: Final = 2.0**53


def js_form(value: Any) -> Any:
    """``value`` as a JavaScript client hands it back after ``JSON.parse`` and ``JSON.stringify``.

    An integral float below 1e21 becomes an int (``1.0`` → ``1``, ``-0.0`` → ``0``, ``1.5e17`` →
    ``150000000000000000``), with the digits JavaScript prints (its shortest ones, padded with zeros);
    everything else is kept. Object keys keep their order here; the canonical encoding sorts them.
    """
    kind = type(value)
    if kind is float:
        if value.is_integer() and -_JS_INTEGRAL_LIMIT < value < _JS_INTEGRAL_LIMIT:
            if -_EXACT_LIMIT < value < _EXACT_LIMIT:
                return int(value)
            return int(Decimal(repr(value)))
        return value
    if kind is list:
        return [js_form(item) for item in value]
    if kind is dict:
        return {key: js_form(item) for key, item in value.items()}
    return value


def js_encoded(value: Any, encoded: bytes | None = None) -> bytes:
    """The canonical JSON of ``value`` in its JavaScript form (``encoded``: its canonical JSON, if known)."""
    if encoded is None:
        encoded = _canonical.encode(value)
    if b"." not in encoded and b"e" not in encoded:
        return encoded  # no float in it (nor text holding a dot or an e): already its JavaScript form
    return _canonical.encode(js_form(value))


def same_js_value(value: Any, other: Any) -> bool:
    """True when two values are one value to a JavaScript client (``1`` and ``1.0``, ``0`` and ``-0.0``)."""
    mine = _canonical.encode(value)
    theirs = _canonical.encode(other)
    return mine == theirs or js_encoded(value, mine) == js_encoded(other, theirs)


def merge_records(a: Record, b: Record) -> Record:
    """The join of two versions of one entity (a new record; the inputs are not changed)."""
    if a.deleted is not None or b.deleted is not None:
        deletes = [s for s in (a.deleted, b.deleted) if s is not None]
        return Record(deleted=max(deletes))
    data = dict(a.data)
    stamps = dict(a.stamps)
    for name, stamp in b.stamps.items():
        mine = stamps.get(name)
        if mine is None or field_wins(stamp, b.data.get(name), mine, data.get(name)):
            data[name] = b.data.get(name)
            stamps[name] = stamp
    return Record(data=data, stamps=stamps)


def merge_into(data: dict[str, Any], stamps: dict[str, Stamp], incoming: Record) -> dict[str, Any]:
    """Merge a live (not deleted) incoming version into ``data``/``stamps`` in place.

    Returns the fields that changed, mapped to their previous value (absent fields map to ``MISSING``).
    The caller deals with deletes itself, since they remove the entity rather than change it.
    """
    return merge_stored(data, stamps, incoming)[0]


def merge_stored(
    data: dict[str, Any], stamps: dict[str, Stamp], stored: Record
) -> tuple[dict[str, Any], bool]:
    """``merge_into`` a version read from the bucket; also whether the merge holds something it lacks.

    The flag is True when, after the merge, ``data``/``stamps`` hold a field ``stored`` does not have, a
    newer stamp, or under the same stamp a value that is not the same to a JavaScript client: what the
    bucket holds is then behind this node, which must write the merge back (``stored`` was written over
    the merge of earlier versions by another client, or by a node that did not know a field).
    """
    changed: dict[str, Any] = {}
    ahead = False
    incoming = stored.stamps
    for name, stamp in incoming.items():
        mine = stamps.get(name)
        value = stored.data.get(name)
        if mine is None or field_wins(stamp, value, mine, data.get(name)):
            if mine is None or not _same_value(data.get(name), value):
                changed[name] = data.get(name, MISSING)
            data[name] = value
            stamps[name] = stamp
        elif mine != stamp or not same_js_value(data.get(name), value):
            ahead = True
    if len(stamps) > len(incoming):
        ahead = True
    return changed, ahead


def dominates(local: Record, remote: Record) -> bool:
    """True when ``local`` holds something ``remote`` does not, so it must still be written."""
    merged = merge_records(local, remote)
    return (
        merged.deleted != remote.deleted
        or merged.stamps != remote.stamps
        or any(not _same_value(value, remote.data.get(name)) for name, value in merged.data.items())
    )
