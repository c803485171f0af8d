"""KV buckets as JetStream streams: the settings a bucket is created with, binding one, listing them.

A bucket ``b`` is the stream ``KV_b`` with subjects ``$KV.b.<key>``, created here with the settings a KV
bucket has (ADR-8) plus direct get, and without the per-message TTL nats-py's ``create_key_value`` always
turns on. Existing buckets are bound and never reconfigured.
"""

from __future__ import annotations

import json
import logging
from typing import Final

import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX, DiscardPolicy, StorageType, StreamConfig, StreamInfo

from brainlessdb.storage.nats.errors import ERR_STREAM_NAME_IN_USE

logger = logging.getLogger(__name__)

DUPLICATE_WINDOW: Final = 120.0  # seconds, as every KV bucket has


def stream_config(bucket: str, *, replicas: int, history: int, expiring: bool = False) -> StreamConfig:
    """The stream of a new bucket: KV settings, direct get on, per-message TTL only if ``expiring``."""
    return StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        max_msgs_per_subject=history,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        max_msg_size=-1,
        max_consumers=-1,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        num_replicas=replicas,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW,
        allow_msg_ttl=expiring or None,
    )


async def bind_stream(
    js: JetStreamContext, bucket: str, *, create: bool, replicas: int, history: int, expiring: bool = False
) -> StreamInfo | None:
    """The stream of ``bucket``, created first if absent and ``create``; None if absent and not created.

    Raises nats errors as they come (the caller maps them).
    """
    stream = f"KV_{bucket}"
    try:
        return await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        if not create:
            return None
    try:
        config = stream_config(bucket, replicas=replicas, history=history, expiring=expiring)
        info = await js.add_stream(config)
        if info.did_create:
            logger.info("created bucket %s (replicas=%d)", bucket, replicas)
        return info
    except nats.js.errors.APIError as exc:
        # Another node created it first, with other settings: bind what it made.
        if exc.err_code != ERR_STREAM_NAME_IN_USE:
            raise
        return await js.stream_info(stream)


async def list_bucket_names(nc: Client, prefix: str, timeout: float) -> list[str]:
    """The names of the existing buckets that start with ``prefix``, sorted (raises nats errors)."""
    names: list[str] = []
    offset = 0
    while True:
        request = json.dumps({"offset": offset}).encode()
        reply = await nc.request(f"{DEFAULT_PREFIX}.STREAM.NAMES", request, timeout=timeout)
        response = json.loads(reply.data)
        if "error" in response:
            nats.js.errors.APIError.from_error(response["error"])
        page: list[str] = response.get("streams") or []
        names.extend(page)
        offset += len(page)
        if not page or offset >= int(response.get("total", 0)):
            break
    start = f"KV_{prefix}"
    return sorted(name[3:] for name in names if name.startswith(start))
