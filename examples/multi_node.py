"""Several nodes (docs/guides/multi-node.md): what merges, what converges, and
reacting to other nodes' changes.

Both nodes here run in one process and write only when asked (a long
``flush_interval``, then ``synced()`` or ``flush()``), so that their changes are
concurrent on purpose and the outcome is the same on every run.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from brainlessdb import MISSING, Brainless, Change, Delete

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Call:
    state: str
    caller: dict[str, str] = field(default_factory=dict)
    agent: str | None = None
    note: str = ""
    uuid: str | None = None


# --8<-- [start:nodes]
def node(location: str) -> Brainless:
    """One node: the same namespace for all, a location of its own for each process."""
    return Brainless(
        NATS_URL, namespace="guide-multi-node", location=location, flush_interval=60
    )


# --8<-- [end:nodes]


async def sync(*nodes: Brainless) -> None:
    """Every node's changes acknowledged by NATS, then every node in step with them all
    (a node's changes are on another after synced() of the one, then of the other)."""
    for _ in range(2):
        await asyncio.gather(*(db.synced() for db in nodes))


async def main() -> None:
    async with node("prague-1") as prague, node("brno-1") as brno:
        here, there = prague.call.typed(Call), brno.call.typed(Call)
        added = here.add(Call(state="ringing", caller={"city": "Prague"}))
        await sync(prague, brno)
        copy = await there.get(added)
        assert copy is not None

        # --8<-- [start:fields]
        added.state = "answered"  # Prague and Brno change the same call at once,
        copy.agent = "jana"  # each a different field
        await sync(prague, brno)
        assert (added.state, added.agent) == (
            "answered",
            "jana",
        )  # both changes survive,
        assert (copy.state, copy.agent) == ("answered", "jana")  # on both nodes
        # --8<-- [end:fields]

        # --8<-- [start:same-field]
        added.note = "from Prague"  # the same field on both nodes at once:
        copy.note = "from Brno"
        await sync(prague, brno)
        assert added.note == copy.note  # one value wins everywhere (the newer stamp)
        assert added.note in ("from Prague", "from Brno")
        # --8<-- [end:same-field]

        # --8<-- [start:nested]
        added.caller["lang"] = "cs"  # different keys of one dict field merge too
        copy.caller["vip"] = "yes"
        await sync(prague, brno)
        assert (
            added.caller
            == copy.caller
            == {"city": "Prague", "lang": "cs", "vip": "yes"}
        )
        # --8<-- [end:nested]

        # --8<-- [start:events]
        seen: asyncio.Queue[Change | Delete] = asyncio.Queue()
        there.on_change(seen.put_nowait)  # changes merged from other nodes
        there.on_delete(seen.put_nowait)

        added.state = "hungup"
        await prague.flush()  # Brno's watch delivers it: no load() needed
        change = await asyncio.wait_for(seen.get(), timeout=10)
        assert isinstance(change, Change)
        assert change.changes == {"state": ("answered", "hungup")}
        assert change.origin == "remote"

        extra = here.add(Call(state="ringing"))
        await prague.flush()
        new = await asyncio.wait_for(seen.get(), timeout=10)
        assert isinstance(new, Change)
        assert new.created
        assert new.changes["state"] == (MISSING, "ringing")  # MISSING: no value before
        # --8<-- [end:events]

        # --8<-- [start:delete]
        here.delete(added)  # Prague deletes the call while Brno still changes it:
        copy.note = "too late"
        await sync(prague, brno)
        assert await here.get(added.uuid) is None  # the delete wins, on every node
        assert await there.get(added.uuid) is None
        gone = await asyncio.wait_for(seen.get(), timeout=10)
        assert isinstance(gone, Delete)
        assert gone.uuid == added.uuid
        # --8<-- [end:delete]

        # --8<-- [start:presence]
        locations = {entry["location"] for entry in await prague.nodes()}
        assert {
            "prague-1",
            "brno-1",
        } <= locations  # every running node of the namespace
        # --8<-- [end:presence]

        here.delete(extra)  # leave the namespace empty for the next run


if __name__ == "__main__":
    asyncio.run(main())
