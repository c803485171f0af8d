"""What every benchmark shares: the parameters, the payloads, the result rows and the timing helpers.

Every figure is the median of ``repeats`` runs, and every result row pairs a brainlessdb figure with a
baseline measured in the same run on the same payloads; ``ratio`` is always brainlessdb ÷ baseline in the
row's unit (so above 1 is better for a rate, below 1 is better for a time or a size).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import msgspec

from brainlessdb.core.ids import location_node, new_uuid

CITIES: Final = (
    "Prague",
    "Brno",
    "Ostrava",
    "Plzen",
    "Liberec",
    "Olomouc",
    "Zlin",
    "Kladno",
    "Most",
    "Opava",
)
STATES: Final = ("waiting", "ringing", "talking", "wrapup")
COLLECTION: Final = "call"
BASE_TIME: Final = 1_764_200_000.0

_encoder = msgspec.json.Encoder()
_node = location_node("benchmarks")


@dataclass(frozen=True)
class Params:
    """The knobs of one run (all of them go into the JSON output)."""

    n: int = 10_000
    repeats: int = 5
    changes: int = 300  # sequential changes timed by the propagation benchmark
    history: int = 5  # revisions per key in load_history
    ops: int = 10_000  # operations per timed batch of the in-memory micro benchmarks
    claims: int = 1_000  # sequential update_if claims timed by the claims benchmark
    scale_sizes: tuple[int, ...] = (10_000, 100_000)
    io_n: int = 10_000  # entities flushed and loaded by flush_new, flush_update and load (1M with --scale-1m)
    cuts: tuple[float, ...] = (10.0, 60.0, 300.0)  # seconds of the cuts the locations benchmark heals
    timeout: float = 300.0  # seconds one benchmark may take before it is abandoned


def entity_data(i: int) -> dict[str, Any]:
    """The fields of entity number ``i``: about 170 bytes as compact JSON."""
    return {
        "channel_id": f"chan-{i:06d}",
        "queue_id": i % 20,
        "state": STATES[i % len(STATES)],
        "caller": {"number": f"+420601{i:06d}", "city": CITIES[i % len(CITIES)]},
        "agent_id": i % 97,
        "priority": i % 5,
        "queued_at": BASE_TIME + i * 0.001,
    }


def dataset(n: int) -> list[dict[str, Any]]:
    """``n`` entities' fields."""
    return [entity_data(i) for i in range(n)]


def new_key() -> str:
    """A fresh uuid string, shaped like the keys brainlessdb writes."""
    return new_uuid(_node)


def new_keys(n: int) -> list[str]:
    return [new_uuid(_node) for _ in range(n)]


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class Row:
    """One brainlessdb figure next to one baseline, both medians of the same number of repeats."""

    bench: str
    measure: str
    unit: str
    higher_is_better: bool
    value: float
    baseline: str
    baseline_value: float
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class Series:
    """The per-repeat samples of one measured quantity."""

    name: str
    unit: str
    higher_is_better: bool
    samples: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        return median(self.samples)


def pair(bench: str, measure: str, ours: Series, theirs: Series, note: str = "") -> Row:
    """A row comparing ``ours`` (brainlessdb) with the baseline ``theirs`` (same unit)."""
    assert ours.unit == theirs.unit, (ours.unit, theirs.unit)
    return Row(
        bench=bench,
        measure=measure,
        unit=ours.unit,
        higher_is_better=ours.higher_is_better,
        value=ours.value,
        baseline=theirs.name,
        baseline_value=theirs.value,
        samples=list(ours.samples),
        baseline_samples=list(theirs.samples),
        note=note,
    )


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")
