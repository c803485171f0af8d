"""Stamps as an entity holds them: every form, and the functions that read and change each.

Each field of an entity has the stamp of the change that wrote it (see ``core.clock``), but most entities
hold far fewer stamps than fields: one, shared by every field, for an entity as added or loaded; a few
fields' own besides a shared one for an entity changed since. ``Stamps`` names the forms, each packed into
integers in an entity (a table of the process numbers the node names, and the tuples of field names):
what made an entity's stamps cost 48 bytes where a dict of them took 272 and each stamp 88 (see
docs/performance.md, "Compact entities"). ``merge`` reads them as a dict of each field's stamp
(``field_stamps``) and holds the merged ones compact again (``compact``). Pure.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from typing import Any, Final, Generic, TypeAlias, TypeVar, cast

from brainlessdb.core.clock import Stamp

FieldStamps: TypeAlias = tuple[Any, ...]
"""The stamps of an entity whose fields do not all share one, held without a dict: ``(base, name, stamp,
name, stamp...)``, a flat tuple where every field not named has the stamp ``base``, each stamp packed (see
``PackedStamp``; ``unpacked`` reads a member). An entity changed once since it was added or loaded holds
``(base, "state", stamp)``: 64 bytes and two packed stamps, where a dict of its fields' stamps took 272 and
each stamp 88 (see docs/performance.md, "Memory per entity"). At least one field has ``base`` in a version
decoded this way; a tuple made by ``restamp`` may name every field (``encode_entity`` then picks its base
again)."""

PackedStamp: TypeAlias = int
"""A stamp packed into one integer, ``hlc << NODE_BITS | index`` of its node name in a table of the
process (see ``pack``): 36 bytes, where the tuple and its clock value take 88. How an entity holds the one
stamp all its fields share; unpacked before it is compared or stored."""

PackedFieldStamps: TypeAlias = int
"""``FieldStamps`` packed into one negative integer, as an entity holds them (see ``pack_fields``): the
stamps side by side, ``STAMP_BITS`` each, above the index of the tuple of the names in a table of the
process. An entity changed once holds 48 bytes where the tuple and its two packed stamps take 136, and an
entity whose seven fields each have a stamp of its own 112 where they take 396."""

Stamps: TypeAlias = Stamp | PackedStamp | FieldStamps | PackedFieldStamps | dict[str, Stamp]
"""The stamps of a live entity's fields as held in memory: one stamp when every field has it (an entity
just added or loaded, the common case; packed in an entity), ``FieldStamps`` when a few fields have stamps
of their own (packed in an entity: a negative integer, where one stamp packed is not), and a dict of each
field's stamp when more than ``MAX_OVERRIDES`` do (where a tuple would be searched at every change). A
``Stamp`` is the one tuple of length 2; ``FieldStamps`` have an odd length. The functions here read every
form (``unpack_fields`` for the packed ``FieldStamps``)."""

NODE_BITS: Final = 16
NODE_MASK: Final = (1 << NODE_BITS) - 1
K = TypeVar("K", bound=Hashable)


class _Numbering(Generic[K]):
    """Keys numbered in the order first seen, for the life of the process, up to ``limit`` of them: what
    packed stamps hold in place of a node name or a tuple of field names."""

    __slots__ = ("index", "keys", "limit")

    _lock = threading.Lock()

    def __init__(self, limit: int) -> None:
        self.keys: list[K] = []
        """The keys by number (to be read only)."""
        self.index: dict[K, int] = {}
        """Each key's number (to be read only; hot paths read it directly)."""
        self.limit = limit

    def number(self, key: K) -> int | None:
        """The number of ``key``, given the next one if it has none yet; None once ``limit`` keys have one."""
        found = self.index.get(key)
        if found is None:
            with self._lock:
                found = self.index.get(key)
                if found is None:
                    if len(self.keys) >= self.limit:
                        return None
                    found = len(self.keys)
                    self.keys.append(key)
                    self.index[key] = found
        return found


_nodes: _Numbering[str] = _Numbering(NODE_MASK + 1)
"""The node names stamps were packed with: a handful in a system (its nodes and locations)."""
_node_index = _nodes.index


def pack(stamp: Stamp) -> PackedStamp | Stamp:
    """``stamp`` as one integer (the stamp itself once ``2**NODE_BITS`` node names were packed)."""
    hlc, node = stamp
    index = _node_index.get(node)
    if index is None:
        index = _nodes.number(node)
        if index is None:
            return stamp
    return hlc << NODE_BITS | index


MAX_OVERRIDES: Final = 8
"""The most fields with a stamp of their own that ``FieldStamps`` hold; past it an entity holds a dict."""

STAMP_BITS: Final = 80
"""The bits of one packed stamp in ``PackedFieldStamps``: a clock value below ``2**63`` (what the stored
format takes) and the node's index."""
_STAMP_MASK: Final = (1 << STAMP_BITS) - 1
_NAMES_BITS: Final = 16
_NAMES_MASK: Final = (1 << _NAMES_BITS) - 1
_name_sets: _Numbering[tuple[str, ...]] = _Numbering(_NAMES_MASK + 1)
"""The tuples of field names ``FieldStamps`` were packed with: a few per collection (the fields changed
since an entity was added or loaded, in the order they were)."""
_name_set_index = _name_sets.index


_SHIFTS: Final = tuple(_NAMES_BITS + STAMP_BITS * slot for slot in range(MAX_OVERRIDES + 2))
"""Where the stamp in each slot (0 the base, then each named field's) starts in ``PackedFieldStamps``."""
_CLEARS: Final = tuple(~(_STAMP_MASK << shift) for shift in _SHIFTS)
"""``PackedFieldStamps`` ``&`` these clears the stamp in each slot."""


def pack_fields(stamps: FieldStamps) -> PackedFieldStamps | FieldStamps:
    """``FieldStamps`` (their stamps packed) as one negative integer; the tuple itself where they cannot
    be (a stamp not packed, or ``2**16`` tuples of names packed already)."""
    index = _name_sets.number(stamps[1::2])
    if index is None:
        return stamps
    value = 0
    for packed in stamps[-1::-2]:  # the last field's stamp first, the base last
        if type(packed) is not int:
            return stamps
        value = value << STAMP_BITS | packed
    return -(value << _NAMES_BITS | index)


def unpack_fields(packed: PackedFieldStamps) -> FieldStamps:
    """The ``FieldStamps`` ``pack_fields`` made ``packed`` of."""
    value = -packed
    names = _name_sets.keys[value & _NAMES_MASK]
    value >>= _NAMES_BITS
    out: list[Any] = [value & _STAMP_MASK]
    for name in names:
        value >>= STAMP_BITS
        out += (name, value & _STAMP_MASK)
    return tuple(out)


def held(stamps: Stamps) -> Stamps:
    """``stamps`` in the form an entity holds them: one stamp or ``FieldStamps`` packed."""
    if type(stamps) is tuple:
        if len(stamps) == 2:
            return pack(stamps)
        return pack_fields(stamps)
    return stamps


def packed_nodes() -> list[str]:
    """The node names stamps are packed with, by index (a copy): what makes packed stamps readable
    elsewhere (``repacking``)."""
    return list(_nodes.keys)


def repacking(nodes: list[str]) -> list[int] | None:
    """For stamps packed with the node names ``nodes`` (by index), this process's index of each, so that
    ``hlc << NODE_BITS | indexes[index]`` is the stamp as ``pack`` packs it here; None if they cannot all
    be packed here (``2**NODE_BITS`` names packed already)."""
    indexes = []
    for node in nodes:
        index = _nodes.number(node)
        if index is None:
            return None
        indexes.append(index)
    return indexes


def unpack(packed: PackedStamp) -> Stamp:
    """The stamp ``pack`` made ``packed`` of."""
    return (packed >> NODE_BITS, _nodes.keys[packed & NODE_MASK])


def unpacked(stamp: PackedStamp | Stamp) -> Stamp:
    """A stamp as a tuple, whether it was packed or not."""
    return unpack(stamp) if type(stamp) is int else cast("Stamp", stamp)


def shared_stamp(stamps: Stamps) -> Stamp | None:
    """The one stamp every field has, if the stamps are held so (None when they are held per field)."""
    if type(stamps) is int:
        return unpack(stamps) if stamps >= 0 else None
    if type(stamps) is tuple and len(stamps) == 2:
        return cast("Stamp", stamps)
    return None


def field_stamps(stamps: Stamps, data: Iterable[str]) -> dict[str, Stamp]:
    """The stamp of each field named in ``data`` (the fields an entity holds): ``stamps`` itself if it is a
    dict (not a copy), else a new dict."""
    if isinstance(stamps, dict):
        return stamps
    if isinstance(stamps, int):
        if stamps >= 0:
            return dict.fromkeys(data, unpack(stamps))
        stamps = unpack_fields(stamps)
    if len(stamps) == 2:
        return dict.fromkeys(data, cast("Stamp", stamps))
    out: dict[str, Stamp] = dict.fromkeys(data, unpacked(stamps[0]))
    for index in range(1, len(stamps), 2):
        out[stamps[index]] = unpacked(stamps[index + 1])
    return out


def compact(stamps: dict[str, Stamp]) -> Stamps:
    """``stamps`` (one per field) in the form an entity holds them: the one stamp they all have, else
    ``FieldStamps`` over the stamp most fields have, else (more than ``MAX_OVERRIDES`` differ) the dict."""
    if not stamps:
        return stamps
    base = next(iter(stamps.values()))
    pairs: list[Any] = []
    for name, stamp in stamps.items():
        if stamp != base:
            pairs += (name, stamp)
    if not pairs:
        return pack(base)
    if len(pairs) >= len(stamps):
        # The first field's stamp is not the majority's: the most common one is the base.
        base = most_common(stamps)
        pairs = []
        for name, stamp in stamps.items():
            if stamp != base:
                pairs += (name, stamp)
    if len(pairs) > 2 * MAX_OVERRIDES:
        return stamps
    for index in range(1, len(pairs), 2):
        pairs[index] = pack(pairs[index])
    return pack_fields((pack(base), *pairs))


def most_common(stamps: dict[str, Stamp]) -> Stamp:
    """The stamp most fields have (the first such, in field order, on a tie)."""
    counts: dict[Stamp, int] = {}
    for stamp in stamps.values():
        counts[stamp] = counts.get(stamp, 0) + 1
    return max(counts, key=counts.__getitem__)


def restamp(stamps: Stamps, name: str, stamp: Stamp) -> Stamps | None:
    """An entity's ``stamps`` once its field ``name`` is written whole at ``stamp``, in the form an entity
    holds them (``held``): a dict is changed in place and returned (a hot path: one per tracked change,
    the commonest cases first: a field changed again, the first change, another field's). None when one
    more field with a stamp of its own is more than ``FieldStamps`` hold: the caller then makes the dict
    (``field_stamps``).

    The ``FieldStamps`` made for an entity whose every field now has a stamp of its own name them all (an
    entity of one field, changed: ``encode_entity`` picks its base again, ``compact`` packs it back)."""
    if type(stamps) is int:
        if stamps >= 0:
            # The first change of a field since the entity was added or loaded: ``pack_fields`` of
            # ``(stamps, name, pack(stamp))`` inlined, for a node and a field already known.
            node = _node_index.get(stamp[1])
            alone = _name_set_index.get((name,))
            if node is None or alone is None:
                return pack_fields((stamps, name, pack(stamp)))
            return -(((stamp[0] << NODE_BITS | node) << STAMP_BITS | stamps) << _NAMES_BITS | alone)
        value = -stamps
        names = _name_sets.keys[value & _NAMES_MASK]
        if name in names:
            # A field with a stamp of its own, changed again: its stamp replaced in place in the integer.
            index = _node_index.get(stamp[1])  # ``pack`` inlined, for a node already known
            packed = pack(stamp) if index is None else stamp[0] << NODE_BITS | index
            if type(packed) is int:
                slot = names.index(name) + 1
                return -(value & _CLEARS[slot] | packed << _SHIFTS[slot])
        stamps = unpack_fields(stamps)
    if isinstance(stamps, tuple):
        size = len(stamps)
        if size > 2:
            if stamps[size - 2] == name:  # the field changed last, changed again
                index = _node_index.get(stamp[1])  # ``pack`` inlined, for a node already known
                packed = pack(stamp) if index is None else stamp[0] << NODE_BITS | index
                return pack_fields((stamps[0], name, packed) if size == 3 else (*stamps[:-1], packed))
            if name in stamps:  # only a name equals a str: every other member is a stamp
                index = stamps.index(name, 1)
                return pack_fields((*stamps[: index + 1], pack(stamp), *stamps[index + 2 :]))
            if size > 2 * MAX_OVERRIDES:
                return None
            return pack_fields((*stamps, name, pack(stamp)))
        if stamp == stamps:
            return pack(stamp)
        return pack_fields((pack(cast("Stamp", stamps)), name, pack(stamp)))
    per_field = cast("dict[str, Stamp]", stamps)
    per_field[name] = stamp
    return per_field
