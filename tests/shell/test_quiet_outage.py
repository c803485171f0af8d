"""Quiet under outage: a few log lines per flush round, never one per entity; the details at DEBUG.

A real nats-server is killed while 2,000 changes wait to be written, and restarted a few seconds later.
(Before the flusher summarised its rounds, this outage logged some 12,000 warnings: one per entity per
failed round, and one per reconnect attempt.)
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter

import pytest

from brainlessdb import Brainless, meta
from brainlessdb.embedded import EmbeddedServer
from tests.helpers import eventually

PENDING = 2000
OUTAGE = 4.0  # seconds: the background flusher's backoff makes several rounds meanwhile
PER_ROUND = 5  # warning lines a flush round may cost, at most (the summary, and what the outage itself logs)


@pytest.mark.nats
async def test_an_outage_logs_a_handful_of_lines_per_flush_round(
    own_server: EmbeddedServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="brainlessdb")
    db = Brainless(own_server.url, namespace=namespace, location="prague-1", flush_interval=0.05)
    await db.start()
    try:
        calls = [db.call.add(n=i, state="new") for i in range(PENDING)]
        await db.flush()
        caplog.clear()
        rounds_before = db.stats()["flush"]["rounds"]

        own_server.kill()
        for call in calls:
            call.n += 1
        await asyncio.sleep(OUTAGE)
        own_server.restart()
        await eventually(lambda: not any(meta(call).dirty for call in calls), timeout=30)
        rounds = db.stats()["flush"]["rounds"] - rounds_before
    finally:
        await db.stop()

    records = [r for r in caplog.records if r.name.startswith("brainlessdb")]
    loud = [r for r in records if r.levelno >= logging.WARNING]
    summary = Counter(f"{r.levelname} {r.name}: {r.getMessage()[:90]}" for r in loud)
    assert rounds >= 3, rounds
    assert len(loud) <= PER_ROUND * rounds, (len(loud), rounds, summary.most_common(10))
    # One summary per failed round, naming the collection, the count, the cause and the next retry.
    summaries = [r.getMessage() for r in loud if r.name == "brainlessdb.shell.flusher"]
    assert 0 < len(summaries) <= rounds, summary
    assert all(re.search(r"\d+ change\(s\) not written \(call \d+\): ", text) for text in summaries)
    assert all("next retry in" in text for text in summaries)
    assert any(
        f"{PENDING} change(s) not written (call {PENDING}): {PENDING} UnavailableError" in text
        for text in summaries
    )
    # The details, entity by entity, at DEBUG.
    detailed = {r.getMessage() for r in records if r.levelno == logging.DEBUG}
    assert any(calls[0].uuid in text and "not written" in text for text in detailed)
