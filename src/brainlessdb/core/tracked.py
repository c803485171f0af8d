"""Containers that report in-place changes, so ``call.caller["city"] = "Brno"`` is a tracked change.

When a dict or list field of an entity is read, it is turned once (the whole nested structure) into
``TrackedDict``/``TrackedList``: subclasses of ``dict``/``list`` that behave the same, encode the same, and
call their owner before (with what the change puts in, so that its size can be checked) and after every
mutating method. Every value put in is checked first, as an
assignment of the field would be (``SchemaError`` for what JSON cannot hold, and nothing changes), and
stored as a private copy. A container that was replaced in its entity (by an assignment, or by a newer
version from another node) is detached: its changes no longer count.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import index as as_index
from typing import Any, Protocol, SupportsIndex

from brainlessdb.core.values import MISSING, copy_json


class Owner(Protocol):
    """What a tracked container reports to: the entity field it belongs to."""

    @property
    def name(self) -> str:
        """The field's name (for error messages)."""

    def before_nested_change(self, container: Any, added: Any) -> None:
        """``container`` is about to change, taking in ``added`` (checked; ``MISSING`` if nothing)."""

    def after_nested_change(self) -> None: ...


def track(value: Any, owner: Owner) -> Any:
    """``value`` with every dict and list in it replaced by a tracked one reporting to ``owner``."""
    if type(value) is dict or isinstance(value, TrackedDict):
        return TrackedDict(owner, {key: track(item, owner) for key, item in value.items()})
    if type(value) is list or isinstance(value, TrackedList):
        return TrackedList(owner, [track(item, owner) for item in value])
    return value


def _checked(value: Any, owner: Owner) -> Any:
    """A value about to be put in a container of ``owner``: checked, copied, and tracked."""
    return track(copy_json(owner.name, value), owner)


def untrack(value: Any) -> Any:
    """A plain deep copy of a (possibly tracked) JSON-like value."""
    if isinstance(value, dict):
        return {key: untrack(item) for key, item in value.items()}
    if isinstance(value, list):
        return [untrack(item) for item in value]
    return value


class TrackedDict(dict[str, Any]):
    """A dict that tells its owner about every change."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Owner, items: dict[str, Any]) -> None:
        super().__init__(items)
        self._owner = owner

    def __setitem__(self, key: str, value: Any) -> None:
        checked = _checked({key: value}, self._owner)  # the key is checked too
        self._owner.before_nested_change(self, checked)
        super().update(checked)
        self._owner.after_nested_change()

    def __delitem__(self, key: str) -> None:
        self._owner.before_nested_change(self, MISSING)
        super().__delitem__(key)
        self._owner.after_nested_change()

    def update(self, *args: Any, **kwargs: Any) -> None:
        checked = _checked(dict(*args, **kwargs), self._owner)
        self._owner.before_nested_change(self, checked)
        super().update(checked)
        self._owner.after_nested_change()

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            return super().pop(key, *default)
        self._owner.before_nested_change(self, MISSING)
        value = super().pop(key)
        self._owner.after_nested_change()
        return value

    def popitem(self) -> tuple[str, Any]:
        self._owner.before_nested_change(self, MISSING)
        item = super().popitem()
        self._owner.after_nested_change()
        return item

    def clear(self) -> None:
        self._owner.before_nested_change(self, MISSING)
        super().clear()
        self._owner.after_nested_change()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self[key] = default
        return self[key]

    def __reduce__(self) -> Any:
        return (dict, (untrack(self),))


class TrackedList(list[Any]):
    """A list that tells its owner about every change."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Owner, items: Iterable[Any]) -> None:
        super().__init__(items)
        self._owner = owner

    def _changing(self, added: Any = MISSING) -> None:
        self._owner.before_nested_change(self, added)

    def _changed(self) -> None:
        self._owner.after_nested_change()

    def __setitem__(self, index: Any, value: Any) -> None:
        checked = _checked(list(value) if isinstance(index, slice) else value, self._owner)
        self._changing(checked)
        super().__setitem__(index, checked)
        self._changed()

    def __delitem__(self, index: Any) -> None:
        self._changing()
        super().__delitem__(index)
        self._changed()

    def append(self, value: Any) -> None:
        checked = _checked(value, self._owner)
        self._changing(checked)
        super().append(checked)
        self._changed()

    def extend(self, values: Iterable[Any]) -> None:
        checked = _checked(list(values), self._owner)
        self._changing(checked)
        super().extend(checked)
        self._changed()

    def __iadd__(self, values: Iterable[Any]) -> TrackedList:  # type: ignore[misc]
        self.extend(values)
        return self

    def __imul__(self, count: SupportsIndex) -> TrackedList:
        copies = as_index(count) - 1
        self._changing(list(self) * copies if copies > 0 else MISSING)
        super().__imul__(count)
        self._changed()
        return self

    def insert(self, index: SupportsIndex, value: Any) -> None:
        checked = _checked(value, self._owner)
        self._changing(checked)
        super().insert(index, checked)
        self._changed()

    def pop(self, index: SupportsIndex = -1) -> Any:
        self._changing()
        value = super().pop(index)
        self._changed()
        return value

    def remove(self, value: Any) -> None:
        self._changing()
        super().remove(value)
        self._changed()

    def clear(self) -> None:
        self._changing()
        super().clear()
        self._changed()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self._changing()
        super().sort(*args, **kwargs)
        self._changed()

    def reverse(self) -> None:
        self._changing()
        super().reverse()
        self._changed()

    def __reduce__(self) -> Any:
        return (list, (untrack(self),))
