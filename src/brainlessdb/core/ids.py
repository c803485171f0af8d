"""Entity uuids: version 1 (time-based), with a node field derived from the location.

The same location always gives the same node field and different locations (almost surely) different
ones, so a uuid tells when and where its entity was created, and two locations never mint the same uuid.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid as uuidlib
from datetime import datetime, timezone
from typing import Final

_UUID1_EPOCH_OFFSET: Final = 0x01B21DD213814000  # 100-ns ticks from 1582-10-15 to 1970-01-01
# One random clock sequence per process (RFC 9562 §5.1): with the node, it keeps two processes of one
# location apart; within the process, timestamps never repeat.
_CLOCK_SEQ: Final = secrets.randbits(14)
_last_timestamp = 0
# The uuid text after its first 8 hex digits, by node: it changes only when the upper timestamp bits
# do (every 7 minutes), so most uuids are one formatted number and a cached string.
_tails: dict[int, tuple[int, str]] = {}


def location_node(location: str) -> int:
    """The 48-bit uuid node of a location (multicast bit set, as RFC 9562 asks of non-MAC nodes)."""
    digest = hashlib.sha256(location.encode("utf-8")).digest()
    return int.from_bytes(digest[:6], "big") | 0x010000000000


def new_uuid(node: int) -> str:
    """A fresh uuid1 string for an entity created on ``node`` (never the same twice in a process)."""
    global _last_timestamp
    timestamp = time.time_ns() // 100 + _UUID1_EPOCH_OFFSET
    if timestamp <= _last_timestamp:
        timestamp = _last_timestamp + 1
    _last_timestamp = timestamp
    upper = timestamp >> 32
    tail = _tails.get(node)
    if tail is None or tail[0] != upper:
        sequence = (_CLOCK_SEQ & 0x3FFF) | 0x8000  # the RFC 4122 variant bits
        high = (upper >> 16) & 0x0FFF | 0x1000  # version 1
        tail = _tails[node] = (upper, f"-{upper & 0xFFFF:04x}-{high:04x}-{sequence:04x}-{node:012x}")
    return f"{timestamp & 0xFFFFFFFF:08x}{tail[1]}"


def parse_uuid(value: str) -> str:
    """The canonical form of a uuid string; ``ValueError`` if it is not one."""
    return str(uuidlib.UUID(value))


def uuid_time(value: str) -> datetime | None:
    """When a uuid1 was minted (None for other versions)."""
    parsed = uuidlib.UUID(value)
    if parsed.version != 1:
        return None
    seconds = (parsed.time - _UUID1_EPOCH_OFFSET) / 10_000_000
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
