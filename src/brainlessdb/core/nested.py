"""Stamps inside a dict field, so that concurrent changes of different keys, at any depth, all survive.

A field's value is the outcome of *writes*, each setting (or removing) the value at one path and stamped by
the clock: the field's own stamp is the write of the whole field, and a change inside a dict
(``call.caller["city"] = "Brno"``, ``del call.caller["note"]``, ``call.caller["addr"]["zip"] = "60200"``) is
a write at the path below the field (``("city",)``, ``("note",)``, ``("addr", "zip")``). The value is what
applying every write in stamp order gives, where a write replaces the whole subtree at its path and first
turns each dict on the way that is missing or not a dict into an empty dict. A list is one value: a change
anywhere in a list (or in a dict inside a list) is a write of the whole list.

A write hidden by a newer write at its own path or at a path above it no longer matters, so a version keeps
only the others (``PathStamps``): each is newer than the field's stamp and than every kept write above it.
The value of each kept write is what the field's value holds at its path (a removal when nothing is
there), so no value is stored twice. Merging two versions applies, over the value of the newer field
write, the kept writes of both that are newer than it, oldest first: the outcome is the value every write
of both gives in stamp order, whatever the order in which versions are merged (tested against that model
with Hypothesis).
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

from brainlessdb.core.clock import Stamp
from brainlessdb.errors import DecodeError

Path: TypeAlias = tuple[str, ...]
"""A path below a field: the keys of the dicts leading to a value."""
PathStamps: TypeAlias = dict[Path, Stamp]
"""The kept writes below one field: path (never empty) to stamp."""

_ABSENT: Final[Any] = object()


def lookup(value: Any, path: Path) -> Any:
    """The value at ``path`` below ``value``; ``_ABSENT`` if a key is missing or a step is not a dict."""
    for key in path:
        if not isinstance(value, dict):
            return _ABSENT
        value = value.get(key, _ABSENT)
        if value is _ABSENT:
            return _ABSENT
    return value


def is_absent(value: Any) -> bool:
    return value is _ABSENT


def record_write(paths: PathStamps | None, path: Path, stamp: Stamp) -> PathStamps:
    """The kept writes after a new one at ``path``: it hides the writes at and below its path."""
    if not paths:
        return {path: stamp}
    depth = len(path)
    kept = {other: when for other, when in paths.items() if other[:depth] != path}
    kept[path] = stamp
    return kept


def keep_consistent(value: Any, stamp: Stamp, paths: PathStamps) -> PathStamps:
    """The writes of a stored version that can be kept: newer than the field's ``stamp`` and than the kept
    writes above them, with a dict at every step above them in ``value``.

    A version written by this library always passes whole; one edited by another client may not, and what
    it leaves out is what the field's value no longer reflects (it was written over).
    """
    kept: PathStamps = {}
    for path in sorted(paths, key=len):
        when = paths[path]
        if not path or when <= stamp:
            continue
        parent = lookup(value, path[:-1])
        if not isinstance(parent, dict):
            continue
        if any(path[:depth] in kept and kept[path[:depth]] >= when for depth in range(1, len(path))):
            continue
        kept[path] = when
    return kept


def apply(value: Any, path: Path, new: Any) -> Any:
    """``value`` with ``new`` written at ``path`` (``_ABSENT``: removed), dicts made on the way; ``value``
    may be changed in place and is returned (a new dict if it was not one)."""
    root = value if isinstance(value, dict) else {}
    node = root
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    if new is _ABSENT:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = new
    return root


def pointer(path: Path) -> str:
    """A path below a field as a JSON Pointer (RFC 6901): ``("addr", "zip")`` is ``"/addr/zip"``."""
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in path)


def parse_pointer(text: str) -> Path:
    """The path of a JSON Pointer below a field (``DecodeError`` if it is not one, or is empty)."""
    if not text.startswith("/"):
        raise DecodeError(f"malformed path {text!r}: a JSON Pointer starts with '/'")
    keys = text[1:].split("/")
    for key in keys:
        if "~" in key and key.replace("~0", "").replace("~1", "").count("~"):
            raise DecodeError(f"malformed path {text!r}: '~' must be followed by 0 or 1")
    return tuple(key.replace("~1", "/").replace("~0", "~") for key in keys)
