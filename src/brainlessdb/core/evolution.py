"""Schema evolution: the deliberate steps that change a stored schema, and old data read under the new one.

A schema grows on its own (``Schema.extend``: optional fields added), but it changes only by an
evolution, one step made on purpose (``Collection.evolve``): fields renamed, removed, widened (``int`` to
``float``, ``T`` to ``T | None``, required to optional with a default) or added with a default. A step
either applies as a whole or is refused with a ``SchemaError`` naming the field, before anything is
stored: narrowing a field, making one required, renaming onto a field that exists, naming a field that
does not, or giving a field a name the schema used before.

Entities are not rewritten when the schema evolves: the schema keeps its history instead
(``Schema.renamed``, former name to name now, and ``Schema.removed``), and every version read from the
bucket, or held in memory from before, is upgraded by it (``upgrade_record``, ``upgrade_entities``): a
renamed field's value, stamp, writes inside it and tallies move to the new name, a removed field's are
dropped. A node still on the old schema keeps writing the old names until it sees the new schema, and
what it writes is read under the new names too. That is why a name the history took out of use is never
a field's again: old values under it would come back as the new field's.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from brainlessdb.core.clock import Stamp
from brainlessdb.core.entity import Entity, set_slot
from brainlessdb.core.field_types import annotation_type
from brainlessdb.core.merge import Extras, Record, field_wins
from brainlessdb.core.models import model_of
from brainlessdb.core.schema import FieldSpec, Schema, check_field_name
from brainlessdb.core.stamps import compact, field_stamps, held, shared_stamp
from brainlessdb.core.tracked import untrack
from brainlessdb.core.values import check_json
from brainlessdb.errors import SchemaError

RENAMED_FROM: Final = "renamed_from"
"""The key that marks a declared field as renamed from an older one: in a dataclass or attrs field's
``metadata``, a pydantic ``Field``'s ``json_schema_extra`` or a ``msgspec.Meta``'s ``extra``."""


@dataclass(frozen=True, slots=True)
class Evolution:
    """One step of a schema's evolution, every name in it a field of the schema it applies to."""

    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Former name to new name."""
    remove: frozenset[str] = frozenset()
    widen: Mapping[str, FieldSpec] = dataclasses.field(default_factory=dict)
    """Field (by its name before the step) to the spec it has after it, which takes every value the old
    one took."""
    add: Mapping[str, FieldSpec] = dataclasses.field(default_factory=dict)
    """New optional fields."""

    def __bool__(self) -> bool:
        return bool(self.rename or self.remove or self.widen or self.add)

    def describe(self) -> str:
        """The step in a few words, for logs and errors."""
        parts = [f"rename {old!r} to {new!r}" for old, new in self.rename.items()]
        parts += [f"remove {name!r}" for name in sorted(self.remove)]
        parts += [f"widen {name!r} to {_spec_text(spec)}" for name, spec in self.widen.items()]
        parts += [f"add {name!r}" for name in self.add]
        return ", ".join(parts) or "nothing"


def evolve_schema(schema: Schema, step: Evolution) -> Schema:
    """``schema`` after ``step``, one version on (``schema`` itself for an empty step).

    Raises:
        SchemaError: the step is incompatible; the message names the field and why.
    """
    if not step:
        return schema
    fields = schema.fields
    _check_renames(schema, step)
    for name in sorted(step.remove):
        if name not in fields:
            raise SchemaError(f"cannot remove {name!r}: no such field ({_listing(schema)})", field=name)
    for name, spec in step.widen.items():
        if name not in fields:
            raise SchemaError(f"cannot widen {name!r}: no such field ({_listing(schema)})", field=name)
        if name in step.remove:
            raise SchemaError(f"cannot both widen and remove {name!r}", field=name)
        _check_widening(name, fields[name], spec)
    out: dict[str, FieldSpec] = {}
    for name, spec in fields.items():
        if name not in step.remove:
            out[step.rename.get(name, name)] = step.widen.get(name, spec)
    for name, spec in step.add.items():
        check_field_name(name)
        if name in out:
            raise SchemaError(f"cannot add {name!r}: the schema has such a field already", field=name)
        _check_unused(schema, name, f"cannot add {name!r}")
        if spec.required:
            raise SchemaError(
                f"cannot add {name!r} without a default: entities stored before do not have it", field=name
            )
        _check_default(name, spec)
        out[name] = spec
    if not out:
        raise SchemaError("cannot remove every field: an entity needs at least one")
    renamed: dict[str, str] = {}
    removed = set(schema.removed | step.remove)
    for old, now in schema.renamed.items():
        if now in step.remove:
            removed.add(old)
        else:
            renamed[old] = step.rename.get(now, now)
    renamed.update(step.rename)
    return dataclasses.replace(
        schema, fields=out, version=schema.version + 1, renamed=renamed, removed=frozenset(removed)
    )


def pending_part(schema: Schema, step: Evolution) -> Evolution:
    """What of ``step`` ``schema`` does not hold yet: renames and removals its history has made already,
    widened specs and added fields it has as they are, are left out. So a step made twice (a script run
    again, two nodes making the same step at once) changes the schema once, and the second time nothing."""
    fields = schema.fields
    rename = {old: new for old, new in step.rename.items() if old in fields or schema.renamed.get(old) != new}
    remove = frozenset(name for name in step.remove if name in fields or name not in schema.removed)
    widen: dict[str, FieldSpec] = {}
    for name, spec in step.widen.items():
        now = name if name in rename else step.rename.get(name, name)  # its name in ``schema``
        if fields.get(now) != spec:
            widen[now] = spec
    add = {name: spec for name, spec in step.add.items() if fields.get(name) != spec}
    return Evolution(rename=rename, remove=remove, widen=widen, add=add)


def _check_renames(schema: Schema, step: Evolution) -> None:
    fields = schema.fields
    targets: dict[str, str] = {}
    for old, new in step.rename.items():
        if old not in fields:
            raise SchemaError(f"cannot rename {old!r}: no such field ({_listing(schema)})", field=old)
        check_field_name(new)
        if old in step.remove:
            raise SchemaError(f"cannot both rename and remove {old!r}", field=old)
        if new in fields:
            raise SchemaError(
                f"cannot rename {old!r} to {new!r}: the schema has a field {new!r} already", field=new
            )
        if new in targets:
            raise SchemaError(f"cannot rename both {targets[new]!r} and {old!r} to {new!r}", field=new)
        _check_unused(schema, new, f"cannot rename {old!r} to {new!r}")
        targets[new] = old


def _check_unused(schema: Schema, name: str, what: str) -> None:
    """``SchemaError`` if ``name`` was a field of an earlier version (renamed or removed since)."""
    if name in schema.retired:
        raise SchemaError(
            f"{what}: {name!r} was a field of an earlier version, and entities stored then may still "
            f"hold values under it",
            field=name,
        )


def _check_widening(name: str, old: FieldSpec, new: FieldSpec) -> None:
    """``SchemaError`` unless field ``name`` as ``new`` takes every value it took as ``old``."""
    if not (new.type == old.type or new.type == "any" or (old.type == "int" and new.type == "float")):
        raise SchemaError(
            f"cannot change {name!r} from {old.type} to {new.type}: an evolution only widens "
            f"(int to float, any type to any)",
            field=name,
            expected=old.type,
        )
    if new.choices is not None and (
        old.choices is None or any(not _among(choice, new.choices) for choice in old.choices)
    ):
        raise SchemaError(
            f"cannot narrow the values {name!r} takes: entities stored before may hold any of "
            f"{'its type' if old.choices is None else list(old.choices)}",
            field=name,
        )
    if old.nullable and not new.nullable:
        raise SchemaError(
            f"cannot make {name!r} refuse None: entities stored before may hold None", field=name
        )
    if new.required and not old.required:
        raise SchemaError(f"cannot make {name!r} required: entities stored before may lack it", field=name)
    if not new.required:
        _check_default(name, new)


def _among(value: Any, choices: tuple[Any, ...]) -> bool:
    """``value in choices`` as JSON tells values apart (``1``, ``1.0`` and ``True`` differ)."""
    return any(type(choice) is type(value) and choice == value for choice in choices)


def _check_default(name: str, spec: FieldSpec) -> None:
    check_json(name, spec.default)
    if not spec.accepts(spec.default):
        raise SchemaError(
            f"the default of {name!r}, {spec.default!r}, is not a {spec.type}", field=name, expected=spec.type
        )


def _listing(schema: Schema) -> str:
    return "fields: " + ", ".join(schema.fields)


def _spec_text(spec: FieldSpec) -> str:
    text = f"{spec.type} | None" if spec.nullable else spec.type
    return text if spec.required else f"{text} = {spec.default!r}"


# -- steps from arguments and declarations -----------------------------------------------------------


def requested_step(
    schema: Schema,
    model: type | None,
    rename: Mapping[str, str] | None,
    remove: Iterable[str],
    widen: Mapping[str, Any] | None,
) -> Evolution:
    """The step ``Collection.evolve`` is asked for: to what ``model`` declares (with ``rename`` besides
    its ``renamed_from`` fields), or the explicit ``rename``/``remove``/``widen``."""
    if model is None:
        return explicit_step(schema, rename, remove, widen)
    if remove or widen:
        raise TypeError("evolve(model) takes what to remove and widen from the model: pass only rename=")
    renames = declared_renames(model)
    renames.update({new: old for old, new in (rename or {}).items()})
    return declared_step(schema, model_of(model).schema(), renames)


def check_declared_renames(schema: Schema, model: type) -> None:
    """``SchemaError`` when ``model`` declares a field renamed from one the schema still has: ``typed()``
    never renames, only ``evolve()`` does."""
    for new, old in declared_renames(model).items():
        if old in schema.fields and new not in schema.fields:
            name = getattr(model, "__qualname__", repr(model))
            raise SchemaError(
                f"{name}.{new} is declared renamed from {old!r}, which the stored schema still has: "
                f"rename it with `await collection.evolve({name})`",
                field=new,
            )


def explicit_step(
    schema: Schema,
    rename: Mapping[str, str] | None = None,
    remove: Iterable[str] = (),
    widen: Mapping[str, Any] | None = None,
) -> Evolution:
    """The step ``Collection.evolve(rename=..., remove=..., widen=...)`` asks for.

    ``widen`` maps a field (by its name before or after a rename) to a type annotation: ``float``,
    ``int | None``, ``Any``. The field keeps whether it is required and its default, and may hold ``None``
    if it could or if the annotation says so.
    """
    if isinstance(remove, str):
        remove = [remove]
    renames = dict(rename or {})
    for old, new in renames.items():
        if not isinstance(old, str) or not isinstance(new, str):
            raise SchemaError(f"rename= maps former names to new names (strings), got {old!r}: {new!r}")
    former = {new: old for old, new in renames.items()}
    widened: dict[str, FieldSpec] = {}
    for name, annotation in (widen or {}).items():
        name = former.get(name, name)
        spec = schema.fields.get(name)
        if spec is None:
            raise SchemaError(f"cannot widen {name!r}: no such field ({_listing(schema)})", field=name)
        kind, nullable = annotation_type(annotation, name)
        widened[name] = dataclasses.replace(spec, type=kind, nullable=spec.nullable or nullable)
    return Evolution(rename=renames, remove=frozenset(remove), widen=widened)


def declared_step(schema: Schema, declared: Schema, renames: Mapping[str, str]) -> Evolution:
    """The step that makes ``schema`` what a model declares (``declared``; ``renames``: new name to
    former name, as ``renamed_from`` says them).

    A stored field the model does not declare (under its name or as renamed from it) is removed; a
    declared field the schema does not have is added; a declared field that takes more than the stored
    one widens it. Where the stored field takes more than the declaration (a field inferred from a first
    ``add()`` takes ``None``, say), it stays as it is, as ``typed()`` keeps it.
    """
    fields = schema.fields
    rename: dict[str, str] = {}
    for new, old in renames.items():
        if new not in declared.fields:
            raise SchemaError(f"{new!r} is declared renamed from {old!r} but is not a field", field=new)
        if old in fields:
            rename[old] = new
        elif schema.renamed.get(old) != new and new not in fields:
            raise SchemaError(
                f"field {new!r} is declared renamed from {old!r}, which the stored schema does not have "
                f"({_listing(schema)})",
                field=new,
            )
    former = {new: old for old, new in rename.items()}
    remove = frozenset(name for name in fields if rename.get(name, name) not in declared.fields)
    widen: dict[str, FieldSpec] = {}
    add: dict[str, FieldSpec] = {}
    for name, spec in declared.fields.items():
        old_name = former.get(name, name)
        have = fields.get(old_name)
        if have is None:
            add[name] = spec
            continue
        wider = _wider(have, spec)
        if wider != have:
            widen[old_name] = wider
    return Evolution(rename=rename, remove=remove, widen=widen, add=add)


def _wider(have: FieldSpec, declared: FieldSpec) -> FieldSpec:
    """The stored field ``have`` taking what ``declared`` takes more (its type is checked by the step)."""
    kind = have.type if declared.type == have.type else declared.type
    required = have.required and declared.required
    default = have.default if declared.required else declared.default
    choices = have.choices
    if choices is not None:
        if declared.choices is None:
            choices = None
        else:
            choices += tuple(choice for choice in declared.choices if not _among(choice, choices))
    return dataclasses.replace(
        have,
        type=kind,
        required=required,
        nullable=have.nullable or declared.nullable,
        default=default,
        choices=choices,
    )


def declared_renames(model: type) -> dict[str, str]:
    """The fields ``model`` declares renamed (new name to former name): ``renamed_from`` in a dataclass or
    attrs field's metadata, a pydantic field's ``json_schema_extra`` or a ``msgspec.Meta``'s ``extra``."""
    found: dict[str, str] = {}
    if dataclasses.is_dataclass(model):
        for item in dataclasses.fields(model):
            _note(found, item.name, item.metadata)
    for item in getattr(model, "__attrs_attrs__", ()):
        _note(found, item.name, getattr(item, "metadata", None))
    model_fields = getattr(model, "model_fields", None)
    if isinstance(model_fields, Mapping):
        for name, info in model_fields.items():
            _note(found, name, getattr(info, "json_schema_extra", None))
    if hasattr(model, "__struct_fields__"):
        try:
            hints = typing.get_type_hints(model, include_extras=True)
        except (NameError, TypeError):
            hints = {}
        for name, hint in hints.items():
            for meta in getattr(hint, "__metadata__", ()):
                _note(found, name, getattr(meta, "extra", None))
    return found


def _note(found: dict[str, str], name: str, metadata: Any) -> None:
    if isinstance(metadata, Mapping) and RENAMED_FROM in metadata:
        old = metadata[RENAMED_FROM]
        if not isinstance(old, str):
            raise SchemaError(f"{RENAMED_FROM} of {name!r} must be a field name, got {old!r}", field=name)
        found[name] = old


def field(*, renamed_from: str, **options: Any) -> Any:
    """A dataclass field declared renamed from ``renamed_from`` (``options`` as ``dataclasses.field``'s):
    ``agent_id: int | None = brainlessdb.field(renamed_from="agent", default=None)``."""
    metadata = dict(options.pop("metadata", None) or {})
    metadata[RENAMED_FROM] = renamed_from
    return dataclasses.field(metadata=metadata, **options)


# -- old data under a new schema ---------------------------------------------------------------------


def needs_upgrade(schema: Schema | None, data: Mapping[str, Any]) -> bool:
    """True when ``data`` holds a name ``schema`` took out of use (one set operation when it does not)."""
    return schema is not None and bool(schema.retired) and not schema.retired.isdisjoint(data)


def upgrade_record(schema: Schema, record: Record) -> Record:
    """``record`` (a version read from the bucket) under ``schema``'s names: a new record of its type, or
    ``record`` itself when it holds no former name."""
    if not needs_upgrade(schema, record.data):
        return record
    shared = record.shared
    stamps = record.stamps if shared is None else shared
    data, stamps, extras = _upgraded(schema, record.data, stamps, record.extras)
    if isinstance(stamps, dict):
        return type(record)(data=data, stamps=stamps, extras=extras)
    return type(record)(data=data, shared=stamps, extras=extras)


def upgrade_entities(entities: Iterable[Entity], schema: Schema) -> bool:
    """Give the entities held from before an evolution ``schema``'s names; True if any changed.

    A moved dict or list value is handed on plain: what its old name's tracked container is changed
    afterwards is not the field any more (as after any replacement of the field).
    """
    if not schema.retired:
        return False
    changed = False
    for entity in entities:
        data = entity._data
        if not needs_upgrade(schema, data):
            continue
        shared = shared_stamp(entity._stamps)
        moved = field_stamps(entity._stamps, data) if shared is None else shared  # moved with the fields
        new_data, stamps, extras = _upgraded(schema, data, moved, entity._extras, plain=True)
        set_slot(entity, "_row", entity._layout.row(new_data))
        set_slot(entity, "_stamps", compact(stamps) if isinstance(stamps, dict) else held(stamps))
        set_slot(entity, "_extras", extras)
        changed = True
    return changed


def _upgraded(
    schema: Schema,
    data: Mapping[str, Any],
    stamps: Stamp | dict[str, Stamp],
    extras: Extras | None,
    *,
    plain: bool = False,
) -> tuple[dict[str, Any], Stamp | dict[str, Stamp], Extras | None]:
    """``data`` with its stamps and extras under ``schema``'s names, in field order. A value held under
    both a former name and the new one (a node on the old schema wrote the one, a node on the new one the
    other) is the newer write of the two, as a merge decides."""
    renamed, removed = schema.renamed, schema.removed
    per_field = isinstance(stamps, dict)
    out: dict[str, Any] = {}
    out_stamps: dict[str, Any] = {}
    moved = Extras(expiry=None if extras is None else extras.expiry)  # the entity's, under any names
    for name, value in data.items():
        if name in removed:
            continue
        target = renamed.get(name, name)
        stamp = stamps[name] if isinstance(stamps, dict) else stamps
        if target != name and plain:
            value = untrack(value)
        if target in out and not field_wins(stamp, value, out_stamps[target], out[target]):
            continue
        out[target] = value
        out_stamps[target] = stamp
        if extras is not None:
            moved.set_field(target, extras.paths.get(name), extras.counts.get(name))
    if per_field:
        return out, out_stamps, moved or None
    return out, stamps, moved or None  # one stamp for every field, as before
