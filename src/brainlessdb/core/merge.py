"""Merging two versions of an entity: the rules that make every node converge to the same state.

An entity's state is a map of fields, each holding a value and the stamp (see ``core.clock``) of the change
that wrote it, plus an optional delete stamp. Two versions merge field by field: the value with the greater
stamp wins (a last-writer-wins register per field, so concurrent edits of *different* fields both survive).
Equal stamps with different values come from two writers sharing a node name within one clock tick, or
from a client that re-serialized a stored value: the value whose canonical JSON encoding, with numbers
as JavaScript writes them, is greater wins then, so the choice is still the same everywhere. Two spellings
of one number (``1.0`` and the ``1`` that ``JSON.stringify`` makes of it) are one value: the spelling that
is not JavaScript's is kept, so a node never sees a re-serialized value as a change.

A dict field also keeps the stamps of changes made inside it, and a counter field the tallies of the
nodes that incremented it (``Extras``; see ``core.nested`` and ``core.counters``): such a field merges by
those rules, so that concurrent changes of different keys, and concurrent increments, all survive.

A delete absorbs everything: merging anything with a deleted version gives a deleted version whose stamp is
the greater delete stamp, and no fields. That is what makes a delete win over concurrent and later updates
(no resurrection), and it keeps the merge a join: commutative, associative and idempotent, so messages may
arrive late, twice, or in any order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, TypeAlias

import msgspec

from brainlessdb.core import counters, expiry, nested
from brainlessdb.core.clock import Stamp
from brainlessdb.core.counters import Counts
from brainlessdb.core.expiry import Expiry
from brainlessdb.core.nested import PathStamps
from brainlessdb.core.stamps import FieldStamps, Stamps, compact, field_stamps, unpacked
from brainlessdb.core.tracked import untrack
from brainlessdb.core.values import MISSING

_canonical = msgspec.json.Encoder(order="sorted")


class Extras:
    """What the fields of one entity version hold beyond a value and a stamp: the kept writes inside dict
    fields (``paths``, see ``core.nested``) and the tallies of counter fields (``counts``, see
    ``core.counters``), each by field name; and the entity's ``expiry`` (see ``core.expiry``), which
    belongs to no field. Most entities have none of these: ``None`` stands for an empty one."""

    __slots__ = ("counts", "expiry", "paths")

    def __init__(
        self,
        paths: dict[str, PathStamps] | None = None,
        counts: dict[str, Counts] | None = None,
        expiry: Expiry | None = None,
    ) -> None:
        self.paths: dict[str, PathStamps] = {} if paths is None else paths
        self.counts: dict[str, Counts] = {} if counts is None else counts
        self.expiry = expiry

    def copy(self) -> Extras:
        """A copy whose ``paths`` and ``counts`` maps may change without changing this one."""
        return Extras(dict(self.paths), dict(self.counts), self.expiry)

    def __bool__(self) -> bool:
        return bool(self.paths or self.counts) or self.expiry is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Extras):
            return NotImplemented
        return self.paths == other.paths and self.counts == other.counts and self.expiry == other.expiry

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        tail = "" if self.expiry is None else f", expiry={self.expiry!r}"
        return f"Extras(paths={self.paths!r}, counts={self.counts!r}{tail})"

    def max_stamp(self) -> Stamp | None:
        newest = max((stamp for paths in self.paths.values() for stamp in paths.values()), default=None)
        if self.expiry is not None and (newest is None or self.expiry[1] > newest):
            newest = self.expiry[1]
        return newest

    def holds(self, name: str) -> bool:
        return name in self.paths or name in self.counts

    def set_field(self, name: str, paths: PathStamps | None, counts: Counts | None) -> None:
        if paths:
            self.paths[name] = paths
        else:
            self.paths.pop(name, None)
        if counts:
            self.counts[name] = counts
        else:
            self.counts.pop(name, None)


def expiry_of(extras: Extras | None) -> Expiry | None:
    """The expiry held in ``extras`` (None for none)."""
    return None if extras is None else extras.expiry


def same_extras(a: Extras | None, b: Extras | None) -> bool:
    """True when two versions hold the same extras (``None`` is an empty one)."""
    if a is None or b is None:
        return not a and not b
    return a == b


class Record:
    """One version of an entity: field values, the stamp of each field, and the delete stamp if deleted.

    ``shared`` is set (by the decoder, or by whoever builds the record) when every field has that one
    stamp, and ``held`` (by the decoder) when a few fields have stamps of their own (``FieldStamps``, at
    least one field with their base). Such a record may be built without ``stamps``: the per-field dict is
    then made only if someone asks for it (a merge), never on the common path of a load, which hands
    ``compact_stamps`` to the new entity. Written by hand rather than as a dataclass for that lazy field.
    """

    __slots__ = ("_stamps", "data", "deleted", "extras", "held", "shared")

    data: dict[str, Any]
    deleted: Stamp | None
    shared: Stamp | None
    held: FieldStamps | None
    extras: Extras | None
    _stamps: dict[str, Stamp] | None

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        stamps: dict[str, Stamp] | None = None,
        deleted: Stamp | None = None,
        shared: Stamp | None = None,
        extras: Extras | None = None,
        held: FieldStamps | None = None,
    ) -> None:
        self.data = {} if data is None else data
        self._stamps = stamps
        self.deleted = deleted
        self.shared = shared
        self.held = held
        self.extras = extras or None

    @property
    def stamps(self) -> dict[str, Stamp]:
        """The stamp of each field (made from ``shared`` or ``held`` on first use if the record was built
        without)."""
        stamps = self._stamps
        if stamps is None:
            shared = self.shared
            if shared is not None:
                stamps = dict.fromkeys(self.data, shared)
            elif self.held is not None:
                stamps = field_stamps(self.held, self.data)
            else:
                stamps = {}
            self._stamps = stamps
        return stamps

    @property
    def compact_stamps(self) -> Stamps:
        """The stamps in the form an entity holds them (see ``Stamps``)."""
        if self.shared is not None:
            return self.shared
        if self.held is not None:
            return self.held
        return compact(self.stamps)

    @property
    def is_deleted(self) -> bool:
        return self.deleted is not None

    def max_stamp(self) -> Stamp | None:
        """The newest stamp in this version (the delete stamp for a deleted one)."""
        if self.deleted is not None:
            return self.deleted
        held = self.held
        if self.shared is not None:
            newest = self.shared if self.data else None
        elif held is not None:
            newest = max(map(unpacked, held[::2]))  # the base (which a field has) and every field's own
        else:
            newest = max(self.stamps.values(), default=None)
        if self.extras is not None:
            inside = self.extras.max_stamp()
            if inside is not None and (newest is None or inside > newest):
                newest = inside
        return newest

    def first_stamp(self) -> Stamp | None:
        """The stamp of the first field (None without fields): all of them for a value stamped alike."""
        if self.shared is not None:
            return self.shared if self.data else None
        return next(iter(self.stamps.values()), None)

    def __eq__(self, other: object) -> bool:
        # As the dataclass it was: ``shared`` is a form of ``stamps``, not part of the value.
        if not isinstance(other, Record):
            return NotImplemented
        return (
            self.data == other.data
            and self.stamps == other.stamps
            and self.deleted == other.deleted
            and same_extras(self.extras, other.extras)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        if self.deleted is not None:
            return f"Record(deleted={self.deleted!r})"
        if self._stamps is not None:
            stamps = f"stamps={self._stamps!r}"
        elif self.held is not None:
            stamps = f"held={self.held!r}"
        else:
            stamps = f"shared={self.shared!r}"
        extras = "" if self.extras is None else f", extras={self.extras!r}"
        return f"Record(data={self.data!r}, {stamps}{extras})"


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
    a_extras, b_extras = a.extras, b.extras
    if a_extras is None and b_extras is None:
        for name, stamp in b.stamps.items():
            mine = stamps.get(name)
            if mine is None or field_wins(stamp, b.data.get(name), mine, data.get(name)):
                data[name] = b.data.get(name)
                stamps[name] = stamp
        return Record(data=data, stamps=stamps)
    extras = Extras() if a_extras is None else a_extras.copy()
    extras.expiry = expiry.merge(expiry_of(a_extras), expiry_of(b_extras))
    for name, stamp in b.stamps.items():
        mine = stamps.get(name)
        value = b.data.get(name)
        if mine is None:
            data[name], stamps[name] = value, stamp
            extras.set_field(name, *_field_extras(b_extras, name))
        else:
            data[name], stamps[name], paths, counts = merge_field(
                name, (data.get(name), mine, a_extras), (value, stamp, b_extras)
            )
            extras.set_field(name, paths, counts)
    return Record(data=data, stamps=stamps, extras=extras)


FieldVersion: TypeAlias = tuple[Any, Stamp, Extras | None]
"""One version of one field: its value, its stamp, and the extras of the version it is part of."""


def _field_extras(extras: Extras | None, name: str) -> tuple[PathStamps | None, Counts | None]:
    if extras is None:
        return None, None
    return extras.paths.get(name), extras.counts.get(name)


def merge_field(
    name: str, a: FieldVersion, b: FieldVersion
) -> tuple[Any, Stamp, PathStamps | None, Counts | None]:
    """The join of two versions of a field that holds extras in either: value, stamp, kept writes, tallies.

    The newer write of the whole field wins, as for any field (with its tallies: those of both when both
    count from that one write); then the writes inside it that are newer, from both versions, are
    applied oldest first (see ``core.nested``).
    """
    a_value, a_stamp, a_extras = a
    b_value, b_stamp, b_extras = b
    a_paths, a_counts = _field_extras(a_extras, name)
    b_paths, b_counts = _field_extras(b_extras, name)
    # A counter's write is its base: the value less the tallies counting from it.
    a_base = a_value - counters.total(a_counts) if a_counts else a_value
    b_base = b_value - counters.total(b_counts) if b_counts else b_value
    if field_wins(b_stamp, b_base, a_stamp, a_base):
        base, stamp, counts = b_base, b_stamp, b_counts
    else:
        base, stamp, counts = a_base, a_stamp, a_counts
    if a_stamp == b_stamp and (a_counts or b_counts):
        counts = counters.merge(a_counts or {}, b_counts or {})
    writes = [(when, path, a_value) for path, when in (a_paths or {}).items() if when > stamp]
    writes += [(when, path, b_value) for path, when in (b_paths or {}).items() if when > stamp]
    if not writes:
        if counts and type(base) is int:
            return base + counters.total(counts), stamp, None, counts
        return base, stamp, None, None
    writes.sort(key=lambda write: (write[0], len(write[1]), write[1]))
    value = untrack(base)
    kept: PathStamps = {}
    last: tuple[Stamp, nested.Path] | None = None
    for index, (when, path, source) in enumerate(writes):
        if last == (when, path):
            continue  # the same write, in both versions (or two sharing one stamp: one was picked)
        last = (when, path)
        new = nested.lookup(source, path)
        if index + 1 < len(writes) and writes[index + 1][:2] == (when, path):
            new = _pick(when, new, nested.lookup(writes[index + 1][2], path))
        value = nested.apply(value, path, new if nested.is_absent(new) else untrack(new))
        kept = nested.record_write(kept, path, when)
    return value, stamp, kept, None


def _pick(stamp: Stamp, one: Any, other: Any) -> Any:
    """Of two values written at one path under one stamp, the one every node picks (present wins)."""
    if nested.is_absent(one) or nested.is_absent(other):
        return other if nested.is_absent(one) else one
    return one if field_wins(stamp, one, stamp, other) else other


def merge_stored(
    data: dict[str, Any], stamps: dict[str, Stamp], stored: Record, extras: Extras | None = None
) -> tuple[dict[str, Any], bool, Extras | None]:
    """Merge a live (not deleted) version read from the bucket into ``data``/``stamps`` in place.

    ``extras`` are those of ``data`` (not changed: the extras after the merge are returned). Returns the
    fields that changed, mapped to their previous value (absent fields map to ``MISSING``), and whether
    the merge holds something ``stored`` lacks: a field it does not have, a newer stamp, under the same
    stamp a value that is not the same to a JavaScript client, or other extras. What the bucket holds is
    then behind this node, which must write the merge back (``stored`` was written over the merge of
    earlier versions by another client, or by a node that did not know a field). The caller deals with
    deletes itself, since they remove the entity rather than change it.
    """
    changed: dict[str, Any] = {}
    ahead = False
    incoming = stored.stamps
    stored_extras = stored.extras
    if extras is None and stored_extras is None:
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
        return changed, ahead, None
    merged = Extras() if extras is None else extras.copy()
    merged.expiry = expiry.merge(expiry_of(extras), expiry_of(stored_extras))
    if merged.expiry != expiry_of(stored_extras):
        ahead = True  # this node set the expiry after the stored version's
    for name, stamp in incoming.items():
        mine = stamps.get(name)
        value = stored.data.get(name)
        old = data.get(name, MISSING)
        if mine is None:
            new, new_stamp = value, stamp
            paths, counts = _field_extras(stored_extras, name)
        elif (extras is None or not extras.holds(name)) and (
            stored_extras is None or not stored_extras.holds(name)
        ):
            if field_wins(stamp, value, mine, old):
                new, new_stamp, paths, counts = value, stamp, None, None
            else:
                if mine != stamp or not same_js_value(old, value):
                    ahead = True
                continue
        else:
            new, new_stamp, paths, counts = merge_field(
                name, (old, mine, extras), (value, stamp, stored_extras)
            )
            if (
                new_stamp != stamp
                or not same_js_value(new, value)
                or (paths or None, counts or None) != _field_extras(stored_extras, name)
            ):
                ahead = True
        if old is MISSING or not _same_value(old, new):
            changed[name] = old
        data[name] = new
        stamps[name] = new_stamp
        merged.set_field(name, paths, counts)
    if len(stamps) > len(incoming):
        ahead = True
    return changed, ahead, merged or None


def dominates(local: Record, remote: Record) -> bool:
    """True when ``local`` holds something ``remote`` does not, so it must still be written."""
    merged = merge_records(local, remote)
    return (
        merged.deleted != remote.deleted
        or merged.stamps != remote.stamps
        or any(not _same_value(value, remote.data.get(name)) for name, value in merged.data.items())
        or not same_extras(merged.extras, remote.extras)
    )
