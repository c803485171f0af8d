"""How far a bucket's copy of a peer location has come, and restarting a source that stalled.

A source can stall after a partition heals: the server waits up to 30 s on a consumer it asked the peer
for through the dead link, then backs off, so a catch-up measured between 0.1 and 50 s. Its own report
(``lag``, ``error``) stayed 0 and None meanwhile, so it is not trusted here. Progress is read from the
data instead: the sequence of the peer's newest own key, asked of the peer's JetStream API through the
leaf link, against the origin sequence that the newest copied key carries in its ``Nats-Stream-Source``
header. Restarting a stalled source (removing it and adding it again) makes the server resume it at once
from the last sequence it copied: no gap, no duplicate.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from brainlessdb.storage.nats.buckets import peer_source

SOURCE_HEADER = "Nats-Stream-Source"


async def _last_message(
    nc: Client, api: str, bucket: str, subject: str, timeout: float
) -> dict[str, Any] | None:
    """The last message of ``bucket``'s stream on ``subject`` (a wildcard), asked of ``api``; None if the
    stream has none. Raises nats errors (``NoRespondersError`` when nobody answers that API)."""
    request = json.dumps({"last_by_subj": subject}).encode()
    reply = await nc.request(f"{api}.STREAM.MSG.GET.KV_{bucket}", request, timeout=timeout)
    response = json.loads(reply.data)
    if "error" in response:
        if response["error"].get("code") == 404:
            return None
        raise nats.errors.Error(str(response["error"]))
    message: dict[str, Any] = response.get("message") or {}
    return message or None


async def peer_own_sequence(nc: Client, bucket: str, peer: str, timeout: float) -> int | None:
    """The stream sequence of the newest own key of ``bucket`` at ``peer`` (0: none); None when the peer
    does not answer (the link is down)."""
    try:
        message = await _last_message(nc, f"$JS.{peer}.API", bucket, f"$KV.{bucket}.*", timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return None
    return 0 if message is None else int(message["seq"])


async def copied_sequence(
    nc: Client, bucket: str, copied_from: str, timeout: float, api: str = "$JS.API"
) -> int:
    """The sequence, in ``copied_from``'s stream, of the newest key of ``copied_from`` that ``bucket`` holds
    a copy of (0: none) — here, or in the stream behind ``api`` (another location's). Raises nats errors
    (``NoRespondersError`` when nobody answers that API)."""
    message = await _last_message(nc, api, bucket, f"$KV.{bucket}._{copied_from}.*", timeout)
    if message is None or not message.get("hdrs"):
        return 0
    for line in base64.b64decode(message["hdrs"]).decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == SOURCE_HEADER:
            fields = value.split()
            if len(fields) > 1 and fields[1].isdigit():
                return int(fields[1])
    return 0


async def restart_source(js: JetStreamContext, bucket: str, peer: str) -> None:
    """Remove ``bucket``'s source of ``peer`` and add it again: the server resumes it at once."""
    stream = f"KV_{bucket}"
    api = f"$JS.{peer}.API"
    info = await js.stream_info(stream)
    kept = [s for s in info.config.sources or [] if s.external is None or s.external.api != api]
    info.config.sources = kept
    await js.update_stream(info.config)
    info.config.sources = [*kept, peer_source(bucket, peer)]
    await js.update_stream(info.config)
