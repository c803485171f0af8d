"""SchemaSync: a collection's schema as nodes share it — seen, written, conflicting, restored."""

from __future__ import annotations

import pytest

from brainlessdb.core.meta import meta
from brainlessdb.core.schema import Schema
from brainlessdb.core.sync.schema_sync import decode_schema, encode_schema
from brainlessdb.core.sync.state import SCHEMA_ERROR_KEY
from brainlessdb.errors import DecodeError, SchemaError, StorageError

from .sync_fakes import Node, data_of, schema_of

BASE = schema_of({"state": {"type": "str", "nullable": True}})
GROWN = schema_of(
    {
        "state": {"type": "str", "nullable": True},
        "queue": {"type": "int", "required": False, "default": 0},
    }
)
"""``BASE`` with one more optional field: it extends ``BASE``."""
OTHER = schema_of({"state": {"type": "int", "nullable": True}})
"""Incompatible with ``BASE``: another type for the same field."""


def node_with(schema: Schema) -> Node:
    """A node whose schema was set here and is not stored yet."""
    node = Node()
    node.set_schema(schema)
    return node


def test_setting_a_schema_makes_it_pending_and_announces_it() -> None:
    node = node_with(BASE)
    assert node.table.schema == BASE
    assert node.sync.schema.pending
    assert node.changed_calls == [None]
    assert node.sync.has_pending()
    assert node.sync.pending_keys() == [SCHEMA_ERROR_KEY]


def test_stored_settles_the_schema_unless_it_changed_meanwhile() -> None:
    node = node_with(BASE)
    node.sync.schema.stored(BASE, 4)
    assert (node.sync.schema.pending, node.sync.schema.revision) == (False, 4)
    assert not node.sync.has_pending()

    node.set_schema(GROWN)
    node.sync.schema.stored(BASE, 5)  # the write of the older schema
    assert (node.sync.schema.pending, node.sync.schema.revision) == (True, 5)


def test_a_failed_schema_write_is_reported_until_one_succeeds() -> None:
    node = node_with(BASE)
    error = StorageError("timeout")
    node.sync.schema.failed(error)
    assert node.sync.errors() == {SCHEMA_ERROR_KEY: error}
    assert node.sync.schema.pending
    node.sync.schema.stored(BASE, 1)
    assert node.sync.errors() == {}


def test_lost_forgets_the_stored_revision() -> None:
    node = node_with(BASE)
    node.sync.schema.stored(BASE, 4)
    node.sync.schema.lost()
    assert node.sync.schema.revision is None


# -- seen: another node's schema read from the bucket -----------------------------------------------


def test_seen_adopts_a_schema_when_none_is_known() -> None:
    node = Node()
    node.sync.schema.seen(BASE, 3)
    assert node.table.schema == BASE
    assert (node.sync.schema.pending, node.sync.schema.revision) == (False, 3)


def test_seen_of_an_equal_schema_settles_the_pending_one() -> None:
    node = node_with(BASE)
    node.sync.schema.seen(schema_of({"state": {"type": "str", "nullable": True}}), 3)
    assert node.table.schema == BASE
    assert (node.sync.schema.pending, node.sync.schema.revision) == (False, 3)


def test_seen_adopts_a_stored_schema_that_extends_the_local_one() -> None:
    node = node_with(BASE)
    entity = node.add("u-1", {"state": "idle"})
    node.sync.schema.seen(GROWN, 3)
    assert node.table.schema == GROWN
    assert (node.sync.schema.pending, node.sync.schema.revision) == (False, 3)
    assert entity.queue == 0  # type: ignore[attr-defined]  # the new field reads as its default


def test_seen_of_a_schema_the_local_one_grows_keeps_only_the_revision() -> None:
    node = node_with(GROWN)
    node.sync.schema.seen(BASE, 3)
    assert node.table.schema == GROWN
    assert (node.sync.schema.pending, node.sync.schema.revision) == (True, 3)


def test_seen_ignores_an_incompatible_schema() -> None:
    node = node_with(BASE)
    node.add("u-1", {"state": "idle"})
    node.sync.schema.seen(OTHER, 3)
    assert node.table.schema == BASE
    assert (node.sync.schema.pending, node.sync.schema.revision) == (True, None)
    assert [write.key for write in node.outbox.take_writes()] == ["u-1"]
    assert node.sync.errors() == {}


# -- conflicted: writing the schema met another revision -------------------------------------------


def test_conflicted_returns_the_merged_schema_when_local_adds_optional_fields() -> None:
    node = node_with(GROWN)
    merged = node.sync.schema.conflicted(BASE, 6)
    assert merged == GROWN
    assert node.table.schema == GROWN
    assert (node.sync.schema.pending, node.sync.schema.revision) == (True, 6)
    assert merged is not None
    node.sync.schema.stored(merged, 7)
    assert (node.sync.schema.pending, node.sync.schema.revision) == (False, 7)


def test_conflicted_with_an_equal_schema_is_done() -> None:
    node = node_with(BASE)
    assert node.sync.schema.conflicted(schema_of({"state": {"type": "str", "nullable": True}}), 6) is None
    assert (node.sync.schema.pending, node.sync.schema.revision) == (False, 6)


def test_conflicted_with_a_wider_stored_schema_adopts_it() -> None:
    node = node_with(BASE)
    assert node.sync.schema.conflicted(GROWN, 6) is None
    assert node.table.schema == GROWN
    assert (node.sync.schema.pending, node.sync.schema.revision) == (False, 6)


def test_an_incompatible_stored_schema_is_adopted_and_what_does_not_fit_held_back() -> None:
    node = node_with(BASE)
    misfit = node.add("misfit", {"state": "idle"})
    node.add("fits", {"state": None})
    node.sync.schema.failed(StorageError("earlier"))
    assert node.sync.schema.conflicted(OTHER, 6) is None
    assert node.table.schema == OTHER
    schema_sync = node.sync.schema
    assert (schema_sync.pending, schema_sync.revision, schema_sync.error) == (False, 6, None)

    [write] = node.outbox.take_writes()
    assert write.key == "fits"
    errors = node.sync.errors()
    assert list(errors) == ["misfit"]
    error = errors["misfit"]
    assert isinstance(error, SchemaError)
    assert "does not fit the stored schema" in str(error)
    assert error.field == "state"

    node.outbox.written(write, 7)
    assert node.sync.pending_keys() == ["misfit"]
    assert meta(misfit).dirty
    assert node.outbox.take_writes() == []  # never written as it is
    assert list(node.sync.errors()) == ["misfit"]


def test_a_held_entity_changed_to_fit_is_written() -> None:
    node = node_with(BASE)
    misfit = node.add("misfit", {"state": "idle"})
    node.sync.schema.conflicted(OTHER, 6)
    assert node.outbox.take_writes() == []
    misfit.state = 3  # the adopted schema takes an int
    write = node.take_one()
    assert write.key == "misfit"
    assert data_of(write.value) == {"state": 3}
    assert node.sync.errors() == {}


def test_an_entity_deleted_while_held_back_is_not_reported() -> None:
    node = node_with(BASE)
    node.add("misfit", {"state": "idle"})
    node.sync.schema.conflicted(OTHER, 6)
    node.delete("misfit")
    assert node.sync.errors() == {}
    assert not node.sync.has_pending()


# -- restore: a schema found in the journal --------------------------------------------------------


def test_restore_takes_back_a_schema_when_none_is_known() -> None:
    node = Node()
    node.sync.schema.restore(BASE)
    assert node.table.schema == BASE
    assert node.sync.schema.pending


def test_restore_leaves_a_known_schema_alone() -> None:
    node = Node(schema=BASE)
    node.sync.schema.restore(GROWN)
    assert node.table.schema == BASE
    assert not node.sync.schema.pending


# -- the stored form -------------------------------------------------------------------------------


def test_a_schema_round_trips_through_its_stored_bytes() -> None:
    assert decode_schema(encode_schema(GROWN)) == GROWN
    assert decode_schema(encode_schema(BASE)) != GROWN


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"{", DecodeError),
        (b"[]", SchemaError),
        (b'{"v": 2, "fields": {}}', SchemaError),
        (b'{"v": 1, "fields": {"state": {"type": "date"}}}', SchemaError),
    ],
)
def test_an_unreadable_stored_schema_is_an_error(value: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_schema(value)
