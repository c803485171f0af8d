"""``brainlessdb.metrics``: a Prometheus scrape and an OpenTelemetry collection of started databases follow
what the databases do (real nats-servers; the OpenTelemetry SDK, a dev dependency, reads the instruments)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from brainlessdb import Brainless, meta
from brainlessdb.embedded import EmbeddedServer, free_port
from brainlessdb.metrics import METRICS, PrometheusCollector, instrument, register_prometheus
from tests.helpers import eventually, nats_connection

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Series:
    """Every sample of the registry's text exposition, parsed back: ``{(name, labels): value}``."""
    text = generate_latest(registry).decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


class Scraper:
    """Scrapes one registry and reads the series of one database."""

    def __init__(self, registry: CollectorRegistry, db: Brainless) -> None:
        self.registry = registry
        self.db = db

    def __call__(self, name: str, **labels: str) -> float | None:
        key = (
            name,
            tuple(sorted({"namespace": self.db.namespace, "location": self.db.location, **labels}.items())),
        )
        return scrape(self.registry).get(key)

    async def until(
        self, name: str, predicate: Callable[[float | None], bool], timeout: float = 10.0, **labels: str
    ) -> float | None:
        """Scrape until ``predicate`` holds for the series (``timeout`` seconds at most); its value then."""
        await eventually(lambda: predicate(self(name, **labels)), timeout=timeout, message=f"{name} {labels}")
        return self(name, **labels)


def scraper(db: Brainless) -> Scraper:
    """A Scraper of a new registry that a collector of ``db`` was registered in."""
    registry = CollectorRegistry()
    register_prometheus(db, registry=registry)
    return Scraper(registry, db)


@contextlib.asynccontextmanager
async def database(url: str, namespace: str, location: str, **options: Any) -> AsyncIterator[Brainless]:
    db = await Brainless(url, namespace=namespace, location=location, **options).start()
    try:
        yield db
    finally:
        await db.stop()


@pytest.mark.nats
async def test_a_scrape_follows_entities_pending_changes_flushes_claims_and_dead_letters(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    async with database(nats_server.url, namespace, "prague-1", flush_interval=60) as db:
        metric = scraper(db)
        assert metric("brainless_started") == 1.0
        assert metric("brainless_entities", collection="call") is None  # no collection yet
        rounds = metric("brainless_flush_rounds_total")
        assert rounds is not None

        calls = [db.call.add(state="new", n=i) for i in range(3)]
        assert metric("brainless_entities", collection="call") == 3
        assert metric("brainless_pending_changes", collection="call") == 3
        await db.flush()
        assert metric("brainless_pending_changes", collection="call") == 0
        assert metric("brainless_flush_rounds_total") == rounds + 1
        assert metric("brainless_flush_writes_total") == 3

        del db.call[calls[0]]
        calls[1].state = "ringing"
        assert metric("brainless_entities", collection="call") == 2
        assert metric("brainless_pending_changes", collection="call") == 2  # a delete and a change
        await db.flush()
        assert metric("brainless_pending_changes", collection="call") == 0
        assert metric("brainless_flush_writes_total") == 5

        assert await db.call.update_if(calls[2], {"state": "new"}, state="taken")
        assert not await db.call.update_if(calls[2], {"state": "new"}, state="taken")
        assert metric("brainless_claims_total", outcome="won") == 1
        assert metric("brainless_claims_total", outcome="lost") == 1

        def boom(event: Any) -> None:
            raise RuntimeError("a callback that fails")

        db.call.on_change(boom, local=True)
        calls[1].state = "answered"
        assert metric("brainless_callback_errors_total") == 1

        assert metric("brainless_dead_letters", collection="call") == 0
        async with nats_connection(nats_server.url) as client:
            await client.jetstream().publish(f"$KV.{namespace}-call.not-an-entity", b"not json")
        await metric.until("brainless_dead_letters", lambda value: value == 1, collection="call")

        await metric.until("brainless_heartbeats_total", lambda value: value is not None and value >= 1)
        assert metric("brainless_heartbeat_failures_total") == 0
        assert metric("brainless_watch_restarts_total", collection="call") == 0
    assert metric("brainless_started") == 0.0  # stopped: still scraped, and says so


@pytest.mark.nats
async def test_concurrent_writes_of_one_entity_count_as_conflicts(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    async with (
        database(nats_server.url, namespace, "prague-1", flush_interval=60) as a,
        database(nats_server.url, namespace, "brno-1", flush_interval=60) as b,
    ):
        registry = CollectorRegistry()
        register_prometheus(a, b, registry=registry)
        of_a, of_b = Scraper(registry, a), Scraper(registry, b)
        uuid = a.call.add(n=0, m=0).uuid
        await a.flush()
        await eventually(lambda: uuid in b.call)
        assert of_a("brainless_flush_conflicts_total") == of_b("brainless_flush_conflicts_total") == 0
        for round_ in range(1, 51):  # both write the same revision at once: one of them meets the other's
            a.call[uuid].n = round_
            b.call[uuid].m = round_
            await asyncio.gather(a.flush(), b.flush())
            conflicts = (of_a("brainless_flush_conflicts_total") or 0) + (
                of_b("brainless_flush_conflicts_total") or 0
            )
            if conflicts:
                break
            await eventually(lambda: meta(a.call[uuid]).data == meta(b.call[uuid]).data)
        assert conflicts >= 1
        assert conflicts == a.stats()["flush"]["conflicts"] + b.stats()["flush"]["conflicts"]


@pytest.mark.nats
async def test_watch_restarts_are_counted_when_the_server_comes_back(
    own_server: EmbeddedServer, namespace: str
) -> None:
    async with database(own_server.url, namespace, "prague-1", flush_interval=0.02) as db:
        metric = scraper(db)
        db.call.add(n=1)
        await db.flush()
        assert metric("brainless_watch_consumer_restarts_total") == 0
        own_server.restart()
        # The client reconnects, then the watch makes its consumer anew: seconds, depending on the restart.
        await metric.until(
            "brainless_watch_consumer_restarts_total", lambda value: (value or 0) >= 1, timeout=30
        )
        db.call.add(n=2)
        await metric.until(
            "brainless_pending_changes", lambda value: value == 0, timeout=30, collection="call"
        )


@pytest.fixture
def two_locations(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    """Two JetStream domains: ``prague`` (the hub) and ``brno``, a leaf node of it."""
    hub_port = free_port()
    prague = EmbeddedServer(
        store_dir=tmp_path / "prague",
        name="prague",
        jetstream_config="domain: prague",
        extra_config=f'leafnodes {{ listen: "127.0.0.1:{hub_port}" }}',
    )
    brno = EmbeddedServer(
        store_dir=tmp_path / "brno",
        name="brno",
        jetstream_config="domain: brno",
        extra_config=(
            f'leafnodes {{ reconnect: 1, remotes: [ {{ url: "nats-leaf://127.0.0.1:{hub_port}" }} ] }}'
        ),
    )
    try:
        prague.start()
        brno.start()
        yield prague, brno
    finally:
        brno.close()
        prague.close()


@pytest.mark.nats
async def test_copy_lag_and_reachability_per_bucket_and_peer(
    two_locations: tuple[EmbeddedServer, EmbeddedServer], namespace: str
) -> None:
    prague_server, brno_server = two_locations
    async with (
        database(prague_server.url, namespace, "prague-1", domain="prague", peers=["brno"]) as prague,
        database(brno_server.url, namespace, "brno-1", domain="brno", peers=["prague"]) as brno,
    ):
        metric = scraper(prague)
        where = {"bucket": f"{namespace}-call", "peer": "brno"}
        prague.call.add(n=0)
        await prague.flush()
        uuid = brno.call.add(n=1).uuid
        await brno.flush()
        await eventually(lambda: uuid in prague.call, timeout=30)
        assert await metric.until("brainless_copy_reachable", lambda value: value == 1, **where) == 1
        assert await metric.until("brainless_copy_lag", lambda value: value == 0, **where) == 0
        assert metric("brainless_copy_restarts_total", **where) == 0

        brno_server.kill()  # the peer no longer answers: unreachable, and its lag unknown (no series)
        await metric.until("brainless_copy_reachable", lambda value: value == 0, **where)
        assert metric("brainless_copy_lag", **where) is None
        brno_server.restart()
        await metric.until("brainless_copy_reachable", lambda value: value == 1, **where)


async def test_one_collector_reports_several_databases_and_a_second_one_is_refused() -> None:
    async with (
        Brainless(None, namespace="one", location="a") as a,
        Brainless(None, namespace="two", location="b") as b,
    ):
        a.call.add(n=1)
        for _ in range(2):
            b.call.add(n=1)
        registry = CollectorRegistry()
        register_prometheus(a, b, registry=registry)
        assert Scraper(registry, a)("brainless_entities", collection="call") == 1
        assert Scraper(registry, b)("brainless_entities", collection="call") == 2
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            register_prometheus(a, registry=registry)
        names = {name for name, _ in scrape(registry)}
        # Every metric is there for a started in-memory database, but those of copies (it has no peers)
        # and of NATS consumers (its storage has none).
        absent = {"copy_lag", "copy_reachable", "copy_restarts", "watch_consumer_restarts"}
        for spec in METRICS:
            name = f"brainless_{spec.name}{'_total' if spec.kind == 'counter' else ''}"
            assert (name in names) is (spec.name not in absent), name
    with pytest.raises(TypeError):
        PrometheusCollector()


def otel_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    """Each metric's data points as ``(attributes, value)``, from one collection of the reader."""
    points: dict[str, list[tuple[dict[str, Any], float]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found = points.setdefault(metric.name, [])
                for point in metric.data.data_points:
                    found.append((dict(point.attributes or {}), point.value))
    return points


@pytest.mark.nats
async def test_opentelemetry_instruments_follow_the_database(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        async with database(nats_server.url, namespace, "prague-1", flush_interval=60) as db:
            instruments = instrument(provider.get_meter("test"), db)
            assert len(instruments) == len(METRICS)
            here = {"namespace": namespace, "location": "prague-1"}
            points = otel_points(reader)
            assert points["brainless.started"] == [(here, 1)]
            [(attributes, rounds)] = points["brainless.flush_rounds"]
            assert attributes == here

            for i in range(4):
                db.call.add(n=i)
            points = otel_points(reader)
            assert points["brainless.entities"] == [({**here, "collection": "call"}, 4)]
            assert points["brainless.pending_changes"] == [({**here, "collection": "call"}, 4)]

            await db.flush()
            points = otel_points(reader)
            assert points["brainless.pending_changes"] == [({**here, "collection": "call"}, 0)]
            assert points["brainless.flush_rounds"] == [(here, rounds + 1)]  # cumulative, as observed
            assert points["brainless.flush_writes"] == [(here, 4)]
    finally:
        provider.shutdown()


@pytest.mark.nats
async def test_the_age_of_pending_changes_grows_through_an_outage_and_rounds_count_their_time(
    own_server: EmbeddedServer, namespace: str
) -> None:
    async with database(own_server.url, namespace, "prague-1", flush_interval=0.02) as db:
        metric = scraper(db)
        db.call.add(n=1)
        await db.flush()
        assert metric("brainless_pending_age", collection="call") == 0
        spent = metric("brainless_flush_seconds_total")
        assert spent is not None and spent > 0
        own_server.kill()
        db.call.add(n=2)  # cannot be written while the server is away
        age = await metric.until(
            "brainless_pending_age", lambda value: (value or 0) >= 0.5, collection="call"
        )
        assert age is not None
        own_server.start()
        await metric.until("brainless_pending_age", lambda value: value == 0, timeout=30, collection="call")
        assert (metric("brainless_flush_seconds_total") or 0) > spent
