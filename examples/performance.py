"""Using BrainlessDB at speed (docs/guides/performance.md): batched writes, indexed
lookups, counting, pages.

It asserts results, not times: docs/performance.md has the measured figures.
"""

from __future__ import annotations

import asyncio
import os

from brainlessdb import Brainless

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
N = 5000


async def main() -> None:
    async with Brainless(
        NATS_URL, namespace="guide-performance", location="prague-1"
    ) as db:
        calls = db.call
        # --8<-- [start:batch]
        for number in range(
            N
        ):  # changes made between two flushes are written together, pipelined
            calls.add(channel_id=f"chan-{number}", queue=number % 10, state="waiting")
        await db.flush()  # one round: N compare-and-set writes in flight at once
        # --8<-- [end:batch]

        # --8<-- [start:lookups]
        call = await calls.find(
            channel_id="chan-4321"
        )  # equality: an index, built on first use
        assert call is not None
        assert (
            len(await calls.filter(queue=3, state="waiting")) == N // 10
        )  # indexes, intersected
        assert calls.count(queue=3) == N // 10  # counts without building results
        assert await calls.exists(queue=3, state="waiting")  # stops at the first match
        slow = await calls.filter(
            channel_id__startswith="chan-432"
        )  # not indexable: a scan
        assert len(slow) == 11
        # --8<-- [end:lookups]

        # --8<-- [start:bounded]
        # The first ten waiting calls by queue, then the next ten: a small page
        # sorts only the entities that can be in it, not every match.
        top = await calls.order_by("-queue", "uuid", state="waiting", limit=10)
        following = await calls.order_by(
            "-queue", "uuid", state="waiting", limit=10, offset=10
        )
        assert [call["queue"] for call in top + following] == [9] * 20
        assert not set(map(id, top)) & set(map(id, following))
        # --8<-- [end:bounded]

        for entity in await calls.all():  # leave the namespace empty for the next run
            calls.delete(entity)


if __name__ == "__main__":
    asyncio.run(main())
