"""Claims: ``Collection.update_if`` carried out against the storage, within the database's ``claim_timeout``.

One claim: read the entity's last entry, apply it to memory, check the criteria against it, write the
stored version plus the changes with compare-and-set on its revision. A conflict (another write came
first) starts again from the read, so the condition is always checked against the version the write
replaces; nothing is ever merged past it. The pure steps are in ``core.claims``; this module does the
awaiting, and never changes memory before NATS acknowledged the write.

A write that got no acknowledgement (the connection dropped, the server died) may or may not have been
stored. The claim then keeps reading until it knows: its own version stored (won), the key still at the
revision it expected (the same bytes are sent again: both expect that revision, so at most one is stored),
or the key moved on without it (it can never be stored now: checked again from there). If the timeout
comes first, ``UnavailableError`` says the outcome is unknown, and the write is remembered: the same claim
made again settles it first, answering True if it was stored after all.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final

from brainlessdb.core.claims import Attempt, Claim, Outcome, take_stored, won
from brainlessdb.core.clock import HybridLogicalClock
from brainlessdb.core.collection import Collection
from brainlessdb.errors import ConflictError, FlushError, UnavailableError
from brainlessdb.retry import Backoff
from brainlessdb.storage.base import Storage, Write

CONFLICTS_MAX: Final = 64
"""Conflicts one claim goes through (each one means another write came first) before ``ConflictError``."""
RETRY_START: Final = 0.05  # seconds before reading again after NATS did not answer
RETRY_MAX: Final = 0.5
IN_DOUBT_KEPT: Final = 1000
"""Unacknowledged claim writes remembered for a retry to settle (the oldest are forgotten first)."""


class Claims:
    """The conditional updates of one database, through its storage."""

    def __init__(
        self,
        storage: Storage,
        clock: HybridLogicalClock,
        timeout: float,
        flush: Callable[[Collection[Any]], Coroutine[Any, Any, None]],
        ready: Callable[[Collection[Any]], Coroutine[Any, Any, None]],
    ) -> None:
        self.timeout = timeout
        self._storage = storage
        self._clock = clock
        self._flush = flush
        self._ready = ready
        self._opened: set[str] = set()
        self._in_doubt: dict[tuple[str, str], Attempt] = {}
        self.stats = {"won": 0, "lost": 0, "conflicts": 0, "unknown": 0}

    async def update_if(self, collection: Collection[Any], bucket: str, claim: Claim) -> bool:
        """Write ``claim`` if the stored version meets its conditions; True once NATS acknowledged it."""
        key = (bucket, claim.uuid)
        doubt = self._in_doubt.pop(key, None)
        if doubt is not None and not doubt.claim.same_as(claim):
            doubt = None  # another update of the entity: it is checked against whatever is stored now
        progress = _Progress(doubt)
        try:
            # One timeout for the whole claim: every read, write and pause below is cut at the deadline.
            if sys.version_info >= (3, 11):
                deadline = asyncio.get_running_loop().time() + self.timeout
                async with asyncio.timeout_at(deadline):
                    result = await self._run(collection, bucket, claim, progress)
            else:
                result = await asyncio.wait_for(self._run(collection, bucket, claim, progress), self.timeout)
        except asyncio.TimeoutError:
            if progress.doubt is not None:
                self.stats["unknown"] += 1
                self._remember(key, progress.doubt)
            raise self._unavailable(claim, progress) from progress.cause
        finally:
            collection.sync.inbox.expect_own(claim.uuid, None)
        self.stats["won" if result else "lost"] += 1
        return result

    async def _run(self, collection: Collection[Any], bucket: str, claim: Claim, progress: _Progress) -> bool:
        sync, uuid = collection.sync, claim.uuid
        retry = Backoff(RETRY_START, RETRY_MAX)
        conflicts = 0
        await self._ready(collection)  # a collection first used now is loaded first (within the timeout)
        if bucket not in self._opened:
            await self._storage.open_bucket(bucket)
            self._opened.add(bucket)
        while sync.is_unwritten(uuid):
            # Added here and never acknowledged: written first, so that there is a stored version to check.
            try:
                await self._flush(collection)
            except FlushError as exc:
                progress.cause = exc.errors.get(f"{collection.name}/{uuid}")
                if not sync.is_unwritten(uuid):
                    break
                if progress.cause is not None and not isinstance(progress.cause, UnavailableError):
                    raise progress.cause from exc
            if sync.is_unwritten(uuid):
                await asyncio.sleep(retry.next())
        while True:
            try:
                entry = await self._storage.get(bucket, uuid)
            except UnavailableError as exc:
                progress.cause = exc
                await asyncio.sleep(retry.next())
                continue
            attempt: Attempt | None = None
            doubt = progress.doubt
            if doubt is not None:
                outcome = doubt.outcome(entry)
                if outcome is Outcome.LANDED:
                    assert entry is not None
                    if entry.value == doubt.value:
                        won(sync, doubt, entry.revision)
                    else:
                        sync.inbox.apply(entry)  # a later version, still holding the claim's changes
                    return True
                if outcome is Outcome.PENDING:
                    attempt = doubt  # the same write again: at most one of the two can be stored
                else:
                    progress.doubt = None  # it can never be stored now
            if attempt is None:
                record, revision = take_stored(sync, claim, entry)
                if not claim.matches(record):
                    return False
                attempt = Attempt.build(claim, record, revision, self._clock)
            sync.inbox.expect_own(uuid, attempt.value)  # the watch may bring it before the acknowledgement
            before, progress.doubt = progress.doubt, attempt  # cut by the deadline, its outcome is unknown
            ttl = sync.outbox.ttl_of(attempt.value)  # an expiring entity keeps its TTL in the bucket
            write = Write(uuid, attempt.value, attempt.expected, ttl=ttl)
            [result] = await self._storage.write(bucket, [write])
            if isinstance(result, int):
                won(sync, attempt, result)
                return True
            if isinstance(result, UnavailableError):
                progress.cause = result  # sent, unacknowledged: it may have been stored; a read tells
                await asyncio.sleep(retry.next())
                continue
            # Refused: this write is not stored (a write sent before it may still be, until a read tells).
            progress.doubt = before
            if isinstance(result, ConflictError):
                # Another write came first: read and check again what it stored, never merge past it.
                conflicts += 1
                self.stats["conflicts"] += 1
                if conflicts > CONFLICTS_MAX:
                    raise result
                continue
            raise result

    def _unavailable(self, claim: Claim, progress: _Progress) -> UnavailableError:
        what = f"update_if of {claim.collection}/{claim.uuid}"
        if progress.doubt is None:
            return UnavailableError(
                f"{what}: NATS did not answer within {self.timeout:g}s; nothing was written"
            )
        return UnavailableError(
            f"{what}: NATS did not answer within {self.timeout:g}s; a write was sent and its outcome is "
            "unknown (the same update_if made again answers True if it was stored)"
        )

    def _remember(self, key: tuple[str, str], attempt: Attempt) -> None:
        in_doubt = self._in_doubt
        in_doubt[key] = attempt
        while len(in_doubt) > IN_DOUBT_KEPT:
            del in_doubt[next(iter(in_doubt))]

    def __repr__(self) -> str:
        stats = ", ".join(f"{count} {name}" for name, count in self.stats.items())
        return f"<Claims timeout {self.timeout:g}s: {stats}, {len(self._in_doubt)} in doubt>"


class _Progress:
    """Where one claim is: the write whose outcome is unknown (if any), and why NATS last failed."""

    __slots__ = ("cause", "doubt")

    def __init__(self, doubt: Attempt | None) -> None:
        self.doubt = doubt
        self.cause: BaseException | None = None
