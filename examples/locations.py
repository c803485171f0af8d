"""Two locations through a partition (docs/guides/locations.md).

Unlike the other examples, this one starts NATS servers of its own: one per location,
on loopback, as it needs two JetStream domains joined by a leaf link that it can cut.
It stops them at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from brainlessdb import Brainless, Collection
from brainlessdb.embedded_locations import EmbeddedLocations

HEAL_TIMEOUT = 90.0  # seconds: the copies usually catch up within seconds of a heal


@dataclass
class Call:
    state: str
    agent: str | None = None
    uuid: str | None = None


async def until(calls: Collection[Call], ready: Callable[[], bool]) -> None:
    """Wait until ``ready()`` holds, looking again at each change from another node."""
    changed = asyncio.Event()
    calls.on_change(lambda event: changed.set())

    async def wait() -> None:
        while not ready():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(wait(), HEAL_TIMEOUT)


async def main() -> None:
    # --8<-- [start:start]
    async with EmbeddedLocations(
        ["prague", "brno"]
    ) as places:  # two servers, two domains, one link
        prague = Brainless(
            places.url("prague"),
            namespace="app",
            location="prague-1",
            domain="prague",
            peers=["brno"],
        )
        brno = Brainless(
            places.url("brno"),
            namespace="app",
            location="brno-1",
            domain="brno",
            peers=["prague"],
        )
        # --8<-- [end:start]
        async with prague, brno:
            here, there = prague.call.typed(Call), brno.call.typed(Call)
            # --8<-- [start:connected]
            call = here.add(Call(state="ringing"))
            await prague.flush()
            await until(
                there, lambda: there.count() == 1
            )  # Brno's copy of Prague's keys has it
            # --8<-- [end:connected]

            # --8<-- [start:cut]
            places.links["brno"].cut()  # the link between the cities fails

            call.state = "answered"  # each location keeps reading and writing
            brno_call = await there.get(call)
            assert brno_call is not None
            brno_call.agent = "eva"
            brno_only = there.add(
                Call(state="ringing")
            )  # a call only Brno knows, for now
            await asyncio.gather(prague.flush(), brno.flush())  # each on its own NATS
            assert await here.get(brno_only) is None
            # --8<-- [end:cut]

            # --8<-- [start:heal]
            places.links["brno"].heal()

            def merged(calls: Collection[Call]) -> Callable[[], bool]:
                # both changes to the call, and the call added in Brno
                return lambda: (
                    calls.count(state="answered", agent="eva") == 1 and len(calls) == 2
                )

            await until(here, merged(here))  # in Prague
            await until(there, merged(there))  # and in Brno
            # --8<-- [end:heal]

            for (
                item
            ) in await here.all():  # leave the namespace empty (the servers go anyway)
                here.delete(item)


if __name__ == "__main__":
    asyncio.run(main())
