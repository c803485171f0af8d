"""Schema evolution: fields renamed, removed and widened; old entities read back."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass

import brainlessdb
from brainlessdb import Brainless, SchemaError, meta

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


# --8<-- [start:v1]
@dataclass
class Call:
    channel: str
    agent: int | None = None
    legacy_code: str = ""
    score: int = 0


# --8<-- [end:v1]


# --8<-- [start:v2]
@dataclass
class CallV2:
    channel: str
    agent_id: int | None = brainlessdb.field(renamed_from="agent", default=None)
    score: float = 0  # widened: int -> float
    note: str | None = None  # added, with a default
    # legacy_code is gone: removed


# --8<-- [end:v2]


async def main() -> None:
    # A namespace of this run's own: the schema it evolves stays stored.
    namespace = f"schema-evolution-{uuid.uuid4().hex[:8]}"
    async with (
        Brainless(NATS_URL, namespace=namespace, location="prague-1") as db,
        Brainless(NATS_URL, namespace=namespace, location="brno-1") as other,
    ):
        calls = db.collection("call").typed(Call)
        old = calls.add(Call("chan-1", agent=7, legacy_code="x", score=3))
        await db.flush()

        # --8<-- [start:refused]
        try:
            db.collection("call").typed(CallV2)  # typed() never renames or removes
        except SchemaError as exc:
            # ... declared renamed from 'agent', which the stored schema still has:
            # rename it with `await collection.evolve(CallV2)`
            print(exc)
        # --8<-- [end:refused]
        else:
            raise AssertionError("typed() took a rename")

        # --8<-- [start:evolve]
        calls2 = await db.collection("call").evolve(CallV2)
        [call] = await calls2.all()
        assert call == CallV2("chan-1", agent_id=7, score=3)
        schema = calls2.schema
        assert schema is not None
        assert schema.version == 1
        assert schema.renamed["agent"] == "agent_id"
        assert "legacy_code" in schema.removed
        # --8<-- [end:evolve]

        # --8<-- [start:other-node]
        seen = other.collection("call")
        await seen.load()  # its watch brought the new schema: the entity reads under it
        assert meta(seen[meta(old).uuid]).data == {
            "channel": "chan-1",
            "agent_id": 7,
            "score": 3,
        }
        # --8<-- [end:other-node]

        # --8<-- [start:steps]
        plain = db.collection("call")
        await plain.evolve(widen={"agent_id": float})  # int -> float
        await plain.evolve(rename={"note": "remark"})
        try:
            await plain.evolve(widen={"score": int})  # float -> int would narrow it
        except SchemaError as exc:
            print(exc)  # cannot change 'score' from float to int: ...
        # --8<-- [end:steps]
        else:
            raise AssertionError("a narrowing was taken")
        assert plain.schema is not None
        assert plain.schema.version == 3
        assert plain.schema.fields["agent_id"].type == "float"

        # --8<-- [start:old-code]
        # Code still adding under the former names keeps working: renamed names
        # are taken as the new ones, removed ones are dropped.
        legacy = plain.add({"channel": "chan-2", "agent": 8, "legacy_code": "y"})
        assert meta(legacy).data["agent_id"] == 8
        assert "legacy_code" not in meta(legacy).data
        # --8<-- [end:old-code]
        await db.flush()


if __name__ == "__main__":
    asyncio.run(main())
