"""KV buckets as JetStream streams: the settings a bucket is created with, binding one, listing them.

A bucket ``b`` is the stream ``KV_b`` with subjects ``$KV.b.<key>``, created here with the settings a KV
bucket has (ADR-8) plus direct get, and without the per-message TTL nats-py's ``create_key_value`` always
turns on. Existing buckets are bound and never reconfigured, but for one thing: the sources of peers.

**Locations.** With peers (the JetStream domains of other locations, joined by leaf nodes), a bucket
*sources* each peer's bucket of the same name, but only the peer's own keys (one token: a uuid, or a
reserved key such as ``_schema``), each stored under the peer's prefix: the peer's ``$KV.b.<key>`` is
copied here as ``$KV.b._<peer>.<key>``. A copied key has two tokens, so no source ever copies it again:
nothing can loop. Every source starts at the peer's first message (``opt_start_seq: 1``): without it the
server starts a new source at this stream's last message time when this stream has dropped messages,
skipping the peer's older data for good while reporting no error. An existing bucket gains the sources
of new peers; a source of a peer copying its keys in any other way is refused (it could loop, or
overwrite this location's keys).
"""

from __future__ import annotations

import json
import logging
from typing import Final

import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DEFAULT_PREFIX,
    DiscardPolicy,
    ExternalStream,
    StorageType,
    StreamConfig,
    StreamInfo,
    StreamSource,
    SubjectTransform,
)

from brainlessdb.errors import ConfigurationError
from brainlessdb.storage.nats.errors import ERR_STREAM_NAME_IN_USE

logger = logging.getLogger(__name__)

DUPLICATE_WINDOW: Final = 120.0  # seconds, as every KV bucket has


def peer_source(bucket: str, peer: str) -> StreamSource:
    """The source copying the own keys of ``bucket`` in the domain ``peer`` here, as ``_<peer>.<key>``."""
    return StreamSource(
        name=f"KV_{bucket}",
        opt_start_seq=1,
        external=ExternalStream(api=f"$JS.{peer}.API"),
        subject_transforms=[
            SubjectTransform(src=f"$KV.{bucket}.*", dest=f"$KV.{bucket}._{peer}.{{{{wildcard(1)}}}}")
        ],
    )


def _source_peer(bucket: str, source: StreamSource) -> str:
    """The peer a source of ``bucket`` copies, checked to be one made by ``peer_source``."""
    api = source.external.api if source.external is not None else ""
    peer = api[len("$JS.") : -len(".API")] if api.startswith("$JS.") and api.endswith(".API") else ""
    expected = peer_source(bucket, peer) if peer else None
    if (
        expected is None
        or source.name != expected.name
        or source.filter_subject
        or [(t.src, t.dest) for t in source.subject_transforms or []]
        != [(t.src, t.dest) for t in expected.subject_transforms or []]
    ):
        raise ConfigurationError(
            f"bucket {bucket!r} has a source that does not copy a peer's own keys under its prefix "
            f"({source.name}, {api or 'no external API'}): such a source could loop or overwrite this "
            "location's keys"
        )
    return peer


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


async def source_peers(js: JetStreamContext, bucket: str, peers: tuple[str, ...]) -> list[str]:
    """Make the existing ``bucket`` source each of ``peers`` (adding what it lacks, removing nothing); the
    peers added. ``StorageError`` for a source that could loop; nats errors as they come."""
    info = await js.stream_info(f"KV_{bucket}")
    sources = list(info.config.sources or [])
    sourced = {_source_peer(bucket, source) for source in sources}
    missing = [peer for peer in peers if peer not in sourced]
    if missing:
        info.config.sources = sources + [peer_source(bucket, peer) for peer in missing]
        await js.update_stream(info.config)
        logger.info("bucket %s now sources %s", bucket, ", ".join(missing))
    return missing


async def list_bucket_names(nc: Client, prefix: str, timeout: float, api: str = DEFAULT_PREFIX) -> list[str]:
    """The names of the existing buckets that start with ``prefix``, sorted (raises nats errors); ``api``:
    the JetStream API asked (``$JS.<domain>.API`` for another location's)."""
    names: list[str] = []
    offset = 0
    while True:
        request = json.dumps({"offset": offset}).encode()
        reply = await nc.request(f"{api}.STREAM.NAMES", request, timeout=timeout)
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
