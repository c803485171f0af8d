"""What the first argument of ``Brainless(...)`` may be, and the storage made of it.

- ``None``: a new ``MemoryStorage`` (owned: closed by ``stop()``).
- any ``Storage`` (an object with its methods, see ``is_storage``): used as it is (not owned).
- a server URL or a list of URLs: a connection opened here (owned), ``UnavailableError`` if no server
  accepts one within ``connect_timeout`` seconds.
- a connected nats-py client (it has a callable ``jetstream``): a ``NatsKVStorage`` on it (not owned: the
  client's connection stays open).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from brainlessdb.errors import UnavailableError
from brainlessdb.storage.base import STORAGE_METHODS, Storage, is_storage
from brainlessdb.storage.memory import MemoryStorage
from brainlessdb.storage.nats.errors import redact_servers
from brainlessdb.storage.nats.kv import NatsKVStorage


async def open_storage(
    source: Any,
    *,
    replicas: int,
    history: int,
    nats_options: dict[str, Any],
    connect_timeout: float,
) -> tuple[Storage, bool]:
    """The storage ``source`` stands for, and whether it is owned (to be closed with the database)."""
    if source is None:
        return MemoryStorage(), True
    if isinstance(source, str) or (
        isinstance(source, Sequence) and all(isinstance(url, str) for url in source)
    ):
        servers = source if isinstance(source, str) else list(source)
        connecting = NatsKVStorage.connect(servers, replicas=replicas, history=history, **nats_options)
        try:
            storage = await asyncio.wait_for(connecting, connect_timeout)
        except asyncio.TimeoutError:
            # Reconnecting for ever is right once connected, not for the first connection.
            raise UnavailableError(
                f"no NATS server of {redact_servers(servers)} accepted a connection within {connect_timeout}s"
            ) from None
        return storage, True
    if is_storage(source):
        return source, False
    if callable(getattr(source, "jetstream", None)):
        return NatsKVStorage(source, replicas=replicas, history=history), False
    raise TypeError(
        f"expected a Storage (an object with the methods {', '.join(STORAGE_METHODS)}), a connected nats "
        f"client, a server URL, a list of URLs, or None; got {source!r}"
    )
