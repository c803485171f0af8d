"""The subcommands that read and edit entities: ls, get, find, watch, history, schema, stats, put, del,
dead-letters.

Each reads its collection through ``Brainless`` (loaded as a node loads it, merged and checked against
the schema) and changes it the same way (stamped, merged, schema-checked), so what an operator sees is
what the nodes see, and an edit never makes them disagree. Stamps and history come from the stored
values themselves, decoded by the library's codec.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import nats.errors  # noqa: TID251  # a key's history is read from its stream
import nats.js.errors  # noqa: TID251

from brainlessdb.cli.common import (
    OK,
    CliError,
    NotFound,
    Output,
    UsageError,
    dumps,
    iso_time,
    parse_assignments,
    stamp_json,
    warn,
)
from brainlessdb.cli.connection import Session
from brainlessdb.core.codec import decode_delete, decode_value
from brainlessdb.core.collection import Collection
from brainlessdb.core.entity import Entity
from brainlessdb.core.meta import meta
from brainlessdb.core.query.plan import parse_criteria
from brainlessdb.core.values import MISSING
from brainlessdb.errors import (
    DecodeError,
    DuplicateError,
    QueryError,
    SchemaError,
)
from brainlessdb.events import Change, Delete
from brainlessdb.storage.base import Op
from brainlessdb.storage.nats.protocol import operation_of, time_ns_of


def entity_json(entity: Entity) -> dict[str, Any]:
    """An entity as ``--json`` prints it: its uuid, then its fields."""
    return meta(entity).to_dict()


def field_order(collection: Collection[Any], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The columns of a table of entities: the schema's fields, then any other in the order met."""
    names: dict[str, None] = {}
    if collection.schema is not None:
        names.update(dict.fromkeys(collection.schema.fields))
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def entity_table(out: Output, collection: Collection[Any], entities: Sequence[Entity]) -> None:
    data = [meta(entity).data for entity in entities]
    columns = field_order(collection, data)
    rows = [
        [entity.uuid, *(row.get(name, "") for name in columns)]
        for entity, row in zip(entities, data, strict=True)
    ]
    out.table(["uuid", *columns], rows)


async def open_collection(session: Session, name: str) -> Collection[Any]:
    """The collection ``name`` of a started database; ``NotFound`` if the namespace has no such bucket."""
    await session.stream(name)  # never creates a bucket for a misspelt name
    db = await session.database()
    collection = db.collection(name)
    await collection.load()
    return collection


def query_error(exc: QueryError) -> UsageError:
    return UsageError(f"bad criteria: {exc}")


# -- ls, schema, stats -------------------------------------------------------------------------------


async def cmd_ls(session: Session, out: Output, args: argparse.Namespace) -> int:
    collections = await session.collections()
    rows: list[dict[str, Any]] = []
    if collections:
        db = await session.database()
        for name in collections:
            info = await session.stream(name)
            collection = db.collection(name)
            schema = collection.schema
            rows.append(
                {
                    "collection": name,
                    "entities": len(collection),
                    "bytes": info.state.bytes,
                    "history": info.config.max_msgs_per_subject,
                    "replicas": info.config.num_replicas,
                    "fields": [] if schema is None else list(schema.fields),
                }
            )
    if out.json:
        for row in rows:
            out.record(row)
    else:
        out.table(
            ["collection", "entities", "bytes", "history", "replicas", "fields"],
            [[*list(row.values())[:5], ", ".join(row["fields"])] for row in rows],
        )
    return OK


async def cmd_schema(session: Session, out: Output, args: argparse.Namespace) -> int:
    collection = await open_collection(session, args.collection)
    schema = collection.schema
    if schema is None:
        raise NotFound(f"collection {args.collection!r} has no schema yet")
    rows = []
    for name, spec in schema.fields.items():
        row: dict[str, Any] = {"field": name, **spec.to_json()}
        rows.append(row)
    if out.json:
        for row in rows:
            out.record(row)
    else:
        out.table(
            ["field", "type", "required", "nullable", "default"],
            [[r["field"], r["type"], r["required"], r["nullable"], r.get("default", "")] for r in rows],
        )
    return OK


async def cmd_stats(session: Session, out: Output, args: argparse.Namespace) -> int:
    names = args.collections or await session.collections()
    for name in names:
        await session.stream(name)
    rows = []
    if names:
        db = await session.database()
        for name in names:
            collection = db.collection(name)
            await collection.load()
            info = await session.stream(name)
            counts = db.stats()["collections"].get(name, {})
            rows.append(
                {
                    "collection": name,
                    "entities": len(collection),
                    "dead_letters": counts.get("dead_letters", 0),
                    "tombstones": len(collection.sync.tombstones),
                    "messages": info.state.messages,
                    "bytes": info.state.bytes,
                    "first_revision": info.state.first_seq,
                    "last_revision": info.state.last_seq,
                    "consumers": info.state.consumer_count,
                }
            )
    if out.json:
        for row in rows:
            out.record(row)
    elif rows:
        out.table(list(rows[0]), [list(row.values()) for row in rows])
    return OK


# -- get, find ---------------------------------------------------------------------------------------


async def cmd_get(session: Session, out: Output, args: argparse.Namespace) -> int:
    collection = await open_collection(session, args.collection)
    entity = await collection.get(args.uuid)
    if entity is None:
        raise NotFound(f"no entity {args.uuid!r} in collection {args.collection!r}")
    stamps: dict[str, Any] = {}
    if args.stamps:
        stamps = await stored_stamps(session, args.collection, args.uuid)
    if out.json:
        record = entity_json(entity)
        if args.stamps:
            record["_stamps"] = stamps
        out.record(record)
        return OK
    data = meta(entity).data
    if args.stamps:
        rows = [[name, value, *_stamp_cells(stamps.get(name))] for name, value in data.items()]
        out.table(["field", "value", "time", "node"], [["uuid", entity.uuid, "", ""], *rows])
    else:
        out.table(["field", "value"], [["uuid", entity.uuid], *([n, v] for n, v in data.items())])
    return OK


def _stamp_cells(stamp: Mapping[str, Any] | None) -> list[str]:
    if stamp is None:
        return ["", ""]
    return [stamp["time"], stamp["node"] or "(another client)"]


async def stored_stamps(session: Session, collection: str, uuid: str) -> dict[str, Any]:
    """The stamp of each field of the version the bucket holds: when, and which location, wrote it."""
    entry = await session.storage.get(session.settings.bucket(collection), uuid)
    if entry is None or entry.op is not Op.PUT:
        return {}
    try:
        record = decode_value(entry.value, time_ns=entry.time_ns)
    except DecodeError:
        return {}
    return {name: stamp_json(stamp) for name, stamp in record.stamps.items()}


async def cmd_find(session: Session, out: Output, args: argparse.Namespace) -> int:
    criteria = parse_assignments(args.criteria, "criterion")
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 or more")
    collection = await open_collection(session, args.collection)
    try:
        if args.order_by:
            found = await collection.order_by(*args.order_by, **criteria)
        else:
            found = await collection.filter(**criteria)
    except QueryError as exc:
        raise query_error(exc) from None
    if args.limit is not None:
        found = found[: args.limit]
    if args.count:
        if out.json:
            out.record({"count": len(found)})
        else:
            out.line(str(len(found)))
        return OK
    if out.json:
        for entity in found:
            out.record(entity_json(entity))
    else:
        entity_table(out, collection, found)
    return OK


# -- watch -------------------------------------------------------------------------------------------


def change_json(event: Change | Delete) -> dict[str, Any]:
    """An event as ``watch --json`` prints it."""
    if isinstance(event, Delete):
        return {"event": "delete", "collection": event.collection, "uuid": event.uuid}
    changes = {}
    for name, (old, new) in event.changes.items():
        changes[name] = {"new": new} if old is MISSING else {"old": old, "new": new}
    return {
        "event": "add" if event.created else "change",
        "collection": event.collection,
        "uuid": event.uuid,
        "changes": changes,
        "entity": entity_json(event.entity) if isinstance(event.entity, Entity) else None,
    }


def change_text(record: Mapping[str, Any]) -> str:
    """An event for people: the time, what happened, and each field's old and new value."""
    head = f"{time.strftime('%H:%M:%S')} {record['event']:<6} {record['uuid']}"
    parts = []
    for name, change in (record.get("changes") or {}).items():
        if "old" in change:
            parts.append(f"{name}: {dumps(change['old'])} -> {dumps(change['new'])}")
        else:
            parts.append(f"{name}={dumps(change['new'])}")
    return head + ("  " + ", ".join(parts) if parts else "")


async def cmd_watch(session: Session, out: Output, args: argparse.Namespace) -> int:
    criteria = parse_assignments(args.criteria, "criterion")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be 1 or more")
    collection = await open_collection(session, args.collection)
    try:
        matching = {entity.uuid for entity in await collection.filter(**criteria)}
    except QueryError as exc:
        raise query_error(exc) from None
    schema = collection.schema
    conditions = parse_criteria(criteria, None if schema is None else schema.field_types())
    events: asyncio.Queue[Change | Delete] = asyncio.Queue()
    collection.on_change(events.put_nowait)
    collection.on_delete(events.put_nowait)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    warn(f"watching {session.settings.namespace}/{args.collection}; Ctrl-C stops")
    shown = 0
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while args.count is None or shown < args.count:
            getting = asyncio.ensure_future(events.get())
            await asyncio.wait([getting, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                break
            event = getting.result()
            if isinstance(event, Delete):
                if criteria and event.uuid not in matching:
                    continue
                matching.discard(event.uuid)
            else:
                data = meta(event.entity).data if isinstance(event.entity, Entity) else {}
                now = all(condition.matches(event.uuid, data) for condition in conditions)
                if not now and event.uuid not in matching:
                    continue
                if now:
                    matching.add(event.uuid)
                else:
                    matching.discard(event.uuid)
            record = change_json(event)
            if out.json:
                out.record(record)
            else:
                out.line(change_text(record))
            shown += 1
    finally:
        stopping.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
    return OK


# -- history -----------------------------------------------------------------------------------------


async def cmd_history(session: Session, out: Output, args: argparse.Namespace) -> int:
    info = await session.stream(args.collection)
    bucket = session.settings.bucket(args.collection)
    stream, subject = f"KV_{bucket}", f"$KV.{bucket}.{args.uuid}"
    kept = info.config.max_msgs_per_subject
    versions: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}
    sequence = 1
    while True:
        try:
            msg = await session.js.get_msg(stream, seq=sequence, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            break
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise CliError(f"cannot read the history of {args.uuid!r}: {exc!r}") from None
        if msg.seq is None:
            break
        sequence = msg.seq + 1
        op = operation_of(msg.headers)
        time_ns = time_ns_of(msg.headers, msg.time)
        version: dict[str, Any] = {
            "uuid": args.uuid,
            "revision": msg.seq,
            "time": iso_time(time_ns / 1_000_000),
            "op": op.value,
        }
        try:
            if op is Op.PUT:
                record = decode_value(msg.data or b"", time_ns=time_ns)
            else:
                record = decode_delete(msg.data or b"", time_ns=time_ns)
        except DecodeError as exc:
            version["unreadable"] = str(exc)
            versions.append(version)
            continue
        if record.deleted is not None:
            version["deleted"] = stamp_json(record.deleted)
            previous = {}
        else:
            data = record.data
            version["data"] = data
            version["changes"] = {
                name: {"old": previous[name], "new": value} if name in previous else {"new": value}
                for name, value in data.items()
                if name not in previous or previous[name] != value
            }
            version["stamps"] = {name: stamp_json(stamp) for name, stamp in record.stamps.items()}
            previous = data
        versions.append(version)
    if not versions:
        raise NotFound(f"no entity {args.uuid!r} in collection {args.collection!r}")
    if kept <= 1:
        warn(f"the bucket keeps only the last version of each key (history {kept})")
    if out.json:
        for version in versions:
            out.record(version)
        return OK
    rows = []
    for version in versions:
        if "deleted" in version:
            what = "deleted"
        elif "unreadable" in version:
            what = "unreadable: " + version["unreadable"]
        else:
            what = ", ".join(
                f"{name}: {dumps(change['old'])} -> {dumps(change['new'])}"
                if "old" in change
                else f"{name}={dumps(change['new'])}"
                for name, change in version["changes"].items()
            )
        rows.append([version["revision"], version["time"], version["op"], what])
    out.table(["revision", "time", "op", "changes"], rows)
    return OK


# -- put, del ----------------------------------------------------------------------------------------


async def cmd_put(session: Session, out: Output, args: argparse.Namespace) -> int:
    changes = parse_assignments(args.fields, "field")
    if not changes:
        raise UsageError("put needs at least one FIELD=VALUE")
    collection = await open_collection(session, args.collection)
    entity = await collection.get(args.uuid)
    try:
        if entity is None:
            if not args.create:
                raise NotFound(
                    f"no entity {args.uuid!r} in collection {args.collection!r} (--create adds it)"
                )
            if any("__" in name for name in changes):
                raise UsageError("a new entity takes whole fields only (no NAME__KEY)")
            entity = collection.add({**changes, "uuid": args.uuid})
        else:
            for name, value in changes.items():
                set_path(entity, name, value)
    except DuplicateError as exc:
        raise CliError(str(exc)) from None
    except SchemaError as exc:
        if exc.field == "uuid":
            raise UsageError(str(exc)) from None
        raise CliError(f"refused: {exc}") from None
    await session.flush()
    if out.json:
        out.record(entity_json(entity))
    else:
        rows = [[name, value] for name, value in meta(entity).data.items()]
        out.table(["field", "value"], [["uuid", entity.uuid], *rows])
    return OK


def set_path(entity: Entity, name: str, value: Any) -> None:
    """``entity[name] = value``, or for ``caller__city``, ``entity["caller"]["city"] = value``."""
    path = name.split("__")
    if len(path) == 1:
        entity[name] = value
        return
    if not all(path):
        raise UsageError(f"field {name!r} has an empty part")
    container: Any = meta(entity).get(path[0], MISSING)
    for step in path[1:-1]:
        if not isinstance(container, dict):
            break
        container = container.get(step, MISSING)
    if not isinstance(container, dict):
        raise UsageError(f"{name!r}: {'__'.join(path[:-1])!r} is not a dict of the entity")
    container[path[-1]] = value


async def cmd_del(session: Session, out: Output, args: argparse.Namespace) -> int:
    collection = await open_collection(session, args.collection)
    if not collection.delete(args.uuid):
        raise NotFound(f"no entity {args.uuid!r} in collection {args.collection!r}")
    await session.flush()
    if out.json:
        out.record({"uuid": args.uuid, "deleted": True})
    else:
        out.line(f"deleted {args.uuid}")
    return OK


# -- dead letters ------------------------------------------------------------------------------------


async def cmd_dead_letters(session: Session, out: Output, args: argparse.Namespace) -> int:
    collection = await open_collection(session, args.collection)
    letters = list(collection.sync.inbox.dead_letters)
    rows: list[dict[str, Any]] = []
    for letter in letters:
        rows.append(
            {
                "key": letter.key,
                "revision": letter.revision,
                "reason": letter.reason,
                "value": letter.value.decode("utf-8", "replace"),
            }
        )
    if out.json:
        for row in rows:
            out.record(row)
    else:
        out.table(
            ["key", "revision", "reason", "value"],
            [[r["key"], r["revision"], r["reason"], _shorten(r["value"])] for r in rows],
        )
    return OK


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
