"""Entity uuids: version 1 (time-based), with a node field derived from the location.

The same location always gives the same node field and different locations (almost surely) different
ones, so a uuid tells when and where its entity was created, and two locations never mint the same uuid.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from datetime import datetime, timezone
from typing import Final

_UUID1_EPOCH_OFFSET: Final = 0x01B21DD213814000  # 100-ns ticks from 1582-10-15 to 1970-01-01


def location_node(location: str) -> int:
    """The 48-bit uuid node of a location (multicast bit set, as RFC 9562 asks of non-MAC nodes)."""
    digest = hashlib.sha256(location.encode("utf-8")).digest()
    return int.from_bytes(digest[:6], "big") | 0x010000000000


def new_uuid(node: int) -> str:
    """A fresh uuid1 string for an entity created on ``node``."""
    return str(uuidlib.uuid1(node=node))


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
