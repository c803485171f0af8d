"""Entity uuids: version 1, a node derived from the location, never repeated, readable time."""

from __future__ import annotations

import time
import uuid

from brainlessdb.ids import location_node, new_uuid, parse_uuid, uuid_time


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
