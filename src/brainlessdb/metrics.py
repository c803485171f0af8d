"""Metrics of running databases for Prometheus and OpenTelemetry, read from ``db.stats()`` when asked.

Nothing is counted twice and nothing runs in the background: each scrape (Prometheus) or collection
(OpenTelemetry) calls ``stats()`` of each database and reports what it says. Neither package is needed to
import this module; each is imported when its part is used (``pip install 'brainlessdb[metrics]'`` adds
both ``prometheus-client`` and ``opentelemetry-api``).

Prometheus, with the application's own registry and HTTP server (this module never starts one):

    from prometheus_client import start_http_server
    from brainlessdb.metrics import register_prometheus

    register_prometheus(db)            # the default registry; or registry=CollectorRegistry()
    start_http_server(9100)

OpenTelemetry, against the application's ``Meter`` (the API only; the SDK and exporter are the
application's):

    from opentelemetry import metrics
    from brainlessdb.metrics import instrument

    instrument(metrics.get_meter("callcentre"), db)

Every series is labelled with the database's ``namespace`` and ``location``; ``METRICS`` lists them all
(docs/operations.md has the table). Prometheus names are ``brainless_<name>`` (counters end in ``_total``),
OpenTelemetry names ``brainless.<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from prometheus_client.metrics_core import Metric as PrometheusMetric
    from prometheus_client.registry import CollectorRegistry

Labels = tuple[str, ...]
Reading = Iterable[tuple[Labels, float]]
Stats = Mapping[str, Any]


class Database(Protocol):
    """What the metrics read of a database: a ``Brainless`` is one."""

    namespace: str
    location: str

    def stats(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name, kind, unit, the labels it adds, and how it is read from ``stats()``."""

    name: str
    kind: Literal["gauge", "counter"]
    unit: str
    """The OpenTelemetry unit (UCUM, with ``{...}`` for counted things)."""
    description: str
    labels: Labels
    read: Callable[[Stats], Reading]


def _value(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _one(*path: str) -> Callable[[Stats], Reading]:
    """A single value at ``path`` in ``stats()`` (nothing when it is absent, before start)."""

    def read(stats: Stats) -> Reading:
        found: Any = stats
        for key in path:
            if not isinstance(found, Mapping):
                return []
            found = found.get(key)
        value = _value(found)
        return [] if value is None else [((), value)]

    return read


def _per_collection(field: str) -> Callable[[Stats], Reading]:
    def read(stats: Stats) -> Reading:
        for name, counts in stats.get("collections", {}).items():
            value = _value(counts.get(field))
            if value is not None:
                yield (name,), value

    return read


def _per_copy(read_copy: Callable[[Mapping[str, Any]], float | None]) -> Callable[[Stats], Reading]:
    def read(stats: Stats) -> Reading:
        for bucket, peers in stats.get("locations", {}).get("copies", {}).items():
            for peer, copy in peers.items():
                value = read_copy(copy)
                if value is not None:
                    yield (bucket, peer), value

    return read


def _claims(stats: Stats) -> Reading:
    claims = stats.get("claims", {})
    for outcome in ("won", "lost", "unknown"):
        value = _value(claims.get(outcome))
        if value is not None:
            yield (outcome,), value


def _started(stats: Stats) -> Reading:
    return [((), 1.0 if stats.get("state") == "started" else 0.0)]


def _reachable(copy: Mapping[str, Any]) -> float | None:
    reachable = copy.get("reachable")
    return None if reachable is None else float(bool(reachable))


COLLECTION: Final = ("collection",)
COPY: Final = ("bucket", "peer")

METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec("started", "gauge", "1", "1 while the database is started", (), _started),
    MetricSpec(
        "entities", "gauge", "{entity}", "entities held in memory", COLLECTION, _per_collection("entities")
    ),
    MetricSpec(
        "pending_changes",
        "gauge",
        "{change}",
        "entities and deletes changed here and not yet acknowledged by NATS",
        COLLECTION,
        _per_collection("pending"),
    ),
    MetricSpec(
        "pending_age",
        "gauge",
        "s",
        "how long the collection has had changes waiting without a break (its oldest pending change's age)",
        COLLECTION,
        _per_collection("pending_seconds"),
    ),
    MetricSpec(
        "failed_changes",
        "gauge",
        "{change}",
        "pending changes whose last write failed (retried)",
        COLLECTION,
        _per_collection("errors"),
    ),
    MetricSpec(
        "dead_letters",
        "gauge",
        "{value}",
        "stored values no node can use (not JSON, or breaking the schema), set aside",
        COLLECTION,
        _per_collection("dead_letters"),
    ),
    MetricSpec(
        "watch_restarts",
        "counter",
        "{restart}",
        "restarts of the watch of the collection's bucket after it failed",
        COLLECTION,
        _per_collection("watch_restarts"),
    ),
    MetricSpec(
        "watch_behind",
        "gauge",
        "{revision}",
        "revisions the collection's bucket is known to hold that its watch has not applied here yet (known "
        "from this node's acknowledged writes and its synced() calls)",
        COLLECTION,
        _per_collection("watch_behind"),
    ),
    MetricSpec(
        "watch_behind_age",
        "gauge",
        "s",
        "how long the collection's watch has been behind what its bucket is known to hold, without a break",
        COLLECTION,
        _per_collection("watch_behind_seconds"),
    ),
    MetricSpec(
        "watch_consumer_restarts",
        "counter",
        "{restart}",
        "NATS consumers behind the watches made anew (after a reconnect, a lost consumer, a gap)",
        (),
        _one("storage", "restarts"),
    ),
    MetricSpec(
        "flush_rounds",
        "counter",
        "{round}",
        "flush rounds (background and flush())",
        (),
        _one("flush", "rounds"),
    ),
    MetricSpec(
        "flush_seconds",
        "counter",
        "s",
        "time spent in flush rounds (divided by flush_rounds: the mean round's latency)",
        (),
        _one("flush", "seconds"),
    ),
    MetricSpec("flush_writes", "counter", "{write}", "writes sent by flushes", (), _one("flush", "writes")),
    MetricSpec(
        "flush_conflicts",
        "counter",
        "{write}",
        "writes that met a newer revision (merged and written again)",
        (),
        _one("flush", "conflicts"),
    ),
    MetricSpec("flush_errors", "counter", "{write}", "writes that failed", (), _one("flush", "errors")),
    MetricSpec(
        "callback_errors", "counter", "{error}", "change callbacks that raised", (), _one("callback_errors")
    ),
    MetricSpec("claims", "counter", "{claim}", "update_if calls by outcome", ("outcome",), _claims),
    MetricSpec(
        "claim_conflicts",
        "counter",
        "{conflict}",
        "update_if writes that met another node's write first",
        (),
        _one("claims", "conflicts"),
    ),
    MetricSpec(
        "copy_lag",
        "gauge",
        "{message}",
        "with locations: messages of the peer's own keys this bucket has not copied yet (absent while the "
        "peer does not answer)",
        COPY,
        _per_copy(lambda copy: _value(copy.get("lag"))),
    ),
    MetricSpec(
        "copy_reachable",
        "gauge",
        "1",
        "with locations: 1 if the peer answered at the last look, else 0",
        COPY,
        _per_copy(_reachable),
    ),
    MetricSpec(
        "copy_restarts",
        "counter",
        "{restart}",
        "with locations: restarts of a copy that had stalled",
        COPY,
        _per_copy(lambda copy: _value(copy.get("restarts"))),
    ),
    MetricSpec(
        "heartbeats",
        "counter",
        "{heartbeat}",
        "presence heartbeats written",
        (),
        _one("presence", "heartbeats"),
    ),
    MetricSpec(
        "heartbeat_failures",
        "counter",
        "{heartbeat}",
        "presence heartbeats that could not be written",
        (),
        _one("presence", "failures"),
    ),
)

BASE_LABELS: Final = ("namespace", "location")


def _check(databases: Sequence[Database]) -> tuple[Database, ...]:
    if not databases:
        raise TypeError("give at least one database")
    for db in databases:
        if not callable(getattr(db, "stats", None)):
            raise TypeError(f"not a database (it has no stats()): {db!r}")
    return tuple(databases)


# -- Prometheus ---------------------------------------------------------------------------------------


def prometheus_name(spec: MetricSpec) -> str:
    """The family name: ``brainless_<name>`` (prometheus-client adds ``_total`` to a counter's samples)."""
    return f"brainless_{spec.name}"


class PrometheusCollector:
    """A prometheus-client collector of the metrics of one or more databases, read at each scrape.

    Register it once per process (``register_prometheus``, or ``registry.register(collector)``), with every
    database of the process: two collectors would report the same names.
    """

    def __init__(self, *databases: Database) -> None:
        self.databases = _check(databases)

    def describe(self) -> Iterator[PrometheusMetric]:
        """The families without samples: lets a registry refuse a second collector of the same names."""
        for spec in METRICS:
            yield _family(spec)

    def collect(self) -> Iterator[PrometheusMetric]:
        readings = [(db, db.stats()) for db in self.databases]
        for spec in METRICS:
            family = _family(spec)
            for db, stats in readings:
                for labels, value in spec.read(stats):
                    family.add_metric([db.namespace, db.location, *labels], value)
            yield family

    def __repr__(self) -> str:
        return f"<PrometheusCollector of {', '.join(repr(db) for db in self.databases)}>"


def _family(spec: MetricSpec) -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
    return kind(prometheus_name(spec), spec.description, labels=[*BASE_LABELS, *spec.labels])


def register_prometheus(
    *databases: Database, registry: CollectorRegistry | None = None
) -> PrometheusCollector:
    """Register a ``PrometheusCollector`` of ``databases`` in ``registry`` (the default one if None)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = PrometheusCollector(*databases)
    registry.register(collector)
    return collector


# -- OpenTelemetry ------------------------------------------------------------------------------------


def otel_name(spec: MetricSpec) -> str:
    return f"brainless.{spec.name}"


def instrument(meter: Meter, *databases: Database) -> list[Any]:
    """Create an observable instrument on ``meter`` for each metric of ``databases``; they are read from
    ``stats()`` whenever the meter's reader collects. Returns the instruments (keep them, or not: the
    meter holds them). Counters are observable counters (cumulative), the rest observable gauges."""
    dbs = _check(databases)
    instruments: list[Any] = []
    for spec in METRICS:
        callback = _observer(spec, dbs)
        create = meter.create_observable_counter if spec.kind == "counter" else meter.create_observable_gauge
        instruments.append(create(otel_name(spec), [callback], spec.unit, spec.description))
    return instruments


def _observer(
    spec: MetricSpec, databases: tuple[Database, ...]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    from opentelemetry.metrics import Observation

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for db in databases:
            base = {"namespace": db.namespace, "location": db.location}
            for labels, value in spec.read(db.stats()):
                observations.append(
                    Observation(value, {**base, **dict(zip(spec.labels, labels, strict=True))})
                )
        return observations

    return observe
