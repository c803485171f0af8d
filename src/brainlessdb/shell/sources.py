"""SourceMonitor: how far each collection's bucket has copied each peer location, and restarts of stalls.

With locations, every second for each followed bucket and each peer, the monitor reads how far the copy
has come (see ``storage.nats.sources``): whether the peer answers through the leaf link, and how many of
its messages the copy still lacks (``lag``). A copy that lacks some while the peer answers and that has
not advanced for ``STALL_AFTER`` seconds is restarted, at most every ``RESTART_EVERY`` seconds (a node of
each location may do it; a restart resumes where the copy stopped, so two are harmless). That bounds the
catch-up after a partition heals to a few seconds, where the server's own retries took up to ~50 s.

It also tells the housekeeper when a delete is still needed (``still_needed``): a delete marker of this
location is removed, and its delete forgotten, only once every other location has copied the marker and
holds no version of the entity of its own. Until then a location cut off, however long, could bring the
entity back: its copy here, or its own key, still holds it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from brainlessdb.errors import StorageError
from brainlessdb.retry import cancel_and_wait
from brainlessdb.storage.base import LocationStorage, Op

logger = logging.getLogger(__name__)

INTERVAL: Final = 1.0  # seconds between two looks at every copy
STALL_AFTER: Final = 2.0  # seconds a copy may lack data without advancing before it is restarted
RESTART_EVERY: Final = 10.0  # seconds between two restarts of one copy by one node


@dataclass
class Copy:
    """What the monitor knows of one bucket's copy of one peer."""

    reachable: bool | None = None
    """Whether the peer answered at the last look (None: not looked at yet)."""
    lag: int | None = None
    """Messages of the peer's own keys not copied yet (None: unknown, the peer did not answer)."""
    restarts: int = 0
    copied: int = 0
    behind_since: float | None = None
    last_restart: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"reachable": self.reachable, "lag": self.lag, "restarts": self.restarts}


class SourceMonitor:
    """Watches the copies of peer locations of the followed buckets; restarts those that stalled."""

    def __init__(
        self,
        storage: LocationStorage,
        buckets: Callable[[], Iterable[str]],
        peers: tuple[str, ...],
        domain: str,
    ) -> None:
        self._storage = storage
        self._buckets = buckets
        self._peers = peers
        self._domain = domain
        self.copies: dict[tuple[str, str], Copy] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="brainlessdb-sources")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            for bucket in list(self._buckets()):
                for peer in self._peers:
                    try:
                        await self.look(bucket, peer)
                    except StorageError as exc:
                        logger.debug("copy of %s in %s not checked: %s", peer, bucket, exc)

    async def look(self, bucket: str, peer: str) -> None:
        """Look at ``bucket``'s copy of ``peer`` once; restart it if it stalled."""
        copy = self.copies.setdefault((bucket, peer), Copy())
        own, copied = await self._storage.source_progress(bucket, peer)
        now = asyncio.get_running_loop().time()
        copy.reachable = own is not None
        if own is None:
            copy.lag, copy.behind_since = None, None
            return
        copy.lag = max(0, own - copied)
        if copy.lag == 0 or copied != copy.copied:
            copy.copied = copied
            copy.behind_since = now if copy.lag else None
            return
        if copy.behind_since is None:
            copy.behind_since = now
            return
        stalled = now - copy.behind_since >= STALL_AFTER * (1 + random.random() / 2)
        recent = copy.last_restart is not None and now - copy.last_restart < RESTART_EVERY
        if stalled and not recent:
            logger.info("copy of %s in %s stalled %d messages behind: restarting it", peer, bucket, copy.lag)
            await self._storage.restart_source(bucket, peer)
            copy.restarts += 1
            copy.last_restart = now
            copy.behind_since = now

    async def still_needed(self, bucket: str, uuid: str, marker: int | None) -> bool:
        """Whether the delete of ``uuid`` must be kept: a peer holds a version of the entity of its own (its
        copy here is not a delete), or has not copied this location's marker (at revision ``marker``), or
        does not answer."""
        for peer in self._peers:
            try:
                copy = await self._storage.get(bucket, f"_{peer}.{uuid}")
                if copy is not None and copy.op is Op.PUT:
                    return True
                if marker is not None:
                    copied = await self._storage.copied_by(bucket, peer, self._domain)
                    if copied is None or copied < marker:
                        return True
            except StorageError:
                return True
        return False

    def stats(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per bucket, per peer: whether it answers, what the copy lacks, how often it was restarted."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (bucket, peer), copy in self.copies.items():
            out.setdefault(bucket, {})[peer] = copy.as_dict()
        return out

    def __repr__(self) -> str:
        state = "running" if self._task is not None and not self._task.done() else "stopped"
        return f"<SourceMonitor {state}, peers={list(self._peers)}, {len(self.copies)} copies>"
