"""``dump`` and ``restore``: a namespace's collections as JSON Lines of stored values, and back.

A dump holds, for each collection, its schema and bucket settings, then the last stored entry of every
key: the value as NATS holds it (stamps and all), or the delete marker with its body, and the time NATS
stored it (which stamps values written by other clients). Values that are not JSON (dead letters) are
left out and counted.

``restore`` merges each entry into what the target bucket holds, by the library's merge rules, and writes
the merge with compare-and-set on the revision it read, so it never overwrites newer data (a newer field
wins, a delete wins) and running nodes take the result as any other node's write. An entry that changes
nothing is not written: restoring twice writes nothing the second time. The target namespace is the global
``--namespace``, so a dump can be restored into another one.

Format::

    {"brainless_dump": 1, "namespace": "app", "created": "2026-11-18T11:06:40.250Z"}
    {"collection": "call", "schema": {"v": 1, "fields": {...}}, "history": 1, "replicas": 1}
    {"collection": "call", "key": "<uuid>", "op": "PUT", "time_ns": 1795000000250000000, "value": {...}}
    {"collection": "call", "key": "<uuid>", "op": "DEL", "time_ns": 1795000000900000000, "value": {...}}
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO, Any, Final, Literal

from brainlessdb.cli.common import OK, CliError, Output, UsageError, iso_time, warn
from brainlessdb.cli.connection import Session, check_collection_name
from brainlessdb.core.codec import decode_delete, decode_value, encode_record
from brainlessdb.core.merge import Record, merge_records
from brainlessdb.core.schema import Schema
from brainlessdb.errors import ConflictError, DecodeError, SchemaError
from brainlessdb.shell.database import Brainless
from brainlessdb.storage.base import CaughtUp, Entry, Op, Write
from brainlessdb.storage.nats.kv import NatsKVStorage

FORMAT: Final = 1
BATCH: Final = 1000  # writes sent together, their acknowledgements gathered together
RETRIES: Final = 10  # conflicts on one key (someone writing it meanwhile) before giving up
RESERVED_PREFIX: Final = "_"  # keys of the collection itself (its schema), never an entity's


async def read_bucket(storage: NatsKVStorage, bucket: str) -> Iterator[Entry]:
    """The last entry of every key of ``bucket`` (a replay, as a node's load), reserved keys left out."""
    entries: list[Entry] = []
    async with contextlib.aclosing(storage.watch(bucket)) as events:
        async for event in events:
            if isinstance(event, CaughtUp):
                break
            if isinstance(event, Entry) and not event.key.startswith(RESERVED_PREFIX):
                entries.append(event)
    return iter(entries)


class Progress:
    """A rich progress bar on stderr when it is a terminal and rich is installed; nothing otherwise."""

    def __init__(self, description: str, total: int | None) -> None:
        self._bar: Any = None
        if not sys.stderr.isatty():
            return
        try:
            from rich.progress import Progress as Bar
        except ImportError:
            return
        self._bar = Bar(transient=True, console=None)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- dump --------------------------------------------------------------------------------------------


async def cmd_dump(session: Session, out: Output, args: argparse.Namespace) -> int:
    names = args.collections or await session.collections()
    infos = {name: await session.stream(name) for name in names}
    db = await session.database() if names else None
    target: IO[str]
    with contextlib.ExitStack() as stack:
        if args.output in (None, "-"):
            target = sys.stdout
        else:
            try:
                # Written line by line as the bucket is read: a dump never holds a whole bucket.
                target = stack.enter_context(Path(args.output).open("w", encoding="utf-8"))  # noqa: ASYNC230
            except OSError as exc:
                raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        write_line(
            target,
            {
                "brainless_dump": FORMAT,
                "namespace": session.settings.namespace,
                "created": iso_time(time.time() * 1000),
            },
        )
        totals = []
        for name in names:
            info = infos[name]
            schema = None if db is None else db.collection(name).schema
            write_line(
                target,
                {
                    "collection": name,
                    "schema": None if schema is None else schema.to_json(),
                    "history": info.config.max_msgs_per_subject,
                    "replicas": info.config.num_replicas,
                },
            )
            progress = Progress(f"dump {name}", info.state.messages)
            written = skipped = 0
            try:
                for entry in await read_bucket(session.storage, session.settings.bucket(name)):
                    progress.advance()
                    line = entry_line(name, entry)
                    if line is None:
                        skipped += 1
                        continue
                    write_line(target, line)
                    written += 1
            finally:
                progress.close()
            totals.append({"collection": name, "entries": written, "skipped": skipped})
    for total in totals:
        skipped_note = f", {total['skipped']} unreadable values left out" if total["skipped"] else ""
        warn(f"dumped {total['collection']}: {total['entries']} entries{skipped_note}")
    return OK


def entry_line(collection: str, entry: Entry) -> dict[str, Any] | None:
    """One entry of a dump; None for a value that is not JSON (a dead letter: left out)."""
    line: dict[str, Any] = {
        "collection": collection,
        "key": entry.key,
        "op": entry.op.value,
        "time_ns": entry.time_ns,
    }
    if entry.value:
        try:
            line["value"] = json.loads(entry.value)
        except (ValueError, RecursionError):
            return None
    elif entry.op is Op.PUT:
        return None
    return line


def write_line(target: IO[str], obj: dict[str, Any]) -> None:
    target.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


# -- restore -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Dumped:
    """One collection of a dump."""

    name: str
    schema: dict[str, Any] | None = None
    history: int = 1
    entries: list[Entry] = dataclasses.field(default_factory=list)


def read_dump(path: str) -> list[Dumped]:
    """The collections of a dump file, in order; ``CliError`` naming the line of what is wrong."""
    collections: dict[str, Dumped] = {}
    with contextlib.ExitStack() as stack:
        try:
            source = sys.stdin if path == "-" else stack.enter_context(Path(path).open(encoding="utf-8"))
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        for number, text in enumerate(source, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError:
                raise CliError(f"{path}:{number}: not JSON") from None
            if not isinstance(line, dict):
                raise CliError(f"{path}:{number}: not a JSON object")
            if number == 1:
                if line.get("brainless_dump") != FORMAT:
                    raise CliError(f"{path}: not a brainless dump (format {FORMAT})")
                continue
            try:
                add_line(collections, line)
            except (KeyError, TypeError, ValueError) as exc:
                raise CliError(f"{path}:{number}: malformed line ({exc})") from None
    return list(collections.values())


def add_line(collections: dict[str, Dumped], line: dict[str, Any]) -> None:
    name = line["collection"]
    if not isinstance(name, str):
        raise TypeError("collection is not a string")
    if "key" not in line:
        collections[name] = Dumped(name, line.get("schema"), int(line.get("history") or 1))
        return
    dumped = collections.setdefault(name, Dumped(name))
    op = Op(line["op"])
    value = line.get("value")
    body = b"" if value is None else json.dumps(value, ensure_ascii=False).encode()
    key = line["key"]
    if not isinstance(key, str):
        raise TypeError("key is not a string")
    dumped.entries.append(Entry(key=key, revision=0, value=body, op=op, time_ns=int(line["time_ns"])))


def version_of(entry: Entry) -> Record:
    """The entity version an entry stands for (``DecodeError`` if it is none)."""
    if entry.op is Op.PUT:
        return decode_value(entry.value, time_ns=entry.time_ns)
    return decode_delete(entry.value, time_ns=entry.time_ns)


_TYPES: Final[dict[str, Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "dict": dict,
    "list": list,
    "any": object,
}


def schema_class(name: str, raw: dict[str, Any]) -> type:
    """A dataclass declaring the schema ``raw`` (stored form), for ``typed()`` to adopt it."""
    schema = Schema.from_json(raw)
    fields: list[Any] = []
    for field_name, spec in schema.fields.items():
        base: Any = _TYPES[spec.type]
        if spec.choices is not None:
            base = Literal.__getitem__(spec.choices)  # an Enum's or a Literal's values, checked again
        annotation: Any = (Any if base is object else base | None) if spec.nullable else base
        if spec.required:
            fields.append((field_name, annotation))
        else:
            default = dataclasses.field(default_factory=partial(copy.deepcopy, spec.default))
            fields.append((field_name, annotation, default))
    try:
        return dataclasses.make_dataclass(f"Restored_{name}", fields, kw_only=True)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"cannot declare the schema of {name!r}: {exc}") from None


def adopt_schema(db: Brainless, dumped: Dumped) -> Schema | None:
    """Give the target collection the dump's schema (or extend its own with it); the schema it then has."""
    collection = db.collection(dumped.name)
    if dumped.schema is not None:
        try:
            collection.typed(schema_class(dumped.name, dumped.schema))
        except SchemaError as exc:
            raise CliError(
                f"the schema of {dumped.name!r} in the dump does not fit the stored one: {exc}"
            ) from None
    return collection.schema


def refusal(schema: Schema | None, record: Record) -> str | None:
    """Why ``record`` cannot go into a collection of ``schema``, or None."""
    if schema is None or record.deleted is not None:
        return None
    try:
        schema.check_stored(record.data)
    except SchemaError as exc:
        return str(exc)
    missing = [name for name, spec in schema.fields.items() if spec.required and name not in record.data]
    return f"missing required field {missing[0]!r}" if missing else None


async def cmd_restore(session: Session, out: Output, args: argparse.Namespace) -> int:
    dumped = read_dump(args.file)
    for collection in dumped:
        check_collection_name(session.settings, collection.name)
    if args.replicas is not None and args.replicas < 1:
        raise UsageError("--replicas must be 1 or more")
    for collection in dumped:
        # A bucket the namespace lacks is made with the dump's history (and the replicas asked for).
        maker = NatsKVStorage(
            session.client,
            history=collection.history,
            replicas=args.replicas or 1,
            timeout=session.settings.timeout,
        )
        try:
            await maker.open_bucket(session.settings.bucket(collection.name))
        finally:
            await maker.close()
    db = await session.database()
    schemas = {collection.name: adopt_schema(db, collection) for collection in dumped}
    await session.flush()  # the schemas adopted
    await session.stop_database()  # its watches need not follow the writes below
    failed = 0
    for collection in dumped:
        result = await restore_collection(session, collection, schemas[collection.name])
        failed += result["refused"] + result["failed"]
        if out.json:
            out.record(result)
        else:
            out.line(
                f"{collection.name}: {result['entries']} entries, {result['written']} written, "
                f"{result['unchanged']} unchanged, {result['refused']} refused, {result['failed']} failed"
            )
    if failed:
        raise CliError(f"{failed} entries not restored")
    return OK


async def restore_collection(session: Session, dumped: Dumped, schema: Schema | None) -> dict[str, Any]:
    storage = session.storage
    bucket = session.settings.bucket(dumped.name)
    current = {entry.key: entry for entry in await read_bucket(storage, bucket)}
    result: dict[str, Any] = {
        "collection": dumped.name,
        "entries": len(dumped.entries),
        "written": 0,
        "unchanged": 0,
        "refused": 0,
        "failed": 0,
    }
    progress = Progress(f"restore {dumped.name}", len(dumped.entries))
    try:
        pending: list[tuple[str, Record]] = []
        for entry in dumped.entries:
            try:
                record = version_of(entry)
            except DecodeError as exc:
                warn(f"{dumped.name}/{entry.key}: refused, {exc}")
                result["refused"] += 1
                continue
            reason = refusal(schema, record)
            if reason is not None:
                warn(f"{dumped.name}/{entry.key}: refused, {reason}")
                result["refused"] += 1
                continue
            pending.append((entry.key, record))
        for start in range(0, len(pending), BATCH):
            batch = pending[start : start + BATCH]
            await write_merged(storage, bucket, batch, current, result)
            progress.advance(len(batch))
    finally:
        progress.close()
    return result


def merged_write(key: str, incoming: Record, stored: Entry | None) -> Write | None:
    """The write that merges ``incoming`` into what the key holds; None when it would change nothing."""
    if stored is None:
        merged, expected = incoming, 0
    else:
        try:
            held = version_of(stored)
        except DecodeError:
            merged = incoming  # what the key holds cannot be used: nodes write over it too
        else:
            merged = merge_records(held, incoming)
            if merged == held:
                return None
        expected = stored.revision
    return Write(key, encode_record(merged), expected, delete=merged.deleted is not None)


async def write_merged(
    storage: NatsKVStorage,
    bucket: str,
    batch: list[tuple[str, Record]],
    current: dict[str, Entry],
    result: dict[str, Any],
) -> None:
    """Write each merge with compare-and-set; on a conflict read the key again and merge again."""
    todo = batch
    for _ in range(RETRIES):
        writes: list[tuple[str, Record, Write]] = []
        for key, record in todo:
            write = merged_write(key, record, current.get(key))
            if write is None:
                result["unchanged"] += 1
            else:
                writes.append((key, record, write))
        if not writes:
            return
        outcomes = await storage.write(bucket, [write for _, _, write in writes])
        todo = []
        for (key, record, _), outcome in zip(writes, outcomes, strict=True):
            if isinstance(outcome, ConflictError):
                stored = await storage.get(bucket, key)
                if stored is None:
                    current.pop(key, None)
                else:
                    current[key] = stored
                todo.append((key, record))
            elif isinstance(outcome, Exception):
                warn(f"{bucket}/{key}: not written, {outcome}")
                result["failed"] += 1
            else:
                result["written"] += 1
        if not todo:
            return
    result["failed"] += len(todo)
