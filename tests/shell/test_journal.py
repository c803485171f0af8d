"""The journal: changes accepted in memory survive a ``kill -9`` of the process and are flushed at restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from brainlessdb import Brainless
from brainlessdb.shell.journal import Journal
from tests.helpers import eventually

CRASHING_NODE = """
import asyncio, sys
from brainlessdb import Brainless

async def main():
    url, namespace, journal = sys.argv[1], sys.argv[2], sys.argv[3] or None
    db = Brainless(url, namespace=namespace, location="crashy", flush_interval=3600, journal=journal)
    await db.start()
    kept = db.call.add(channel_id="stored", state="new", caller={"city": "Prague"})
    gone = db.call.add(channel_id="to delete", state="new", caller={})
    await db.flush()
    kept.state = "changed after the last flush"
    kept.caller["city"] = "Brno"
    fresh = db.call.add(channel_id="never flushed", state="new", caller={})
    del db.call[gone]
    print(kept.uuid, gone.uuid, fresh.uuid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def crash_a_node(url: str, namespace: str, journal: Path | None) -> list[str]:
    """Run a node in another process, let it make changes it does not flush, and kill -9 it."""
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_NODE, url, namespace, str(journal or "")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, "the node died before making its changes"
        return line.split()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


async def test_changes_survive_a_kill_with_a_journal(
    nats_server: Any, namespace: str, tmp_path: Path
) -> None:
    journal = tmp_path / "node.journal"
    kept, gone, fresh = await asyncio.to_thread(crash_a_node, nats_server.url, namespace, journal)

    observer = Brainless(nats_server.url, namespace=namespace, location="observer", flush_interval=0.02)
    await observer.start()
    try:
        assert observer.call[kept].state == "new"
        assert gone in observer.call
        assert fresh not in observer.call

        restarted = Brainless(nats_server.url, namespace=namespace, location="crashy", journal=journal)
        await restarted.start()
        await restarted.flush()
        await restarted.stop()

        await eventually(lambda: observer.call[kept].state == "changed after the last flush")
        assert observer.call[kept].caller == {"city": "Brno"}
        await eventually(lambda: fresh in observer.call and gone not in observer.call)
        journal_file = Journal(journal)
        assert len(journal_file) == 0
        journal_file.close()
    finally:
        await observer.stop()


async def test_without_a_journal_a_kill_loses_only_unacknowledged_changes(
    nats_server: Any, namespace: str
) -> None:
    kept, gone, fresh = await asyncio.to_thread(crash_a_node, nats_server.url, namespace, None)
    restarted = Brainless(nats_server.url, namespace=namespace, location="crashy")
    await restarted.start()
    try:
        assert restarted.call[kept].state == "new"
        assert gone in restarted.call
        assert fresh not in restarted.call
    finally:
        await restarted.stop()


async def test_journal_is_empty_once_everything_is_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "node.journal"
    db = Brainless(None, namespace="ns", flush_interval=3600, journal=path)
    await db.start()
    call = db.call.add(state="new")
    db.call.add(state="other")
    journal = Journal(path)
    assert len(journal) == 3  # the schema and two entities
    call.state = "changed"
    assert len(journal) == 3
    await db.flush()
    assert len(journal) == 0
    db.call.delete(call)
    assert len(journal) == 1
    await db.stop()
    assert len(journal) == 0
    journal.close()


async def test_an_unwritable_journal_is_a_clear_error(tmp_path: Path) -> None:
    db = Brainless(None, namespace="ns", journal=tmp_path / "missing" / "dir" / "node.journal")
    with pytest.raises(Exception, match="journal"):
        await db.start()
