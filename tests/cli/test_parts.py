"""The command's parts that need no server: values, tables, permissions, the schema of a restore."""

from __future__ import annotations

import io
from typing import Any

import pytest

from brainlessdb.cli.common import Output, UsageError, iso_time, parse_assignments, parse_value
from brainlessdb.cli.doctor import allowed, subject_matches
from brainlessdb.cli.transfer import merged_write, schema_class, version_of
from brainlessdb.core.codec import decode_value, encode_entity
from brainlessdb.core.models import declared_schema
from brainlessdb.storage.base import Entry, Op


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2.5", -2.5),
        ("true", True),
        ("null", None),
        ('"3"', "3"),
        ("waiting", "waiting"),
        ("[1, 2]", [1, 2]),
        ('{"city": "Brno"}', {"city": "Brno"}),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_values_are_json_when_they_parse(text: str, value: Any) -> None:
    assert parse_value(text) == value


def test_assignments_split_at_the_first_equals_sign() -> None:
    assert parse_assignments(["note=a=b", "n__lt=3"], "criterion") == {"note": "a=b", "n__lt": 3}
    for bad in (["state"], ["=3"], ["a=1", "a=2"]):
        with pytest.raises(UsageError):
            parse_assignments(bad, "criterion")


def test_plain_tables_line_up_and_show_values_as_json() -> None:
    stream = io.StringIO()
    Output(json_lines=False, stream=stream, rich=False).table(
        ["uuid", "state", "caller"], [["u-1", "waiting", {"city": "Brno"}], ["u-22", None, 3]]
    )
    assert stream.getvalue().splitlines() == [
        "uuid  state    caller",
        'u-1   waiting  {"city":"Brno"}',
        "u-22  null     3",
    ]


def test_rich_tables_hold_every_value() -> None:
    stream = io.StringIO()
    Output(json_lines=False, stream=stream, rich=True).table(
        ["field", "value"], [["state", "ringing"], ["n", 7]]
    )
    text = stream.getvalue()
    for word in ("field", "value", "state", "ringing", "7"):
        assert word in text


def test_json_lines_are_compact_objects_one_per_line() -> None:
    stream = io.StringIO()
    out = Output(json_lines=True, stream=stream)
    out.record({"uuid": "u", "city": "Plzeň"})
    out.record({"n": 1})
    assert stream.getvalue() == '{"uuid":"u","city":"Plzeň"}\n{"n":1}\n'


def test_iso_time_keeps_milliseconds() -> None:
    assert iso_time(1795000000250) == "2026-11-18T11:06:40.250Z"


def test_nats_subject_matching_and_permissions() -> None:
    assert subject_matches("$KV.>", "$KV.app-call.x")
    assert subject_matches("$JS.API.STREAM.INFO.*", "$JS.API.STREAM.INFO.KV_app-call")
    assert not subject_matches("$JS.API.STREAM.INFO.*", "$JS.API.STREAM.INFO.KV_a.b")
    assert not subject_matches("$KV.app-*.>", "$KV.app-call.x")  # a bucket name is one token
    assert not subject_matches("a.>", "a")
    assert allowed(None, "anything")
    rules = {"allow": ["$KV.>"], "deny": ["$KV.app-secret.>"]}
    assert allowed(rules, "$KV.app-call.x")
    assert not allowed(rules, "$KV.app-secret.x")
    assert not allowed(rules, "$JS.API.INFO")
    assert allowed({"deny": ["$KV.app-secret.>"]}, "$JS.API.INFO")


@pytest.mark.parametrize(
    "raw",
    [
        {
            "v": 1,
            "fields": {
                "a": {"type": "str", "required": True, "nullable": True},
                "b": {"type": "any", "required": True, "nullable": True},
            },
        },
        {
            "v": 1,
            "fields": {
                "n": {"type": "int", "required": True, "nullable": False},
                "f": {"type": "float", "required": False, "nullable": True, "default": None},
                "tags": {"type": "list", "required": False, "nullable": False, "default": []},
                "meta": {"type": "dict", "required": False, "nullable": False, "default": {"k": 1}},
                "x": {"type": "any", "required": True, "nullable": False},
                "ok": {"type": "bool", "required": True, "nullable": False},
            },
        },
        {
            "v": 1,
            "fields": {
                "state": {"type": "str", "required": True, "nullable": False, "choices": ["a", "b"]},
                "level": {
                    "type": "int",
                    "required": False,
                    "nullable": True,
                    "default": 1,
                    "choices": [1, 2],
                },
            },
        },
    ],
)
def test_a_restored_schema_is_declared_exactly(raw: dict[str, Any]) -> None:
    assert declared_schema(schema_class("call", raw)).to_json() == raw


def stored_entry(data: dict[str, Any], ms: int, node: str, revision: int) -> Entry:
    value = encode_entity(data, (ms << 16, node))
    return Entry(key="k", revision=revision, value=value, op=Op.PUT, time_ns=ms * 1_000_000)


def test_a_restore_merges_and_writes_only_what_changes() -> None:
    older = stored_entry({"state": "old", "n": 1}, 1000, "a", 3)
    newer = stored_entry({"state": "new", "n": 2}, 2000, "b", 7)
    # The bucket holds the newer version: nothing to write.
    assert merged_write("k", version_of(older), newer) is None
    assert merged_write("k", version_of(newer), newer) is None
    # The bucket holds the older one: the newer is written on its revision.
    write = merged_write("k", version_of(newer), older)
    assert write is not None and write.expected_revision == 3 and not write.delete
    assert decode_value(write.value, time_ns=0).data == {"state": "new", "n": 2}
    # Nothing stored: created (revision 0 expected).
    created = merged_write("k", version_of(older), None)
    assert created is not None and created.expected_revision == 0
    # A delete wins over any version, and is written as a delete marker.
    delete = Entry(key="k", revision=0, value=b'{"_v":2,"x":[1500,0,"c"]}', op=Op.DELETE, time_ns=0)
    marker = merged_write("k", version_of(delete), newer)
    assert marker is not None and marker.delete and marker.expected_revision == 7
    assert merged_write("k", version_of(newer), Entry("k", 9, delete.value, Op.DELETE, 0)) is None
