"""``doctor``: is this namespace healthy? Each check is one line: ok, info, warn or fail (exit 3 on a fail).

- the server: its version, JetStream and the JetStream API level;
- each collection's bucket: its settings (history, direct get, replicas, expiry) and the health of its
  replicas;
- the permissions of the account the command connects with, on each bucket (from the server's own account
  of them, ``$SYS.REQ.USER.INFO``, when it answers);
- dead letters: stored values no node can use;
- node clocks: each live node's clock against the server's, from its heartbeat (see ``shell.presence``);
- clock skew: how far stamps run ahead of the time NATS stored them, per writing location (a node whose
  clock is ahead shows here; one that is behind cannot be told from a slow flush);
- the server's ``sync_interval``, which a client cannot read: the advice for deployments that must keep
  acknowledged writes through a power loss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from typing import Any, Final

import nats.errors  # noqa: TID251  # the server's own answers about itself

from brainlessdb.cli.common import NOT_FOUND, OK, Output, stamp_ms
from brainlessdb.cli.connection import Session
from brainlessdb.cli.transfer import read_bucket
from brainlessdb.core.codec import decode_value
from brainlessdb.errors import DecodeError, StorageError
from brainlessdb.shell.presence import nodes_bucket, read_nodes
from brainlessdb.storage.base import Op

DEFAULT_MAX_SKEW: Final = 1.0  # seconds


@dataclass
class Check:
    check: str
    status: str  # ok, info, warn, fail
    detail: str


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a trailing ``>`` one or more."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(wanted) == len(given)


def allowed(rules: dict[str, Any] | None, subject: str) -> bool:
    """Whether ``rules`` (``{"allow": [...], "deny": [...]}``, None for no limits) let ``subject`` through."""
    if not rules:
        return True
    allow = rules.get("allow") or []
    deny = rules.get("deny") or []
    if allow and not any(subject_matches(pattern, subject) for pattern in allow):
        return False
    return not any(subject_matches(pattern, subject) for pattern in deny)


async def request_json(session: Session, subject: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        reply = await session.client.request(subject, b"", timeout=timeout)
        answer = json.loads(reply.data)
    except (nats.errors.Error, asyncio.TimeoutError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


async def server_checks(session: Session) -> list[Check]:
    version = session.client.connected_server_version
    checks = [Check("server", "ok", f"nats-server {version.major}.{version.minor}.{version.patch}")]
    info = await request_json(session, "$JS.API.INFO", session.settings.timeout)
    if info is None or "error" in info:
        error = (info or {}).get("error", {}).get("description", "no answer")
        checks.append(Check("jetstream", "fail", f"JetStream is not available to this account: {error}"))
        return checks
    level = (info.get("api") or {}).get("level")
    limits = info.get("limits") or {}
    detail = f"API level {level}" if level is not None else "API level not reported (server before 2.11)"
    checks.append(Check("jetstream", "ok", f"{detail}; {info.get('streams', 0)} streams in the account"))
    if limits.get("max_storage") not in (None, -1, 0):
        checks.append(
            Check("jetstream limits", "info", f"account storage limit {limits['max_storage']} bytes")
        )
    return checks


async def bucket_checks(session: Session, collections: list[str]) -> list[Check]:
    checks = []
    for name in collections:
        info = await session.stream(name)
        config, cluster = info.config, info.cluster
        settings = (
            f"history {config.max_msgs_per_subject}, replicas {config.num_replicas}, "
            f"direct get {'on' if config.allow_direct else 'off'}"
        )
        status = "ok"
        if config.max_age:
            status = "warn"
            settings += f", values expire after {config.max_age:g}s (entities would vanish)"
        if cluster is not None and (config.num_replicas or 1) > 1:
            if not cluster.leader:
                status = "fail"
                settings += ", no leader"
            behind = [str(r.name) for r in cluster.replicas or [] if not r.current]
            if behind:
                status = "fail" if status == "fail" else "warn"
                settings += f", replicas behind: {', '.join(behind)}"
        checks.append(Check(f"bucket {name}", status, settings))
    return checks


async def permission_checks(session: Session, collections: list[str]) -> list[Check]:
    answer = await request_json(session, "$SYS.REQ.USER.INFO", session.settings.timeout)
    data = (answer or {}).get("data")
    if not isinstance(data, dict):
        return [Check("permissions", "info", "not reported by the server (no answer on $SYS.REQ.USER.INFO)")]
    permissions = data.get("permissions") or {}
    publish, subscribe = permissions.get("publish"), permissions.get("subscribe")
    checks = []
    if not allowed(subscribe, "_INBOX.x"):
        checks.append(Check("permissions", "fail", "may not subscribe to _INBOX.>: no reply can arrive"))
    for name in collections:
        bucket = session.settings.bucket(name)
        stream = f"KV_{bucket}"
        read = all(
            allowed(publish, subject)
            for subject in (f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.x")
        )
        write = allowed(publish, f"$KV.{bucket}.x")
        if read and write:
            checks.append(Check(f"permissions {name}", "ok", "read and write"))
        elif read:
            checks.append(Check(f"permissions {name}", "warn", "read only: this account cannot write"))
        else:
            checks.append(Check(f"permissions {name}", "fail", "this account cannot watch the bucket"))
    return checks or [Check("permissions", "ok", "no limits on this account")]


async def data_checks(session: Session, collections: list[str], max_skew: float) -> list[Check]:
    if not collections:
        return []
    db = await session.database()
    checks = []
    ahead: dict[str, float] = {}
    for name in collections:
        collection = db.collection(name)
        await collection.load()
        letters = collection.sync.dead_letter_count
        if letters:
            reasons = {letter.reason for letter in collection.sync.inbox.dead_letters}
            example = sorted(reasons)[0]
            checks.append(
                Check(f"dead letters {name}", "fail", f"{letters} unusable stored values (e.g. {example})")
            )
        else:
            checks.append(Check(f"dead letters {name}", "ok", "none"))
        for entry in await read_bucket(session.storage, session.settings.bucket(name)):
            if entry.op is not Op.PUT:
                continue
            try:
                newest = decode_value(entry.value, time_ns=entry.time_ns).max_stamp()
            except DecodeError:
                continue
            if newest is None or not newest[1]:
                continue  # another client's value: stamped with the time NATS stored it
            seconds = (stamp_ms(newest) - entry.time_ns / 1_000_000) / 1000
            ahead[newest[1]] = max(ahead.get(newest[1], seconds), seconds)
    if ahead:
        worst = max(ahead, key=lambda node: ahead[node])
        detail = ", ".join(f"{node} {max(0.0, ahead[node]):.3f}s" for node in sorted(ahead))
        status = "fail" if ahead[worst] > max_skew else "ok"
        checks.append(Check("clock skew", status, f"stamps ahead of NATS time (max {max_skew:g}s): {detail}"))
    else:
        checks.append(Check("clock skew", "info", "no stamped values to compare"))
    return checks


async def node_checks(session: Session, max_skew: float) -> list[Check]:
    """The clock of every live node against the server's: its heartbeat's ``time`` less the time the
    server stored it (``seen``), which is the skew plus the write's trip."""
    settings = session.settings
    try:
        nodes = await read_nodes(session.storage, nodes_bucket(settings.namespace), settings.timeout)
    except StorageError as exc:
        return [Check("node clocks", "info", f"the nodes' heartbeats cannot be read: {exc}")]
    skews = {
        str(node.get("node")): float(node["time"]) - float(node["seen"])
        for node in nodes
        if isinstance(node.get("time"), (int, float)) and isinstance(node.get("seen"), (int, float))
    }
    if not skews:
        return [Check("node clocks", "info", "no live node to compare")]
    worst = max(skews, key=lambda node: abs(skews[node]))
    detail = ", ".join(f"{node} {skews[node]:+.3f}s" for node in sorted(skews))
    status = "fail" if abs(skews[worst]) > max_skew else "ok"
    return [
        Check("node clocks", status, f"live nodes' clocks against the server's (max {max_skew:g}s): {detail}")
    ]


SYNC_ADVICE: Final = (
    "not visible to a client; where acknowledged writes must survive a power loss, set "
    "`sync_interval: always` in the server's jetstream block (the default syncs every 2 minutes)"
)


async def cmd_doctor(session: Session, out: Output, args: argparse.Namespace) -> int:
    collections = await session.collections()
    checks = await server_checks(session)
    if all(check.status != "fail" for check in checks):
        checks += await bucket_checks(session, collections)
        checks += await permission_checks(session, collections)
        checks += await data_checks(session, collections, args.max_skew)
        checks += await node_checks(session, args.max_skew)
    checks.append(Check("sync_interval", "info", SYNC_ADVICE))
    if not collections:
        checks.append(Check("collections", "info", f"namespace {session.settings.namespace!r} has none"))
    if out.json:
        for check in checks:
            out.record({"check": check.check, "status": check.status, "detail": check.detail})
    else:
        out.table(["check", "status", "detail"], [[c.check, c.status, c.detail] for c in checks])
    return NOT_FOUND if any(check.status == "fail" for check in checks) else OK
