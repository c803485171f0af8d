"""The ``brainless`` command (also ``python -m brainlessdb``): look at and operate a namespace from a shell.

Subcommands: ``ls``, ``get``, ``find``, ``watch``, ``history``, ``schema``, ``stats``, ``put``, ``del``,
``dead-letters``, ``dump``, ``restore``, ``doctor``, ``nodes`` (the running nodes), ``console`` (the web
console, brainlessdb.console), and ``server`` (a local nats-server) and ``demo``.
Global options (before or after the subcommand): ``--server/-s URL`` (``NATS_URL``), ``--namespace/-n``
(``BRAINLESS_NAMESPACE``), credentials (``--user``, ``--password``, ``--token``, ``--creds``, ``--nkey``,
``--tls-ca``, ``--tls-cert``, ``--tls-key``, each with an environment variable), ``--json``.

Exit codes: 0 ok, 1 error, 2 usage, 3 not found or check failed; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from brainlessdb.cli import commands, demo, doctor, nodes, server, transfer
from brainlessdb.cli.common import ERROR, OK, USAGE, CliError, Output, warn
from brainlessdb.cli.connection import ENVIRONMENT, Session, Settings, describe
from brainlessdb.console import command as console
from brainlessdb.errors import (
    BrainlessError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    StorageError,
    UnavailableError,
)

Command = Callable[[Session, Output, argparse.Namespace], Awaitable[int]]

EPILOG = """exit codes: 0 ok, 1 error, 2 usage, 3 not found or check failed
environment: NATS_URL, BRAINLESS_NAMESPACE, BRAINLESS_LOCATION, NATS_USER, NATS_PASSWORD, NATS_TOKEN,
NATS_CREDS, NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY"""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (exit 2) instead of the usage and the error."""

    def error(self, message: str) -> NoReturn:
        warn(f"{self.prog}: error: {message} (see {self.prog} --help)")
        sys.exit(USAGE)


def global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every subcommand takes, before or after its name (after wins)."""
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("connection")
    group.add_argument(
        "-s", "--server", default=default, help=f"NATS URL(s), comma-separated (${ENVIRONMENT['server']})"
    )
    group.add_argument(
        "-n", "--namespace", default=default, help="namespace ($BRAINLESS_NAMESPACE, else 'default')"
    )
    group.add_argument("--location", default=default, help="location stamped on edits ($BRAINLESS_LOCATION)")
    group.add_argument("--user", default=default, help="user name ($NATS_USER)")
    group.add_argument("--password", default=default, help="password ($NATS_PASSWORD; prefer the variable)")
    group.add_argument("--token", default=default, help="token ($NATS_TOKEN; prefer the variable)")
    group.add_argument("--creds", default=default, metavar="FILE", help="credentials file ($NATS_CREDS)")
    group.add_argument("--nkey", default=default, metavar="FILE", help="nkey seed file ($NATS_NKEY)")
    group.add_argument("--tls-ca", default=default, metavar="FILE", help="CA certificates ($NATS_CA)")
    group.add_argument("--tls-cert", default=default, metavar="FILE", help="client certificate ($NATS_CERT)")
    group.add_argument("--tls-key", default=default, metavar="FILE", help="client key ($NATS_KEY)")
    group.add_argument("--timeout", type=float, default=default, help="seconds to wait for NATS (5)")
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="one JSON object per line",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the library's log",
    )


def build_parser() -> Parser:
    parser = Parser(
        prog="brainless",
        description="Look at and operate a BrainlessDB namespace: entities as the nodes see them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    global_options(parser, top=True)
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name: str, run: Any, help: str) -> argparse.ArgumentParser:
        sub = commands_.add_parser(name, help=help, description=help)
        global_options(sub, top=False)
        sub.set_defaults(run=run)
        return sub

    command("ls", commands.cmd_ls, "the collections of the namespace")
    get = command("get", commands.cmd_get, "one entity")
    get.add_argument("collection")
    get.add_argument("uuid")
    get.add_argument("--stamps", action="store_true", help="each field's time and origin location")
    find = command("find", commands.cmd_find, "entities matching criteria (field=value, field__lookup=value)")
    find.add_argument("collection")
    find.add_argument("criteria", nargs="*", metavar="CRITERION")
    find.add_argument(
        "--order-by", action="append", metavar="KEY", help="sort key, '-key' descending; repeatable"
    )
    find.add_argument("--limit", type=int, metavar="N")
    find.add_argument("--count", action="store_true", help="only the number of matches")
    watch = command("watch", commands.cmd_watch, "live changes and deletes, until Ctrl-C")
    watch.add_argument("collection")
    watch.add_argument("criteria", nargs="*", metavar="CRITERION")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N events")
    history = command("history", commands.cmd_history, "the versions of an entity the bucket keeps")
    history.add_argument("collection")
    history.add_argument("uuid")
    schema = command("schema", commands.cmd_schema, "the schema of a collection")
    schema.add_argument("collection")
    stats = command("stats", commands.cmd_stats, "entities, dead letters, deletes and bucket state")
    stats.add_argument("collections", nargs="*", metavar="COLLECTION")
    put = command("put", commands.cmd_put, "set fields of an entity (stamped, merged, schema-checked)")
    put.add_argument("collection")
    put.add_argument("uuid")
    put.add_argument("fields", nargs="*", metavar="FIELD=VALUE")
    put.add_argument("--create", action="store_true", help="add the entity if it does not exist")
    delete = command("del", commands.cmd_del, "delete an entity")
    delete.add_argument("collection")
    delete.add_argument("uuid")
    letters = command("dead-letters", commands.cmd_dead_letters, "stored values set aside, and why")
    letters.add_argument("collection")
    dump = command("dump", transfer.cmd_dump, "stored values as JSON Lines")
    dump.add_argument("collections", nargs="*", metavar="COLLECTION", help="all of the namespace if none")
    dump.add_argument("-o", "--output", metavar="FILE", help="file to write (default: stdout)")
    restore = command("restore", transfer.cmd_restore, "merge a dump into the namespace")
    restore.add_argument("file", help="a dump ('-' for stdin)")
    restore.add_argument("--replicas", type=int, help="replicas of buckets restore creates (1)")
    check = command("doctor", doctor.cmd_doctor, "check the server, the buckets and the data")
    check.add_argument("--max-skew", type=float, default=doctor.DEFAULT_MAX_SKEW, metavar="SECONDS")
    command("nodes", nodes.cmd_nodes, "the running nodes of the namespace, from their heartbeats")
    web = command("console", console.cmd_console, "the live read-only web console, until Ctrl-C or SIGTERM")
    console.add_arguments(web)

    serve = commands_.add_parser("server", help="run a local nats-server until Ctrl-C or SIGTERM")
    serve.add_argument("--data", default="brainless-data", help="JetStream data directory")
    serve.add_argument("--port", type=int, default=4222)
    serve.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    serve.set_defaults(run=None, local=server.cmd_server)
    show = commands_.add_parser("demo", help="run the guided demo")
    # -s and -n given before "demo" count too; NATS_URL and BRAINLESS_NAMESPACE do not (a fresh demo).
    show.add_argument("-s", "--server", default=argparse.SUPPRESS, help="use this NATS server URL instead")
    show.add_argument("--data", help="data directory of the embedded server (default: a temporary one)")
    show.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: a fresh one)")
    show.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    show.set_defaults(run=None, local=demo.demo)
    return parser


async def run(command: Command, settings: Settings, out: Output, args: argparse.Namespace) -> int:
    async with Session(settings) as session:
        return await command(session, out, args)


def error_code(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and the line of an error the command reports; None for one it does not expect."""
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, QueryError):
        return USAGE, f"bad criteria: {exc}"
    if isinstance(exc, NotFoundError):
        return 3, str(exc)
    if isinstance(exc, PermissionDeniedError):
        return ERROR, f"permission denied: {exc}"
    if isinstance(exc, UnavailableError):
        return ERROR, f"NATS unavailable: {exc}"
    if isinstance(exc, (BrainlessError, StorageError)):
        return ERROR, str(exc)
    if isinstance(exc, OSError):
        return ERROR, describe(exc)
    return None


VALUE_OPTIONS = ("--order-by",)
"""Options whose value may start with '-' (a descending key): ``--order-by -priority``."""
LISTS = ("criteria", "fields")
"""The positional lists that may go on after an option: ``put call UUID --create a=1 b=2``."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    words = list(sys.argv[1:] if argv is None else argv)
    joined: list[str] = []
    for word in words:
        if joined and joined[-1] in VALUE_OPTIONS and word.startswith("-"):
            joined[-1] = f"{joined[-1]}={word}"
        else:
            joined.append(word)
    parser = build_parser()
    args, extra = parser.parse_known_args(joined)
    listed = next((name for name in LISTS if isinstance(getattr(args, name, None), list)), None)
    if extra and (listed is None or any(word.startswith("-") for word in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra and listed is not None:
        getattr(args, listed).extend(extra)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if argv is None:  # run as a program: the log is the command's to set (not a caller's, not a test's)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.CRITICAL,
            format="%(levelname)s %(name)s: %(message)s",
        )
    if args.run is None:
        result: int = args.local(args)
        return result
    try:
        settings = Settings.from_options(vars(args))
        out = Output(json_lines=args.json)
        return asyncio.run(run(args.run, settings, out, args))
    except KeyboardInterrupt:
        return OK if args.command == "watch" else 130
    except BrokenPipeError:
        return OK  # the reader (head, less) had enough
    except Exception as exc:  # one line, never a traceback
        known = error_code(exc)
        if known is None:
            if args.verbose:
                raise
            warn(f"brainless {args.command}: error: {type(exc).__name__}: {exc}")
            return ERROR
        code, message = known
        warn(f"brainless {args.command}: {'error: ' if code != 3 else ''}{message}")
        return code


if __name__ == "__main__":
    sys.exit(main())
