"""Schema evolution without I/O: each step, the steps refused, and old data read under the new schema."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import attrs
import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.codec import ForeignRecord, decode_value, encode_entity
from brainlessdb.core.evolution import (
    Evolution,
    declared_renames,
    declared_step,
    evolve_schema,
    explicit_step,
    field,
    pending_part,
    upgrade_record,
)
from brainlessdb.core.merge import Extras, Record, merge_records
from brainlessdb.core.meta import meta
from brainlessdb.core.models import declared_schema
from brainlessdb.core.schema import FieldSpec, Schema
from brainlessdb.core.sync.schema_sync import decode_schema, encode_schema
from brainlessdb.errors import SchemaError
from brainlessdb.storage.base import Entry, Op

from .sync_fakes import OTHER, TIME_NS, Node, data_of, put, schema_of, stamp

V1 = schema_of(
    {
        "channel": {"type": "str"},
        "agent": {"type": "int", "nullable": True},
        "legacy": {"type": "str", "required": False, "default": ""},
        "score": {"type": "int", "required": False, "default": 0},
        "caller": {"type": "dict", "required": False, "default": {}},
        "attempts": {"type": "int", "required": False, "default": 0},
    }
)


def evolve(schema: Schema, **step: Any) -> Schema:
    return evolve_schema(schema, explicit_step(schema, **step))


# -- each step -----------------------------------------------------------------------------------------


def test_a_rename_keeps_the_field_and_its_place_and_remembers_the_former_name() -> None:
    v2 = evolve(V1, rename={"agent": "agent_id"})
    assert list(v2.fields) == ["channel", "agent_id", "legacy", "score", "caller", "attempts"]
    assert v2.fields["agent_id"] == V1.fields["agent"]
    assert (v2.version, dict(v2.renamed), v2.removed) == (1, {"agent": "agent_id"}, frozenset())
    assert v2.retired == {"agent"}


def test_a_removal_drops_the_field_and_remembers_its_name() -> None:
    v2 = evolve(V1, remove=["legacy"])
    assert "legacy" not in v2.fields
    assert (v2.version, v2.removed) == (1, {"legacy"})


def test_widening_int_to_float_and_to_nullable() -> None:
    v2 = evolve(V1, widen={"score": float, "channel": str | None})
    assert v2.fields["score"] == FieldSpec("float", required=False, default=0)
    assert v2.fields["channel"] == FieldSpec("str", nullable=True)
    assert v2.version == 1


def test_widen_names_a_field_by_its_former_or_its_new_name() -> None:
    by_old = evolve(V1, rename={"score": "points"}, widen={"score": float})
    by_new = evolve(V1, rename={"score": "points"}, widen={"points": float})
    assert by_old == by_new
    assert by_old.fields["points"].type == "float"


def test_renames_chain_and_a_removal_retires_every_former_name() -> None:
    v2 = evolve(V1, rename={"agent": "agent_id"})
    v3 = evolve(v2, rename={"agent_id": "operator"})
    assert dict(v3.renamed) == {"agent": "operator", "agent_id": "operator"}
    v4 = evolve(v3, remove=["operator"])
    assert (dict(v4.renamed), v4.removed) == ({}, {"agent", "agent_id", "operator"})
    assert v4.version == 3


def test_an_empty_step_changes_nothing() -> None:
    assert evolve_schema(V1, Evolution()) is V1


def test_the_history_is_stored_and_read_back() -> None:
    v3 = evolve(evolve(V1, rename={"agent": "agent_id"}), remove=["legacy"])
    raw = v3.to_json()
    assert (raw["version"], raw["renamed"], raw["removed"]) == (2, {"agent": "agent_id"}, ["legacy"])
    assert decode_schema(encode_schema(v3)) == v3


def test_a_schema_never_evolved_is_stored_as_before() -> None:
    assert set(V1.to_json()) == {"v", "fields"}
    assert Schema.from_json({"v": 1, "fields": {"a": {"type": "str"}}}).version == 0


@pytest.mark.parametrize(
    "raw",
    [
        {"version": -1},
        {"version": "2"},
        {"renamed": ["a"]},
        {"renamed": {"a": 1}},
        {"removed": "a"},
    ],
)
def test_an_unreadable_history_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match="unreadable"):
        Schema.from_json({"v": 1, "fields": {"a": {"type": "str"}}, **raw})


# -- steps refused -------------------------------------------------------------------------------------

V1_WIDE = evolve(V1, widen={"score": float})
"""``V1`` with ``score`` a float."""


@pytest.mark.parametrize(
    ("schema", "step", "field_name", "message"),
    [
        (V1_WIDE, {"widen": {"score": int}}, "score", "only widens"),
        (V1, {"widen": {"channel": int}}, "channel", "only widens"),
        (V1, {"widen": {"nothing": int}}, "nothing", "no such field"),
        (V1, {"rename": {"nothing": "x"}}, "nothing", "no such field"),
        (V1, {"rename": {"agent": "channel"}}, "channel", "has a field 'channel' already"),
        (V1, {"rename": {"agent": "a", "score": "a"}}, "a", "cannot rename both"),
        (V1, {"rename": {"agent": "_private"}}, "_private", "may not start with '_'"),
        (V1, {"rename": {"agent": "x"}, "remove": ["agent"]}, "agent", "both rename and remove"),
        (V1, {"remove": ["nothing"]}, "nothing", "no such field"),
        (evolve(V1, rename={"agent": "a"}), {"rename": {"a": "agent"}}, "agent", "earlier version"),
        (evolve(V1, remove=["legacy"]), {"rename": {"agent": "legacy"}}, "legacy", "earlier version"),
    ],
)
def test_incompatible_steps_are_refused_naming_the_field(
    schema: Schema, step: dict[str, Any], field_name: str, message: str
) -> None:
    with pytest.raises(SchemaError, match=message) as raised:
        evolve(schema, **step)
    assert raised.value.field == field_name


def test_removing_every_field_is_refused() -> None:
    with pytest.raises(SchemaError, match="every field"):
        evolve(V1, remove=list(V1.fields))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (FieldSpec("str", nullable=True), FieldSpec("str"), "refuse None"),
        (FieldSpec("str", required=False, default="x"), FieldSpec("str"), "required"),
        (FieldSpec("float"), FieldSpec("int"), "only widens"),
        (FieldSpec("any"), FieldSpec("str"), "only widens"),
        (FieldSpec("str", choices=("a", "b")), FieldSpec("str", choices=("a",)), "narrow the values"),
        (FieldSpec("str"), FieldSpec("str", choices=("a",)), "narrow the values"),
        (FieldSpec("str"), FieldSpec("str", required=False, default=1), "not a str"),
    ],
)
def test_narrowing_a_field_is_refused(old: FieldSpec, new: FieldSpec, message: str) -> None:
    with pytest.raises(SchemaError, match=message) as raised:
        evolve_schema(Schema({"f": old}), Evolution(widen={"f": new}))
    assert raised.value.field == "f"


def test_widening_choices_is_accepted() -> None:
    schema = Schema({"f": FieldSpec("str", choices=("a",))})
    wider = evolve_schema(schema, Evolution(widen={"f": FieldSpec("str", choices=("a", "b"))}))
    assert wider.fields["f"].choices == ("a", "b")


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("new", FieldSpec("str"), "without a default"),
        ("channel", FieldSpec("str", required=False), "already"),
        ("agent", FieldSpec("str", required=False), "earlier version"),
    ],
)
def test_adding_a_field_needs_a_default_and_a_name_never_used(
    name: str, spec: FieldSpec, message: str
) -> None:
    schema = evolve(V1, rename={"agent": "agent_id"})
    with pytest.raises(SchemaError, match=message):
        evolve_schema(schema, Evolution(add={name: spec}))


def test_extend_names_the_evolution_a_declaration_would_need() -> None:
    with pytest.raises(SchemaError, match="remove or rename it with evolve"):
        V1.extend(Schema({"channel": FieldSpec("str")}))
    with pytest.raises(SchemaError, match="widen it with evolve"):
        V1.extend(dataclasses.replace(V1, fields={**V1.fields, "agent": FieldSpec("float")}))
    renamed = evolve(V1, rename={"agent": "agent_id"})
    with pytest.raises(SchemaError, match="cannot be a field again"):
        renamed.extend(Schema({**renamed.fields, "agent": FieldSpec("int", required=False)}))


def test_an_extension_keeps_the_history() -> None:
    v2 = evolve(V1, rename={"agent": "agent_id"})
    grown = v2.extend(Schema({**v2.fields, "note": FieldSpec("str", required=False, default="")}))
    assert (grown.version, grown.renamed) == (v2.version, v2.renamed)


# -- steps from a model --------------------------------------------------------------------------------


@dataclasses.dataclass
class CallV2:
    channel: str | None
    agent_id: int | None = field(renamed_from="agent", default=None)
    score: float = 0.0
    caller: dict[str, Any] = dataclasses.field(default_factory=dict)
    attempts: int = 0
    note: str = ""


def test_a_model_declares_the_whole_step() -> None:
    step = declared_step(V1, declared_schema(CallV2), declared_renames(CallV2))
    assert step.rename == {"agent": "agent_id"}
    assert step.remove == {"legacy"}
    assert set(step.widen) == {"agent", "channel", "score"}  # agent: now with a default
    assert set(step.add) == {"note"}
    v2 = evolve_schema(V1, step)
    assert list(v2.fields) == ["channel", "agent_id", "score", "caller", "attempts", "note"]
    assert v2.fields["score"] == FieldSpec("float", required=False, default=0.0)
    assert v2.fields["channel"].nullable
    # The same model again: nothing left to do.
    assert not declared_step(v2, declared_schema(CallV2), declared_renames(CallV2))


def test_a_stored_field_wider_than_declared_stays_as_it_is() -> None:
    inferred = Schema.infer({"channel": "c", "agent": 1})  # inferred fields take None

    @dataclasses.dataclass
    class Narrow:
        channel: str
        agent: int

    assert not declared_step(inferred, declared_schema(Narrow), {})


def test_a_declared_rename_from_a_field_that_never_was_is_refused() -> None:
    @dataclasses.dataclass
    class Wrong:
        channel: str
        agent_id: int | None = field(renamed_from="operator", default=None)

    with pytest.raises(SchemaError, match="'operator', which the stored schema does not have"):
        declared_step(V1, declared_schema(Wrong), declared_renames(Wrong))


class PydanticCall(pydantic.BaseModel):
    agent_id: int = pydantic.Field(0, json_schema_extra={"renamed_from": "agent"})


@attrs.define
class AttrsCall:
    agent_id: int = attrs.field(default=0, metadata={"renamed_from": "agent"})


class StructCall(msgspec.Struct):
    agent_id: Annotated[int, msgspec.Meta(extra={"renamed_from": "agent"})] = 0


@pytest.mark.parametrize("model", [CallV2, PydanticCall, AttrsCall, StructCall])
def test_renamed_from_is_read_from_every_kind_of_model(model: type) -> None:
    assert declared_renames(model) == {"agent_id": "agent"}


# -- old data under the new schema ---------------------------------------------------------------------

V2 = evolve(evolve(V1, rename={"agent": "agent_id", "caller": "who", "attempts": "tries"}), remove=["legacy"])


def test_a_stored_version_is_read_under_the_new_names() -> None:
    early, late = stamp(1_000), stamp(2_000)
    extras = Extras(paths={"caller": {("city",): late}}, counts={"attempts": {"w": (3, 1)}})
    value = encode_entity(
        {"channel": "c", "agent": 5, "legacy": "x", "caller": {"city": "Brno"}, "attempts": 2},
        {"channel": early, "agent": late, "legacy": early, "caller": early, "attempts": early},
        extras,
    )
    record = upgrade_record(V2, decode_value(value, time_ns=0))
    assert record.data == {"channel": "c", "agent_id": 5, "who": {"city": "Brno"}, "tries": 2}
    assert record.stamps == {"channel": early, "agent_id": late, "who": early, "tries": early}
    assert record.extras == Extras(paths={"who": {("city",): late}}, counts={"tries": {"w": (3, 1)}})


def test_a_record_holding_both_names_keeps_the_newer_write() -> None:
    record = Record(data={"agent": 1, "agent_id": 2}, stamps={"agent": stamp(2), "agent_id": stamp(1)})
    assert upgrade_record(V2, record).data == {"agent_id": 1}
    record = Record(data={"agent_id": 2, "agent": 1}, stamps={"agent_id": stamp(3), "agent": stamp(1)})
    assert upgrade_record(V2, record).data == {"agent_id": 2}


def test_another_clients_object_stays_one() -> None:
    record = ForeignRecord(data={"channel": "c", "agent": 1}, shared=stamp(1))
    upgraded = upgrade_record(V2, record)
    assert type(upgraded) is ForeignRecord
    assert (upgraded.data, upgraded.shared) == ({"channel": "c", "agent_id": 1}, stamp(1))


def test_a_record_without_former_names_is_left_as_it_is() -> None:
    record = Record(data={"channel": "c"}, shared=stamp(1))
    assert upgrade_record(V2, record) is record


NAMES = ["channel", "agent", "agent_id", "legacy", "score"]
V_RENAMED = evolve(evolve(V1, rename={"agent": "agent_id"}), remove=["legacy"])
values = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=2))
stamps = st.builds(lambda ms, node: stamp(ms, node), st.integers(0, 5), st.sampled_from([OTHER, "prague-1"]))
records = st.dictionaries(st.sampled_from(NAMES), st.tuples(values, stamps), min_size=1).map(
    lambda fields: Record(
        data={name: value for name, (value, _) in fields.items()},
        stamps={name: when for name, (_, when) in fields.items()},
    )
)


@given(records, records)
def test_upgrading_commutes_with_merging(a: Record, b: Record) -> None:
    """A version an old node wrote merges the same before or after it is read under the new names: so a
    node that merged it before the evolution ends where one that merged it after does."""
    merged_then_upgraded = upgrade_record(V_RENAMED, merge_records(a, b))
    upgraded_then_merged = merge_records(upgrade_record(V_RENAMED, a), upgrade_record(V_RENAMED, b))
    assert merged_then_upgraded == upgraded_then_merged


@given(records)
def test_upgrading_is_idempotent_and_leaves_no_former_name(record: Record) -> None:
    once = upgrade_record(V_RENAMED, record)
    assert upgrade_record(V_RENAMED, once) == once
    assert V_RENAMED.retired.isdisjoint(once.data)


@given(records)
def test_each_evolution_in_turn_reads_as_the_last_one(record: Record) -> None:
    """A version written under version 0 reads the same under version 2 as through version 1 first."""
    v1 = evolve(V1, rename={"agent": "agent_id"})
    v2 = evolve(v1, rename={"agent_id": "operator"}, remove=["legacy"])
    assert upgrade_record(v2, upgrade_record(v1, record)) == upgrade_record(v2, record)


@given(st.fixed_dictionaries({"channel": st.text(max_size=3), "agent": st.integers(0, 9) | st.none()}))
def test_data_written_before_reads_as_data_written_after(data: dict[str, Any]) -> None:
    """Read under the new schema, what was stored under the old one is what the same entity stored
    under the new one would be."""
    when = stamp(7)
    old = upgrade_record(V2, decode_value(encode_entity(dict(data), when), time_ns=0))
    renamed = {"channel": data["channel"], "agent_id": data["agent"]}
    assert old == decode_value(encode_entity(renamed, when), time_ns=0)


# -- one node, its memory and the bucket ---------------------------------------------------------------

V1_SMALL = schema_of({"channel": {"type": "str"}, "agent": {"type": "int", "nullable": True}})
V2_SMALL = evolve(V1_SMALL, rename={"agent": "agent_id"})


def test_an_entry_written_under_the_old_schema_is_merged_under_the_new_names() -> None:
    node = Node(schema=V2_SMALL)
    node.inbox.apply(put("e", 1, {"channel": "c", "agent": 3}, stamp(1)))
    assert meta(node.entity("e")).data == {"channel": "c", "agent_id": 3}
    node.inbox.apply(put("e", 2, {"channel": "c", "agent": 4}, stamp(2)))
    assert meta(node.entity("e")).data == {"channel": "c", "agent_id": 4}
    assert node.inbox.dead_letter_count == 0


def test_a_node_adopting_an_evolved_schema_moves_what_it_holds() -> None:
    node = Node(schema=V1_SMALL)
    node.inbox.apply(put("e", 1, {"channel": "c", "agent": 3}, stamp(1)))
    dirty = node.add("f", {"channel": "d", "agent": 4})
    node.sync.schema.seen(V2_SMALL, 5)
    assert node.table.schema == V2_SMALL
    assert not node.sync.schema.pending
    assert meta(node.entity("e")).data == {"channel": "c", "agent_id": 3}
    assert meta(dirty).data == {"channel": "d", "agent_id": 4}
    # What is written now has the new names.
    [write] = [w for w in node.outbox.take_writes() if w.key == "f"]
    assert data_of(write.value) == {"channel": "d", "agent_id": 4}


def test_code_still_using_the_former_names_adds_under_the_new_ones() -> None:
    node = Node(schema=V1_SMALL)
    node.table.adopt_schema(V2_SMALL)
    entity = node.add("e", {"channel": "c", "agent": 3})
    assert meta(entity).data == {"channel": "c", "agent_id": 3}
    with pytest.raises(SchemaError, match="'agent' was renamed to 'agent_id'"):
        entity["agent"] = 4
    with pytest.raises(AttributeError, match="'agent' was renamed to 'agent_id'"):
        entity.agent  # noqa: B018
    removed = evolve(V2_SMALL, remove=["agent_id"])
    with pytest.raises(SchemaError, match="'agent_id' was removed"):
        removed.accept("agent_id", 1)


def test_a_later_version_stored_by_another_node_is_adopted_with_what_this_node_added() -> None:
    node = Node(schema=V1_SMALL)
    grown = V1_SMALL.extend(Schema({**V1_SMALL.fields, "note": FieldSpec("str", required=False, default="")}))
    node.set_schema(grown)  # pending: not stored yet
    node.sync.schema.seen(V2_SMALL, 7)
    assert list(node.table.schema.fields) == ["channel", "agent_id", "note"]  # type: ignore[union-attr]
    assert node.table.schema.version == 1  # type: ignore[union-attr]
    assert (node.sync.schema.pending, node.sync.schema.revision) == (True, 7)


def test_an_evolution_met_by_another_nodes_schema_is_made_again_on_it() -> None:
    node = Node(schema=V1_SMALL)
    step = explicit_step(V1_SMALL, rename={"agent": "agent_id"})
    node.sync.schema.evolving(step)
    node.set_schema(evolve_schema(V1_SMALL, step))
    other = V1_SMALL.extend(Schema({**V1_SMALL.fields, "note": FieldSpec("str", required=False, default="")}))
    again = node.sync.schema.conflicted(other, 3)
    assert again is not None
    assert list(again.fields) == ["channel", "agent_id", "note"]
    assert node.table.schema == again
    node.sync.schema.stored(again, 4)
    assert node.sync.schema.step is None and not node.sync.schema.pending


def test_an_evolution_that_no_longer_applies_is_refused_and_the_stored_schema_stands() -> None:
    node = Node(schema=V1_SMALL)
    step = explicit_step(V1_SMALL, rename={"agent": "agent_id"})
    node.sync.schema.evolving(step)
    node.set_schema(evolve_schema(V1_SMALL, step))
    theirs = evolve(V1_SMALL, remove=["agent"])
    assert node.sync.schema.conflicted(theirs, 3) is None
    refused = node.sync.schema.refused
    assert refused is not None and "another node changed the schema first" in str(refused)
    assert node.table.schema == theirs
    assert not node.sync.schema.pending


def test_a_stored_schema_older_than_this_nodes_is_written_over() -> None:
    node = Node(schema=V2_SMALL)
    node.sync.schema.seen(V1_SMALL, 9)
    assert node.table.schema == V2_SMALL
    assert (node.sync.schema.pending, node.sync.schema.revision) == (True, 9)


def test_another_locations_later_schema_is_taken_and_stored_here_too() -> None:
    later = Entry("_peer._schema", 3, encode_schema(V2_SMALL), Op.PUT, TIME_NS)
    earlier = Entry("_peer._schema", 4, encode_schema(V1_SMALL), Op.PUT, TIME_NS)
    node = Node(schema=V1_SMALL)
    node.inbox.apply(put("e", 1, {"channel": "c", "agent": 3}, stamp(1)))
    assert node.sync.schema.apply_copy(later)
    assert node.table.schema == V2_SMALL
    assert node.sync.schema.pending
    assert meta(node.entity("e")).data == {"channel": "c", "agent_id": 3}
    assert not node.sync.schema.apply_copy(earlier)  # this location's is the later one
    assert node.table.schema == V2_SMALL


def test_a_step_made_again_changes_nothing_more() -> None:
    step = explicit_step(V1, rename={"agent": "agent_id"}, remove=["legacy"], widen={"score": float})
    once = evolve_schema(V1, step)
    assert not pending_part(once, step)
    assert evolve_schema(once, pending_part(once, step)) is once
    # Half of it made: the rest is.
    half = evolve(V1, rename={"agent": "agent_id"})
    rest = pending_part(half, step)
    assert (dict(rest.rename), rest.remove, set(rest.widen)) == ({}, {"legacy"}, {"score"})
    assert evolve_schema(half, rest).fields == once.fields


def test_two_nodes_making_the_same_evolution_at_once_store_it_once() -> None:
    step = explicit_step(V1_SMALL, rename={"agent": "agent_id"})
    theirs = evolve_schema(V1_SMALL, step)
    node = Node(schema=V1_SMALL)
    node.sync.schema.evolving(step)
    node.set_schema(evolve_schema(V1_SMALL, step))
    assert node.sync.schema.conflicted(theirs, 3) is None
    assert node.sync.schema.refused is None
    assert node.table.schema == theirs
    assert not node.sync.schema.pending
    # Met with more on it (another node's optional field), the step is not made twice either.
    node = Node(schema=V1_SMALL)
    node.sync.schema.evolving(step)
    node.set_schema(evolve_schema(V1_SMALL, step))
    grown = theirs.extend(Schema({**theirs.fields, "note": FieldSpec("str", required=False, default="")}))
    assert node.sync.schema.conflicted(grown, 4) is None
    assert node.table.schema == grown
    assert node.sync.schema.refused is None
