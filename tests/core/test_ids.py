"""Entity uuids: version 1, a node derived from the location, never repeated, readable time."""

from __future__ import annotations

import time
import uuid

import pytest

from brainlessdb.core import ids
from brainlessdb.core.ids import location_node, new_uuid, parse_uuid, uuid_time


def test_uuids_are_version_1_with_the_location_node() -> None:
    node = location_node("prague-1")
    parsed = uuid.UUID(new_uuid(node))
    assert parsed.version == 1
    assert parsed.variant == uuid.RFC_4122
    assert parsed.node == node


def test_same_location_same_node_and_different_locations_differ() -> None:
    assert location_node("prague-1") == location_node("prague-1")
    assert location_node("prague-1") != location_node("brno-1")
    assert location_node("brno-1") & 0x010000000000  # multicast bit: not a real MAC address


def test_uuids_never_repeat_and_tell_when_they_were_made() -> None:
    node = location_node("x")
    before = time.time()
    made = [new_uuid(node) for _ in range(50_000)]
    after = time.time()
    assert len(set(made)) == len(made)
    assert [uuid.UUID(u).time for u in made] == sorted(uuid.UUID(u).time for u in made)
    when = uuid_time(made[0])
    assert when is not None
    assert before - 1 <= when.timestamp() <= after + 1
    assert parse_uuid(made[0].upper()) == made[0]


def test_uuids_stay_exact_where_the_upper_timestamp_bits_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached text after the first 8 hex digits is renewed when the upper timestamp bits move on."""
    node = location_node("boundary")
    boundary = (1 << 32) * 0x0200_0000  # a timestamp whose low 32 bits are all zero
    for ticks in (boundary - 2, boundary - 1, boundary, boundary + 1, boundary + (1 << 32)):
        ns = (ticks - ids._UUID1_EPOCH_OFFSET) * 100
        monkeypatch.setattr(ids.time, "time_ns", lambda ns=ns: ns)
        monkeypatch.setattr(ids, "_last_timestamp", 0)
        parsed = uuid.UUID(new_uuid(node))
        assert (parsed.time, parsed.node, parsed.version) == (ticks, node, 1)
        assert parsed.clock_seq == ids._CLOCK_SEQ
