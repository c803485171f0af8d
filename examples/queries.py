"""Queries (docs/guides/queries.md): criteria, pages, exists, exclude, and synced().

One node fills a collection of calls; a second node waits with ``synced()`` until
it holds them, then both answer the same queries from memory.
"""

from __future__ import annotations

import asyncio
import os

from brainlessdb import Brainless, QueryError

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
CITIES = ["Prague", "Brno", "Ostrava"]


async def main() -> None:
    async with (
        Brainless(NATS_URL, namespace="queries", location="prague-1") as db,
        Brainless(NATS_URL, namespace="queries", location="brno-1") as other,
    ):
        calls = db.call
        for old in await calls.all():  # leave nothing of an earlier run
            calls.delete(old)
        # --8<-- [start:data]
        for n in range(30):
            calls.add(
                number=n,
                state="waiting" if n % 3 else "answered",
                priority=n % 5,
                caller={"city": CITIES[n % 3]},
                agent_id=None if n % 3 else 100 + n,
            )
        # --8<-- [end:data]

        # --8<-- [start:criteria]
        waiting = await calls.filter(state="waiting")
        assert len(waiting) == 20
        urgent = await calls.filter(state="waiting", priority__gte=3)
        assert all(call.priority >= 3 for call in urgent)
        from_brno = await calls.filter(caller__city="Brno", agent_id__isnull=True)
        assert {call.caller["city"] for call in from_brno} == {"Brno"}
        assert await calls.find(number=7) is not None
        assert calls.count(state="answered") == 10
        # --8<-- [end:criteria]

        # --8<-- [start:pages]
        first = await calls.order_by("-priority", "number", state="waiting", limit=5)
        second = await calls.order_by(
            "-priority", "number", state="waiting", limit=5, offset=5
        )
        assert [call.priority for call in first] == [4, 4, 4, 4, 3]
        everything = await calls.order_by("-priority", "number", state="waiting")
        assert first + second == everything[:10]

        some = await calls.filter(state="waiting", limit=3)  # any 3 of them
        assert len(some) == 3
        # --8<-- [end:pages]

        # --8<-- [start:exists]
        assert await calls.exists(state="answered", caller__city="Prague")
        assert not await calls.exists(state="waiting", agent_id__isnull=False)

        # Every call but those both answered AND from Prague:
        rest = await calls.exclude(state="answered", caller__city="Prague")
        assert len(rest) == 30 - 10
        # exclude() and filter() split the collection in two:
        kept = await calls.filter(state="answered", caller__city="Prague")
        assert len(kept) + len(rest) == len(calls)
        # --8<-- [end:exists]

        # --8<-- [start:errors]
        refused: list[str | None] = []
        for wrong in ({"limit": -1}, {"priority__gtt": 3}):  # a typo is no empty answer
            try:
                await calls.filter(state="waiting", **wrong)
            except QueryError as error:
                refused.append(error.key)  # what was wrong, by name
        assert refused == ["limit", "priority__gtt"]
        # --8<-- [end:errors]

        # --8<-- [start:synced]
        other_calls = other.call  # the other node uses the collection
        await db.synced()  # this node's changes are stored in NATS...
        await other.synced()  # ...and the other node's memory holds what NATS holds
        assert len(other_calls) == 30
        assert await other_calls.exists(number=29)

        lag = other.stats()["collections"]["call"]
        assert lag["pending"] == 0  # nothing of its own waits to be written
        assert lag["watch_behind"] == 0  # its watch applied all it knows of
        # --8<-- [end:synced]

        for call in await calls.all():  # leave the namespace empty for the next run
            calls.delete(call)


if __name__ == "__main__":
    asyncio.run(main())
