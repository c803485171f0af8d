"""``brainless console``: serve the read-only web console until Ctrl-C or SIGTERM.

It listens on loopback (``--listen 127.0.0.1:8080``, the default); any other address is refused unless
``--allow-remote`` is given, and then only with a token (``--console-token`` or
``$BRAINLESS_CONSOLE_TOKEN``), which every request for data must carry. The global options (``--server``,
``--namespace``, credentials) say what it reads, as for every other subcommand.

The address it serves is the one line on stdout (``{"url": ...}`` with ``--json``; with port 0 it names the
port the system chose); notes go to stderr. aiohttp (the ``console`` extra) is imported only here, when the
console runs, so the rest of the command works without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from typing import Final

from brainlessdb.cli.common import OK, CliError, Output, UsageError, warn
from brainlessdb.cli.connection import Session

DEFAULT_LISTEN: Final = "127.0.0.1:8080"
TOKEN_VARIABLE: Final = "BRAINLESS_CONSOLE_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The console's own options (the global ones are added by the command)."""
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on ({DEFAULT_LISTEN}; [::1]:8080 for IPv6; port 0 for a free one)",
    )
    parser.add_argument(
        "--console-token",
        metavar="TOKEN",
        help=f"require this token of every request for data (${TOKEN_VARIABLE}; prefer the variable)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow an address other machines reach (needs a token)",
    )


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:8080`` as ``("127.0.0.1", 8080)``, ``[::1]:8080`` as ``("::1", 8080)``."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not host:
        raise UsageError(f"--listen {text!r} is not HOST:PORT (such as {DEFAULT_LISTEN})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--listen {text!r}: an IPv6 address goes in brackets, as in [::1]:8080")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--listen {text!r}: {port_text!r} is not a port") from None
    if not host or not 0 <= port < 65536:
        raise UsageError(f"--listen {text!r} is not HOST:PORT (such as {DEFAULT_LISTEN})")
    return host, port


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def cmd_console(session: Session, out: Output, args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    token = args.console_token or os.environ.get(TOKEN_VARIABLE) or None
    try:
        from aiohttp import web

        from brainlessdb.console.app import is_loopback_host, make_app
        from brainlessdb.console.events import EventHub
        from brainlessdb.console.reader import Reader
    except ImportError as exc:
        raise CliError(f"the console needs aiohttp ({exc}): pip install 'brainlessdb[console]'") from None
    remote = not is_loopback_host(host)
    if remote and not args.allow_remote:
        raise UsageError(
            f"--listen {args.listen}: not a loopback address, so other machines could reach the console; "
            "--allow-remote (with a token) allows it"
        )
    if remote and token is None:
        raise UsageError(f"--allow-remote needs a token (--console-token or ${TOKEN_VARIABLE})")
    reader = Reader(session, EventHub())
    await reader.start()
    runner = web.AppRunner(
        make_app(reader, token=token, allow_remote=remote), access_log=None, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise CliError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
        bound = runner.addresses[0][1] if runner.addresses else port
        url = url_of(host, bound)
        if out.json:
            out.record({"url": url})
        else:
            out.line(url)
        access = "with a token" if token else "without a token"
        warn(f"console of namespace {session.settings.namespace!r} at {url} ({access}); Ctrl-C stops")
        await stopped()
    finally:
        await runner.cleanup()
    return OK


async def stopped() -> None:
    """Return on Ctrl-C or SIGTERM (what systemd, Docker and Kubernetes send)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
