"""The NATS wire details the KV storage reads and writes: header names, KV operations, ack reply subjects.

Shared by the watcher (which parses every message it receives), the direct reads of ``kv`` and the
publisher. Pure functions of strings and dicts: nothing here talks to a server.
"""

from __future__ import annotations

import datetime
from typing import Final

from brainlessdb.storage.base import Op

KV_OPERATION: Final = "KV-Operation"
MARKER_REASON: Final = "Nats-Marker-Reason"
STATUS: Final = "Status"
LAST_CONSUMER: Final = "Nats-Last-Consumer"
CONSUMER_STALLED: Final = "Nats-Consumer-Stalled"
TIME_STAMP: Final = "Nats-Time-Stamp"

_OPERATIONS: Final = {"DEL": Op.DELETE, "PURGE": Op.PURGE}
# Limit markers the server writes itself (ADR-48): an expiry or purge removes the key, a remove deletes it.
_MARKER_REASONS: Final = {"MaxAge": Op.PURGE, "Purge": Op.PURGE, "Remove": Op.DELETE}


def parse_ack_reply(reply: str) -> tuple[int, int, int] | None:
    """The stream sequence, consumer sequence and time (ns) in a JetStream message's reply subject.

    None if ``reply`` is not one. Two forms exist: ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.
    <cseq>.<ns>.<pending>`` and, since server 2.9, ``$JS.ACK.<domain>.<account hash>.<stream>...<pending>.
    <random>`` (11 or more tokens). Called for every message a watch receives: one ``split``, three ints.
    """
    tokens = reply.split(".")
    count = len(tokens)
    if count == 9:
        start = 5
    elif count >= 11:
        start = 7
    else:
        return None
    if tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    try:
        return int(tokens[start]), int(tokens[start + 1]), int(tokens[start + 2])
    except ValueError:
        return None


def operation_of(headers: dict[str, str] | None) -> Op:
    """The KV operation a message's headers declare (a plain put when they declare none)."""
    if not headers:
        return Op.PUT
    operation = headers.get(KV_OPERATION)
    if operation is not None:
        return _OPERATIONS.get(operation, Op.PUT)
    reason = headers.get(MARKER_REASON)
    if reason is not None:
        return _MARKER_REASONS.get(reason, Op.PURGE)
    return Op.PUT


def time_ns_of(headers: dict[str, str] | None, fallback: datetime.datetime | None = None) -> int:
    """A stored message's time in ns since the epoch, from its ``Nats-Time-Stamp`` header if it has one."""
    stamp = (headers or {}).get(TIME_STAMP)
    if stamp is not None:
        # RFC 3339 with nanoseconds ("2026-01-02T03:04:05.123456789Z"): datetime keeps only microseconds.
        whole, _, fraction = stamp.rstrip("Z").partition(".")
        seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc).timestamp()
        return int(seconds) * 1_000_000_000 + int((fraction or "0")[:9].ljust(9, "0"))
    if fallback is not None:
        return int(fallback.timestamp()) * 1_000_000_000 + fallback.microsecond * 1000
    return 0
