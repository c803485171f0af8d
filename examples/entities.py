"""Entities: every field is an attribute, whatever its name; meta() tells the rest."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from brainlessdb import Brainless, meta

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


# --8<-- [start:model]
@dataclass
class Job:
    kind: str
    data: dict[str, str] = field(default_factory=dict)  # a field may be called data
    revision: int = 1  # ... or revision
    uuid: str | None = None  # filled in by the database


# --8<-- [end:model]


async def main() -> None:
    async with Brainless(NATS_URL, namespace="entities", location="prague-1") as db:
        # --8<-- [start:fields]
        job = db.job.add(kind="export", data={"format": "csv"}, revision=1)

        assert job.kind == job["kind"] == "export"
        assert job.data == {"format": "csv"}  # the field called data
        job.revision = 2  # the field called revision: a tracked change
        job["data"]["format"] = "json"  # nested changes are tracked too
        assert "kind" in job
        assert "colour" not in job
        # --8<-- [end:fields]

        # --8<-- [start:meta]
        about = meta(job)
        assert about.uuid == job.uuid
        assert about.collection == "job"
        assert about.dirty  # changed, not yet acknowledged by NATS
        assert about.revision is None  # never stored

        await db.flush()
        assert not about.dirty  # meta() reads the entity live
        assert about.revision is not None

        assert about.data == {
            "kind": "export",
            "data": {"format": "json"},
            "revision": 2,
        }
        assert about.to_dict() == {"uuid": job.uuid, **about.data}  # the uuid first
        assert about.get("colour", "none") == "none"
        # --8<-- [end:meta]

        # --8<-- [start:typed]
        jobs = db.job.typed(Job)
        view = await jobs.get(job.uuid)
        assert isinstance(view, Job)
        view.data["format"] = "xml"
        assert job.data == {"format": "xml"}  # one entity behind both
        assert meta(view).uuid == job.uuid
        assert meta(view).dirty
        assert meta(job).as_type(Job) == view
        # --8<-- [end:typed]

        jobs.delete(view)  # leave the namespace empty for the next run


if __name__ == "__main__":
    asyncio.run(main())
