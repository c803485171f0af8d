"""Entity sizes: a change that would make an entity's stored value larger than the storage takes is refused
at the call, without encoding the entity on every small change.

The storage knows the largest value it stores (NATS: the server's ``max_payload`` less a write's headers);
the shell gives it to each collection when the database starts. Before that no limit is known and nothing
is checked here (the flush then reports what is too large).

A change is *small* when it cannot add more than a known few bytes: a number, a bool, ``None`` or a string
of at most ``SHORT_TEXT`` characters set as a top-level field. Small changes are never measured, unless
their entity is *large*: one whose stored value may be more than ``limit - margin``, where the margin is
what small changes of every field together could add. ``SizeGuard.large`` holds those uuids, and is all the
hot path of a field change looks at.

Everything else (an add, a long string, a dict or list, a change inside one) is counted against a running
upper bound of the entity's size: the growth of each change is bounded from the value given (which the
change has just walked to check it anyway), and the entity is encoded only when its bound is unknown or
stale (its revision moved: a merge, or its own write), or when the bound would pass the limit. There the
check is exact: the entity is encoded as it would be stored, and refused only if that is over the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

import msgspec

from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.codec import encode_entity
from brainlessdb.core.entity import Entity
from brainlessdb.core.merge import Extras
from brainlessdb.core.schema import Schema
from brainlessdb.core.stamps import Stamps, field_stamps
from brainlessdb.core.table import EntityTable
from brainlessdb.core.values import MISSING
from brainlessdb.errors import EncodeError, SchemaError

SHORT_TEXT: Final = 128
"""Characters of the longest string a small change may set (JSON needs at most 6 bytes a character)."""
SMALL_VALUE: Final = 6 * SHORT_TEXT + 2
"""Bytes of the JSON of a small value, at most (a string of SHORT_TEXT characters, all escaped)."""
SCALAR_BYTES: Final = 32
"""Bytes of the JSON of a number, a bool or null (20 digits and a sign; a float's repr is at most 24)."""
ENVELOPE_BYTES: Final = 48
"""Bytes of the stored value around the fields and stamps (``{"_v":1,"d":{...},"s":...,"t":{...}}``)."""
BOUNDS_KEPT: Final = 4096
"""Running bounds kept for entities that are not large; past this, they are dropped (and measured again)."""
SIZABLE_TYPES: Final = frozenset({"str", "dict", "list", "any"})

_encoder = msgspec.json.Encoder()
encode_json = _encoder.encode
"""The JSON bytes of a checked value (in C: what an add measures its new values with)."""


def encoded_size(value: Any) -> int:
    """Bytes of the JSON of a (checked) value."""
    try:
        return len(_encoder.encode(value))
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise SchemaError(f"cannot be stored as JSON: {exc}") from exc


def value_bound(value: Any) -> int:
    """An upper bound of the bytes of the JSON of a checked value: cheap for small values, exact otherwise."""
    kind = type(value)
    if kind is str:
        length = len(value)
        return 6 * length + 2 if length <= SHORT_TEXT else encoded_size(value)
    if kind is bool or kind is float or value is None:
        return SCALAR_BYTES
    if kind is int and -(2**63) <= value < 2**64:
        return SCALAR_BYTES
    return encoded_size(value)


@dataclass(slots=True)
class Undo:
    """How to put back a container changed in place, should the change turn out to be too large."""

    container: dict[str, Any] | list[Any]
    items: dict[str, Any] | list[Any]


class SizeGuard:
    """Refuses the local changes of one collection that would make an entity larger than ``limit`` bytes."""

    def __init__(self, table: EntityTable, clock: HybridLogicalClock) -> None:
        self.name = table.name
        self._table = table
        self._clock = clock
        self.limit: int | None = None
        self.large: set[str] = set()
        """The uuids of the entities whose small changes are measured too (never rebound)."""
        self._bounds: dict[str, tuple[int | None, int]] = {}  # uuid -> (revision, upper bound of the size)
        self.schema: Schema | None = None
        """The schema the figures below are for."""
        self._sizable: tuple[str, ...] = ()
        self.pick: Callable[[dict[str, Any]], Any] | None = None
        """The values of the fields that may hold large values (strings, dicts, lists, any), as a tuple."""
        self.room = 0
        """Bytes those values of a new entity may take without it being measured."""
        self._fixed = 0  # bytes of a new entity apart from its sizable values
        self._margin = 0  # bytes small changes of every field could add together
        self._threshold = 0  # entities whose size may pass this are large

    def set_limit(self, limit: int | None) -> None:
        """Check against ``limit`` bytes from now on (None: no check); entities held now are measured."""
        self.limit = limit
        self.schema = None
        self.large.clear()
        self._bounds.clear()
        if limit is None:
            return
        self._prepare()
        for entity in list(self._table.entities.values()):
            self._settle(
                entity._uuid, entity._revision, self._measure(entity._data, entity._stamps, entity._extras)
            )

    # -- the checks ------------------------------------------------------------------------------

    def check_new(self, uuid: str, values: dict[str, Any]) -> None:
        """``SchemaError`` if a new entity of ``values`` (checked) would be stored larger than the limit."""
        if self._table.schema is not self.schema:
            self._prepare()
        pick = self.pick
        try:
            # The values that may be large, encoded at once (in C): strings and containers exactly.
            size = self._fixed if pick is None else self._fixed + len(encode_json(pick(values)))
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError):
            size = self._threshold + 1  # measured as a whole below
        if size <= self._threshold:
            return  # the common case: far below the limit, and nothing to remember
        exact = self._measure(values, (self._clock.last + 1, self._clock.node))
        if exact > self._limit():
            largest = max(values, key=lambda name: value_bound(values[name]), default=None)
            raise SchemaError(
                f"{self.name}: the new entity would be stored as {exact} bytes, "
                f"over the {self.limit} bytes the storage takes",
                field=largest,
            )
        self._settle(uuid, None, exact)

    def check_set(self, entity: Entity, name: str, value: Any) -> None:
        """``SchemaError`` if setting field ``name`` to ``value`` (checked, not stored yet) would make
        ``entity`` larger than the limit."""
        kind = type(value)
        growth = value_bound(value)
        if growth <= SMALL_VALUE and kind is not dict and kind is not list and entity._uuid not in self.large:
            return  # a small change of an entity that is not large: within the margin
        if self._within(entity, name, growth):
            return
        data = dict(entity._data)
        data[name] = value
        size = self._measure(data, self._stamps_after(entity, name), entity._extras)
        if size > self._limit():
            raise self._too_large(entity, name, size)
        self._settle(entity._uuid, entity._revision, size)

    def before_nested(self, entity: Entity, name: str, container: Any, added: Any) -> Undo | None:
        """A container of field ``name`` is about to change in place, taking in ``added`` (``MISSING``
        for a change that adds nothing); an ``Undo`` when the change must be measured once made."""
        growth = 0 if added is MISSING else value_bound(added)
        # The stamps of the paths it writes inside the field (one for a list, one a key for a dict).
        path = 6 * (len(name) + sum(len(key) + 1 for key in container.path)) + self._stamp_bytes("")
        if container.whole or not isinstance(added, dict):
            keys = 1
            if added is MISSING and not container.whole and container:
                path += 6 * max(map(len, container))  # a removal: its key, which is not known here
        else:
            keys = len(added)
        growth += keys * path
        if self._within(entity, name, growth):
            return None
        # Close to the limit: measured exactly once made, and undone if too large (a shallow copy keeps
        # the identity of the containers inside, which the caller may hold).
        items = dict(container) if isinstance(container, dict) else list(container)
        return Undo(container, items)

    def after_nested(self, entity: Entity, name: str, undo: Undo, extras: Extras | None) -> None:
        """Measure the change ``before_nested`` said to; undo it and raise ``SchemaError`` if too large.
        ``extras``: the entity's extras after a change inside the field (None: the field is written whole)."""
        if extras is None:
            size = self._measure(entity._data, self._stamps_after(entity, name), entity._extras)
        else:
            size = self._measure(entity._data, entity._stamps, extras)
        if size > self._limit():
            container, items = undo.container, undo.items
            if isinstance(container, dict):
                dict.clear(container)
                dict.update(container, items)
            else:
                list.__setitem__(container, slice(None), items)
            raise self._too_large(entity, name, size)
        self._settle(entity._uuid, entity._revision, size)

    def forget(self, uuid: str) -> None:
        """The entity ``uuid`` is gone."""
        self.large.discard(uuid)
        self._bounds.pop(uuid, None)

    def clear(self) -> None:
        self.large.clear()
        self._bounds.clear()

    # -- bounds ----------------------------------------------------------------------------------

    def _within(self, entity: Entity, name: str, growth: int) -> bool:
        """Whether a change of field ``name`` adding at most ``growth`` bytes keeps the entity's bound
        where no measure is needed (then counted in it); False: measure it exactly.

        A bound leaves out the small changes made since it was counted, unless the entity is large
        (they are all counted then): an entity that is not large must stay within the threshold, so
        that the small changes of every field still fit.
        """
        if self._table.schema is not self.schema:
            self._prepare()
        uuid = entity._uuid
        known = self._bounds.get(uuid)
        if known is not None and known[0] == entity._revision:
            bound = known[1]
        else:
            bound = self._measure(entity._data, entity._stamps, entity._extras)
            self._settle(uuid, entity._revision, bound)
        bound += growth + self._stamp_bytes(name)
        if bound > (self._limit() if uuid in self.large else self._threshold):
            return False
        self._bounds[uuid] = (entity._revision, bound)
        return True

    def _settle(self, uuid: str, revision: int | None, size: int) -> None:
        """The entity ``uuid`` measures ``size`` bytes: large or not from now on."""
        bounds = self._bounds
        if size > self._threshold:
            self.large.add(uuid)
        else:
            self.large.discard(uuid)
            if len(bounds) >= BOUNDS_KEPT and uuid not in bounds:
                self._trim()
                bounds = self._bounds
        bounds[uuid] = (revision, size)

    def _trim(self) -> None:
        """Drop the bounds of entities that are not large (measured again when needed), and of the gone."""
        large = self.large
        large.intersection_update(self._table.entities)
        self._bounds = {uuid: known for uuid, known in self._bounds.items() if uuid in large}

    def _measure(self, data: dict[str, Any], stamps: Stamps, extras: Extras | None = None) -> int:
        try:
            return len(encode_entity(data, stamps, extras, checked=True))
        except EncodeError as exc:
            raise SchemaError(f"{self.name}: cannot be stored: {exc}") from exc

    def _stamps_after(self, entity: Entity, name: str) -> Stamps:
        """The entity's stamps once field ``name`` is stamped by this change."""
        changed = dict(field_stamps(entity._stamps, entity._data))
        changed[name] = (self._clock.last + 1, self._clock.node)
        return changed

    def _stamp_bytes(self, name: str) -> int:
        """Bytes a field's own stamp may add (``"name":[hlc,"node"],``)."""
        return 6 * len(name) + 6 * len(self._clock.node) + 32

    def _limit(self) -> int:
        limit = self.limit
        assert limit is not None
        return limit

    def _prepare(self) -> None:
        """The figures of the collection's schema: which fields may hold large values, and the margin that
        small changes of every field need (a field's key, a small value, the field's own stamp).

        A schema that grows (``typed()``, or another node's) grows the margin a little: an entity measured
        before may then be up to one field's margin closer to the limit than the margin says.
        """
        schema = self.schema = self._table.schema
        fields: dict[str, Any] = {} if schema is None else dict(schema.fields)
        self._sizable = tuple(name for name, spec in fields.items() if spec.type in SIZABLE_TYPES)
        self.pick = itemgetter(*self._sizable) if self._sizable else None
        keys = sum(6 * len(name) + 4 for name in fields)
        scalars = SCALAR_BYTES * (len(fields) - len(self._sizable))
        self._fixed = ENVELOPE_BYTES + self._stamp_bytes("") + keys + scalars
        self._margin = keys + sum(SMALL_VALUE + self._stamp_bytes(name) for name in fields)
        self._threshold = self._limit() - self._margin
        self.room = self._threshold - self._fixed

    def _too_large(self, entity: Entity, name: str, size: int) -> SchemaError:
        return SchemaError(
            f"{self.name}/{entity._uuid}: field {name!r} would make the stored value {size} bytes, "
            f"over the {self.limit} bytes the storage takes",
            field=name,
        )

    def __repr__(self) -> str:
        large, bounds = len(self.large), len(self._bounds)
        return f"<SizeGuard {self.name}: limit {self.limit}, {large} large, {bounds} bounds>"
