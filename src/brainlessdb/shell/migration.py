"""Collections of the namespace: found by listing buckets, and schemas moved from the old schema bucket.

Each collection's schema lives in its own bucket, under the reserved key ``_schema``, so that a user
allowed one collection's bucket needs nothing else. Earlier versions kept every schema of a namespace in
one bucket, ``{namespace}--schema``, one key per collection: ``start()`` copies each of them into its
collection's bucket (a create, so a schema already there is kept) and leaves the old bucket for nodes of
earlier versions still running. A storage that can list buckets (``list_buckets``) tells which collections
the namespace holds (with locations, here and at the other locations that answer); one that cannot, or a
user who may not list them, finds each collection at first use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from brainlessdb.core import names
from brainlessdb.errors import ConflictError, PermissionDeniedError, StorageError
from brainlessdb.storage.base import CaughtUp, Entry, Op, Storage, Write

logger = logging.getLogger(__name__)

OLD_BUCKET_WAIT: Final = 10.0
"""Seconds the replay of the old schema bucket may take (it holds one small key per collection)."""


async def stored_collections(storage: Storage, namespace: str, peers: tuple[str, ...] = ()) -> list[str]:
    """The collections whose buckets the namespace holds here, and at the ``peers`` (other locations)
    that answer: none if the storage cannot list them."""
    list_buckets = getattr(storage, "list_buckets", None)
    if list_buckets is None:
        return []
    buckets: set[str] = set()
    try:
        buckets.update(await list_buckets(f"{namespace}-"))
    except PermissionDeniedError as exc:
        logger.info("%s: buckets cannot be listed (%s): collections are found at first use", namespace, exc)
        return []
    for peer in peers:
        try:
            buckets.update(await list_buckets(f"{namespace}-", domain=peer))
        except StorageError as exc:  # unreachable now (a partition): its collections come at first use
            logger.info("%s: buckets of location %s cannot be listed now: %s", namespace, peer, exc)
    found = (names.collection_of_bucket(namespace, bucket) for bucket in sorted(buckets))
    return [name for name in found if name is not None]


async def move_schemas(storage: Storage, namespace: str) -> list[str]:
    """Copy the schemas of the old schema bucket into their collections' buckets; the collections named.

    Nothing happens when the namespace has no such bucket, or when this user may not read it.
    """
    old = names.schema_bucket(namespace)
    try:
        if not await storage.open_bucket(old, create=False):
            return []
        entries = await asyncio.wait_for(_last_entries(storage, old), OLD_BUCKET_WAIT)
    except PermissionDeniedError as exc:
        logger.info("%s: the old schema bucket cannot be read (%s): nothing moved", namespace, exc)
        return []
    moved = []
    for entry in entries:
        if entry.op is not Op.PUT or not names.is_collection_name(entry.key):
            continue
        bucket = names.bucket_name(namespace, entry.key)
        try:
            await storage.open_bucket(bucket)
            [result] = await storage.write(bucket, [Write(names.SCHEMA_KEY, entry.value, 0)])
        except PermissionDeniedError:
            continue  # a collection this user may not write: moved by one who may
        if isinstance(result, int):
            logger.info("%s: schema of %r moved into its bucket %s", namespace, entry.key, bucket)
        elif not isinstance(result, (ConflictError, PermissionDeniedError)):
            raise result  # a conflict: the bucket has a schema already, which is kept
        moved.append(entry.key)
    return moved


async def _last_entries(storage: Storage, bucket: str) -> list[Entry]:
    """The last entry of every key of ``bucket`` (its replay, up to the ``CaughtUp``)."""
    entries: list[Entry] = []
    batches = storage.watch_batches(bucket)
    try:
        async for batch in batches:
            for event in batch:
                if isinstance(event, CaughtUp):
                    return entries
                if isinstance(event, Entry):
                    entries.append(event)
    finally:
        close = getattr(batches, "aclose", None)
        if close is not None:
            await close()  # stops the watch at once, rather than when the iterator is collected
    return entries
