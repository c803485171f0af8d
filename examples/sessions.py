"""Sessions with expiry (docs/guides/sessions.md): gone on every node at their deadline.

Two nodes, Prague and Brno, share a collection of sessions that expire five seconds
after they are added unless they are touched; one session is kept for good. Brno is
told when a session expires.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from brainlessdb import Brainless, Collection, Delete, meta

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


# --8<-- [start:default]
@dataclass
class Session:
    user: str
    last_seen: float
    uuid: str | None = None


def sessions_of(db: Brainless) -> Collection[Session]:
    # Every session added expires 5 s later (on every node: the default is stored).
    return db.collection("session", ttl=5).typed(Session)


# --8<-- [end:default]


# --8<-- [start:touch]
def touch(sessions: Collection[Session], session: Session) -> None:
    """The user did something: the session lives 6 s more from now."""
    session.last_seen = time.time()
    sessions.expire(session, 6)  # a new deadline, replacing the one it had


# --8<-- [end:touch]


# --8<-- [start:watch]
def expiries_seen(sessions: Collection[Session]) -> asyncio.Queue[str]:
    """The uuids of the sessions that expire, as this node sees them go."""
    expired: asyncio.Queue[str] = asyncio.Queue()

    def on_delete(event: Delete) -> None:
        if event.reason == "expired":  # not "deleted": nobody called delete()
            expired.put_nowait(event.uuid)

    sessions.on_delete(on_delete)
    return expired


# --8<-- [end:watch]


async def main() -> None:
    async with (
        Brainless(NATS_URL, namespace="guide-sessions", location="prague-1") as prague,
        Brainless(NATS_URL, namespace="guide-sessions", location="brno-1") as brno,
    ):
        # --8<-- [start:use]
        here, there = sessions_of(prague), sessions_of(brno)
        expired = expiries_seen(there)

        ann = here.add(Session(user="ann", last_seen=time.time()))
        bob = here.add(Session(user="bob", last_seen=time.time()))
        admin = here.add(Session(user="admin", last_seen=time.time()))
        here.expire(admin, None)  # this one never expires
        assert meta(admin).expires_at is None
        deadline = meta(ann).expires_at  # when it goes, as time.time() tells it
        assert deadline is not None

        touch(here, bob)  # bob is active: his session outlives ann's
        await prague.flush()
        await there.load()
        assert len(there) == 3

        assert await expired.get() == ann.uuid  # gone on Brno too, at its deadline
        assert time.time() >= deadline
        assert await there.get(ann.uuid) is None  # and from every query
        assert await expired.get() == bob.uuid
        assert [s.user for s in await there.all()] == ["admin"]
        # --8<-- [end:use]
        here.delete(admin)  # leave the namespace empty for the next run
        await prague.flush()


if __name__ == "__main__":
    asyncio.run(main())
