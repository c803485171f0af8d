"""Fields named like the entity's former members (``data``, ``revision``, ``get``...) are fields like any
other on every node: stored, synced, merged and read back as attributes, and ``meta()`` tells each node's
own revision and dirtiness apart from them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from brainlessdb import Change, meta
from tests.helpers import MakeDb

ODD = {
    "data": {"city": "Prague"},
    "revision": "r1",
    "dirty": False,
    "get": 1,
    "to_dict": ["a"],
    "as_type": "x",
    "keys": 2,
    "items": [],
}


@dataclass
class Odd:
    data: dict[str, str]
    revision: str
    dirty: bool
    get: int
    to_dict: list[str] = field(default_factory=list)
    as_type: str = ""
    keys: int = 0
    items: list[int] = field(default_factory=list)
    uuid: str | None = None


async def test_fields_named_like_members_round_trip_between_two_nodes(make_db: MakeDb) -> None:
    a = await make_db("prague-1", flush_interval=60)
    b = await make_db("brno-1", flush_interval=60)
    odd = a.odd.add(ODD)
    assert meta(odd).dirty and meta(odd).revision is None
    await a.flush()
    assert not meta(odd).dirty and meta(odd).revision is not None
    await b.odd.load()
    copy = b.odd[odd.uuid]
    assert meta(copy).to_dict() == {"uuid": odd.uuid, **ODD}
    assert (copy.data, copy.revision, copy.dirty, copy.get) == ({"city": "Prague"}, "r1", False, 1)
    assert (copy.to_dict, copy.as_type, copy.keys, copy.items) == (["a"], "x", 2, [])
    assert meta(copy).revision == meta(odd).revision

    copy.data["city"] = "Brno"  # a nested change, merged per key
    copy.revision = "r2"
    copy["get"] = 2
    copy.items.append(7)
    assert meta(copy).dirty
    await b.flush()
    assert not meta(copy).dirty
    await a.odd.load()
    assert (odd.data, odd.revision, odd.get, odd.items) == ({"city": "Brno"}, "r2", 2, [7])
    assert meta(odd).revision == meta(copy).revision
    assert await a.odd.find(revision="r2", data__city="Brno") is odd


async def test_a_change_of_such_fields_reaches_the_other_node_as_a_change_event(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1", flush_interval=60)
    odd = a.odd.add(ODD)
    await a.flush()
    await b.odd.load()
    seen: asyncio.Queue[Change] = asyncio.Queue()
    b.odd.on_change(lambda event: seen.put_nowait(event) if isinstance(event, Change) else None)
    odd.dirty = True
    odd.keys = 3
    changed: set[str] = set()
    while changed != {"dirty", "keys"}:  # the two assignments may come in one version or in two
        event = await asyncio.wait_for(seen.get(), timeout=10)
        assert event.uuid == odd.uuid
        changed |= set(event.changes)
    assert (event.entity.dirty, event.entity.keys) == (True, 3)
    assert not meta(event.entity).dirty  # the copy has nothing of its own to write


async def test_typed_views_with_such_fields_on_two_nodes(make_db: MakeDb) -> None:
    a = await make_db("prague-1", flush_interval=60)
    b = await make_db("brno-1", flush_interval=60)
    view = a.odd.typed(Odd).add(Odd(data={"city": "Prague"}, revision="r1", dirty=False, get=1))
    await a.flush()
    await b.odd.load()
    copy = await b.odd.typed(Odd).get(view.uuid)
    assert copy == view
    copy.revision = "r2"
    copy.to_dict.append("b")
    await b.flush()
    await a.odd.load()
    assert (view.revision, view.to_dict) == ("r2", ["b"])
    assert meta(view).revision == meta(copy).revision
    assert meta(view).as_type(Odd) == view
