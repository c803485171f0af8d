"""The ``old`` value of a field an entity did not have is ``brainlessdb.MISSING`` in every event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import brainlessdb
from brainlessdb import MISSING, Change
from tests.helpers import MakeDb, eventually


@dataclass
class CallWithQueue:
    state: str
    queue: int = 0


def test_missing_is_one_exported_sentinel() -> None:
    assert brainlessdb.MISSING is MISSING
    assert repr(MISSING) == "MISSING"
    assert MISSING is not None and not isinstance(MISSING, str)


async def test_local_created_event_reports_missing_old_values(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    seen: list[Change] = []
    a.call.on_change(seen.append, local=True, remote=False)
    a.call.add(state="new", queue=3)
    assert seen[0].created
    assert seen[0].changes == {"state": (MISSING, "new"), "queue": (MISSING, 3)}
    assert all(old is MISSING for old, _ in seen[0].changes.values())


async def test_remote_created_event_reports_missing_old_values(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    seen: list[Change] = []
    b.call.on_change(seen.append)
    a.call.add(state="new", queue=3)
    await eventually(lambda: len(seen) == 1)
    assert seen[0].created and seen[0].origin == "remote"
    assert seen[0].changes == {"state": (MISSING, "new"), "queue": (MISSING, 3)}
    assert all(old is MISSING for old, _ in seen[0].changes.values())


async def test_a_field_new_to_a_node_reports_missing_as_its_old_value(make_db: MakeDb) -> None:
    a = await make_db("prague-1")
    b = await make_db("brno-1")
    seen: list[Any] = []
    b.call.on_change(seen.append)
    call = a.call.add(state="new")
    await eventually(lambda: len(seen) == 1)
    # Node A extends the schema with an optional field and sets it; node B never saw the field.
    a.call.typed(CallWithQueue)[call.uuid].queue = 7  # type: ignore[attr-defined]
    await eventually(lambda: len(seen) == 2)
    assert seen[1].changes == {"queue": (MISSING, 7)}
    assert seen[1].changes["queue"][0] is MISSING
