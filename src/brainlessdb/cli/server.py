"""``brainless server``: a local nats-server with JetStream until Ctrl-C, SIGTERM or SIGHUP.

What systemd, Docker and Kubernetes send to stop a service (SIGTERM) stops the server gracefully, as
Ctrl-C does; a port that is taken, or a server that fails to start, is said in one line (exit 1).
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import threading
from types import FrameType

from brainlessdb.cli.common import ERROR, OK, warn
from brainlessdb.embedded import LOOPBACK, EmbeddedServer, ServerError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def port_taken(port: int) -> bool:
    """Whether something listens on ``port`` of loopback already (or may not be bound at all)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def start_failure(server: EmbeddedServer, exc: ServerError) -> str:
    """The one line that says why the server did not start: its fatal log line, else the error's first."""
    for line in reversed(server.log_tail(40).splitlines()):
        if "[FTL]" in line or "[ERR]" in line:
            return line.split("] ", 1)[-1].strip()
    return str(exc).splitlines()[0]


def cmd_server(args: argparse.Namespace) -> int:
    port: int = args.port
    if not 0 < port < 65536:
        warn(f"error: port {port} is not a TCP port")
        return ERROR
    if port_taken(port):
        warn(f"error: port {port} on {LOOPBACK} is already in use (another nats-server?); try --port")
        return ERROR
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    server = EmbeddedServer(store_dir=args.data, port=port)
    try:
        try:
            server.start()
        except ServerError as exc:
            warn(f"error: nats-server did not start: {start_failure(server, exc)}")
            return ERROR
        print(
            f"nats-server {server.url} (pid {server.pid}), JetStream data in {server.store_dir}; "
            "Ctrl-C or SIGTERM stops it",
            flush=True,
        )
        while server.is_running and not stop.wait(0.2):
            pass
        if not stop.is_set():
            warn(f"error: nats-server exited by itself; see {server.store_dir / (server.name + '.log')}")
            return ERROR
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f"nats-server stopped ({signal.Signals(received[0]).name})", flush=True)
    return OK
