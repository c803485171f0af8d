"""Containers that report in-place changes, so ``call.caller["city"] = "Brno"`` is a tracked change.

When a dict or list field of an entity is read, it is turned once (the whole nested structure) into
``TrackedDict``/``TrackedList``: subclasses of ``dict``/``list`` that behave the same, encode the same, and
call their owner before (with what the change puts in, so that its size can be checked) and after every
mutating method, telling it the paths below the field that the change wrote (see ``core.nested``): a key
of a dict (``("addr", "zip")``), or for a list, and anything inside one, the whole list. Every value put
in is checked first, as an assignment of the field would be (``SchemaError`` for what JSON cannot hold,
and nothing changes), and stored as a private copy. A container that was replaced in its entity (by an
assignment, or by a newer version from another node) is detached: its changes no longer count.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import index as as_index
from typing import Any, Protocol, SupportsIndex

from brainlessdb.core.values import MISSING, copy_json

Path = tuple[str, ...]


class Owner(Protocol):
    """What a tracked container reports to: the entity field it belongs to."""

    @property
    def name(self) -> str:
        """The field's name (for error messages)."""

    def before_nested_change(self, container: Any, added: Any) -> None:
        """``container`` is about to change, taking in ``added`` (checked; ``MISSING`` if nothing)."""

    def after_nested_change(self, container: Any, paths: list[Path]) -> None:
        """``container`` changed: the values at ``paths`` below the field were written (or removed)."""


def track(value: Any, owner: Owner, path: Path = (), whole: bool = False) -> Any:
    """``value`` (at ``path`` below the field) with every dict and list in it replaced by a tracked one
    reporting to ``owner``. ``whole``: it is inside a list, whose changes are writes of the list at
    ``path``."""
    if type(value) is dict or isinstance(value, TrackedDict):
        if whole:
            return TrackedDict(
                owner, {key: track(item, owner, path, True) for key, item in value.items()}, path, True
            )
        items = {key: track(item, owner, (*path, key)) for key, item in value.items()}
        return TrackedDict(owner, items, path)
    if type(value) is list or isinstance(value, TrackedList):
        return TrackedList(owner, [track(item, owner, path, True) for item in value], path)
    return value


def _checked(value: Any, owner: Owner) -> Any:
    """A value about to be put in a container of ``owner``: checked and copied."""
    return copy_json(owner.name, value)


def untrack(value: Any) -> Any:
    """A plain deep copy of a (possibly tracked) JSON-like value."""
    if isinstance(value, dict):
        return {key: untrack(item) for key, item in value.items()}
    if isinstance(value, list):
        return [untrack(item) for item in value]
    return value


class TrackedDict(dict[str, Any]):
    """A dict that tells its owner about every change, and the paths each one wrote."""

    __slots__ = ("_owner", "path", "whole")

    def __init__(self, owner: Owner, items: dict[str, Any], path: Path = (), whole: bool = False) -> None:
        super().__init__(items)
        self._owner = owner
        self.path = path
        """Where this dict is below the field (for one inside a list: where the list is)."""
        self.whole = whole
        """True inside a list: a change is a write of the whole list."""

    def _written(self, keys: Iterable[str]) -> list[Path]:
        if self.whole:
            return [self.path]
        return [(*self.path, key) for key in keys]

    def _put(self, checked: dict[str, Any]) -> None:
        whole, path, owner = self.whole, self.path, self._owner
        super().update(
            {key: track(item, owner, path if whole else (*path, key), whole) for key, item in checked.items()}
        )

    def __setitem__(self, key: str, value: Any) -> None:
        checked = _checked({key: value}, self._owner)  # the key is checked too
        self._owner.before_nested_change(self, checked)
        self._put(checked)
        self._owner.after_nested_change(self, self._written(checked))

    def __delitem__(self, key: str) -> None:
        self._owner.before_nested_change(self, MISSING)
        super().__delitem__(key)
        self._owner.after_nested_change(self, self._written((key,)))

    def update(self, *args: Any, **kwargs: Any) -> None:
        checked = _checked(dict(*args, **kwargs), self._owner)
        self._owner.before_nested_change(self, checked)
        self._put(checked)
        self._owner.after_nested_change(self, self._written(checked))

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            return super().pop(key, *default)
        self._owner.before_nested_change(self, MISSING)
        value = super().pop(key)
        self._owner.after_nested_change(self, self._written((key,)))
        return value

    def popitem(self) -> tuple[str, Any]:
        self._owner.before_nested_change(self, MISSING)
        item = super().popitem()
        self._owner.after_nested_change(self, self._written((item[0],)))
        return item

    def clear(self) -> None:
        # A write of the dict itself, empty: keys another node adds meanwhile are cleared too.
        self._owner.before_nested_change(self, MISSING)
        super().clear()
        self._owner.after_nested_change(self, [self.path])

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self[key] = default
        return self[key]

    def __reduce__(self) -> Any:
        return (dict, (untrack(self),))


class TrackedList(list[Any]):
    """A list that tells its owner about every change: each is a write of the whole list."""

    __slots__ = ("_owner", "path")

    whole = True

    def __init__(self, owner: Owner, items: Iterable[Any], path: Path = ()) -> None:
        super().__init__(items)
        self._owner = owner
        self.path = path
        """Where the list is below the field (for one inside a list: where the outer list is)."""

    def _changing(self, added: Any = MISSING) -> None:
        self._owner.before_nested_change(self, added)

    def _changed(self) -> None:
        self._owner.after_nested_change(self, [self.path])

    def _track(self, checked: Any) -> Any:
        return track(checked, self._owner, self.path, True)

    def __setitem__(self, index: Any, value: Any) -> None:
        checked = _checked(list(value) if isinstance(index, slice) else value, self._owner)
        self._changing(checked)
        super().__setitem__(index, self._track(checked))
        self._changed()

    def __delitem__(self, index: Any) -> None:
        self._changing()
        super().__delitem__(index)
        self._changed()

    def append(self, value: Any) -> None:
        checked = _checked(value, self._owner)
        self._changing(checked)
        super().append(self._track(checked))
        self._changed()

    def extend(self, values: Iterable[Any]) -> None:
        checked = _checked(list(values), self._owner)
        self._changing(checked)
        super().extend(self._track(checked))
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
        super().insert(index, self._track(checked))
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
