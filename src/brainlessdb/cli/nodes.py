"""``brainless nodes``: the running nodes of the namespace, from their heartbeats (see ``shell.presence``).

The command reads the namespace's heartbeat bucket as it is now; it starts no database of its own, so it
never lists itself. A namespace where no node runs (or ever ran) lists nothing and exits 0.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from brainlessdb.cli.common import OK, Output, iso_time, warn
from brainlessdb.cli.connection import Session
from brainlessdb.shell.presence import nodes_bucket, read_nodes

COLUMNS = (
    "location",
    "node",
    "host",
    "pid",
    "version",
    "started",
    "seen",
    "pending",
    "watch_restarts",
    "copy_lag",
)


def _seen(node: dict[str, Any], now: float) -> str:
    seen = node.get("seen")
    return "" if not isinstance(seen, (int, float)) else f"{max(0.0, now - seen):.1f}s ago"


def _lag(node: dict[str, Any]) -> str:
    lag = node.get("copy_lag")
    if not isinstance(lag, dict) or not lag:
        return ""
    return ", ".join(f"{peer} {'?' if behind is None else behind}" for peer, behind in sorted(lag.items()))


def row(node: dict[str, Any], now: float) -> list[Any]:
    """A node as a row of the table: ``seen`` as how long ago, times in UTC."""
    started = node.get("started")
    return [
        node.get("location", ""),
        node.get("node", ""),
        node.get("host", ""),
        node.get("pid", ""),
        node.get("version", ""),
        iso_time(started * 1000) if isinstance(started, (int, float)) else "",
        _seen(node, now),
        node.get("pending", ""),
        node.get("watch_restarts", ""),
        _lag(node),
    ]


async def cmd_nodes(session: Session, out: Output, args: argparse.Namespace) -> int:
    settings = session.settings
    nodes = await read_nodes(session.storage, nodes_bucket(settings.namespace), settings.timeout)
    if out.json:
        for node in nodes:
            out.record(node)
        return OK
    if not nodes:
        warn(f"no running node in namespace {settings.namespace!r}")
        return OK
    now = time.time()
    out.table(list(COLUMNS), [row(node, now) for node in nodes])
    return OK
