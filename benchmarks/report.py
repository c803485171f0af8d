"""The report: machine information, Markdown tables for stdout, the targets, and the JSON file."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Params, Row

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    """A goal for later: a row's ratio (or, without ``baseline``, its value) compared with ``threshold``."""

    text: str
    bench: str
    measure: str  # prefix of Row.measure
    baseline: str | None  # prefix of Row.baseline; None judges the value itself
    at_least: bool
    threshold: float


TARGETS: tuple[Target, ...] = (
    Target("flush (new) >= 0.8x raw publish_async", "flush_new", "", "raw js.publish_async", True, 0.8),
    Target("flush (update) >= 0.8x raw publish_async", "flush_update", "", "raw js.publish_async", True, 0.8),
    Target("load >= 0.8x raw ordered-consumer replay", "load", "", "raw ordered", True, 0.8),
    Target("load (history) >= 0.7x raw replay", "load_history", "", "raw ordered", True, 0.7),
    Target(
        "start() from a snapshot of 1,000,000 entities, 1% changed since, <= 3 s",
        "warm_restart",
        "start() of a node of 1000000 entities",
        None,
        False,
        3.0,
    ),
    Target(
        "load flat with history (>= 0.9x the history=1 load rate)",
        "load_history",
        "",
        "brainlessdb start()",
        True,
        0.9,
    ),
    Target("propagation p50 <= 2x raw put->watch p50", "propagation", "p50", "raw", False, 2.0),
    Target("update_if >= 0.6x raw kv.get + kv.update", "claims", "", "raw kv.get", True, 0.6),
    Target("indexed find <= 2 us", "in_memory", "find(", None, False, 2.0),
    Target(
        "indexed find <= 2 us at every size", "scaling", "find(channel_id=...) indexed, N=", None, False, 2.0
    ),
    Target(
        "indexed find flat with N (<= 1.5x the smallest N's)",
        "scaling",
        "find(",
        "brainlessdb at N=",
        False,
        1.5,
    ),
    Target("order_by one key <= 1.3x sorted()", "in_memory", "order_by('priority')", "sorted", False, 1.3),
    Target("order_by two keys <= 1.3x sorted()", "in_memory", "order_by('state'", "sorted", False, 1.3),
    Target(
        "order_by whole collection <= 1.3x sorted() at every size",
        "scaling",
        "order_by(",
        "sorted",
        False,
        1.3,
    ),
    Target(
        "unindexed nested filter <= 1.5x comprehension",
        "in_memory",
        "filter(caller__city__startswith",
        "list comprehension",
        False,
        1.5,
    ),
    Target("add <= 3 us", "in_memory", "add(", None, False, 3.0),
    Target("add <= 3 us at every size", "scaling", "add(", None, False, 3.0),
    Target("tracked attribute set <= 1 us", "in_memory", "entity.state", None, False, 1.0),
    Target("tracked attribute set <= 1 us at every size", "scaling", "entity.state", None, False, 1.0),
    Target("memory per entity (fresh) <= 1.0x a plain dict's", "memory", "fresh", "plain dict", False, 1.0),
    Target(
        "memory per entity (every entity updated once) <= 1.0x a plain dict's",
        "memory",
        "every entity updated",
        "plain dict",
        False,
        1.0,
    ),
    Target(
        "memory per entity (every field stamped apart) <= 1.2x a plain dict's",
        "memory",
        "every field of every entity",
        "plain dict",
        False,
        1.2,
    ),
)


def _matches(target: Target, row: Row) -> bool:
    if row.bench != target.bench or not row.measure.startswith(target.measure):
        return False
    if target.baseline is None:
        return row.baseline != "" and not row.baseline.startswith("brainlessdb")
    return row.baseline.startswith(target.baseline)


def evaluate(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Each target with what was measured for it and whether it holds (None when not measured)."""
    results = []
    for target in TARGETS:
        found = [row for row in rows if _matches(target, row)]
        figures = []
        holds: bool | None = None if not found else True
        for row in found:
            figure = row.value if target.baseline is None else row.ratio
            ok = figure >= target.threshold if target.at_least else figure <= target.threshold
            holds = bool(holds and ok)
            if target.baseline is None:
                figures.append(f"{fmt(row.value, row.unit)} {row.unit}")
            else:
                figures.append(f"{row.ratio:.2f}x")
        results.append(
            {"target": target.text, "measured": ", ".join(figures) or "not measured", "holds": holds}
        )
    return results


def fmt(value: float, unit: str) -> str:
    if unit in ("entities/s", "bytes/entity"):
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| benchmark | measure | brainlessdb | baseline | baseline value | ratio |",
        "|---|---|---:|---|---:|---:|",
    ]
    for row in rows:
        note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.bench} | {row.measure}{note} | {fmt(row.value, row.unit)} {row.unit} | {row.baseline} "
            f"| {fmt(row.baseline_value, row.unit)} {row.unit} | {row.ratio:.2f}x |"
        )
    return "\n".join(lines)


def targets_table(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| target | measured | holds |", "|---|---|---|"]
    for result in results:
        holds = {True: "yes", False: "**no**", None: "-"}[result["holds"]]
        lines.append(f"| {result['target']} | {result['measured']} | {holds} |")
    return "\n".join(lines)


def markdown(machine: dict[str, Any], params: Params, rows: Sequence[Row], errors: dict[str, str]) -> str:
    main = [row for row in rows if row.bench != "scaling"]
    scaling = [row for row in rows if row.bench == "scaling"]
    parts = [
        "## brainlessdb benchmarks",
        "",
        f"python {machine['python']}, nats-server {machine['nats_server']}, nats-py {machine['nats_py']}, "
        f"msgspec {machine['msgspec']}, {machine['cpus']} CPUs ({machine['platform']}), "
        f"commit {machine['commit']}",
        f"N={params.n}, medians of {params.repeats} repeats; ratio = brainlessdb / baseline "
        "(for entities/s higher is better; for times and bytes lower is better).",
        "",
    ]
    if main:
        parts += [table(main), ""]
    if scaling:
        parts += ["### scaling", "", table(scaling), ""]
    parts += ["### targets", "", targets_table(evaluate(rows)), ""]
    if errors:
        parts += ["### errors", ""] + [f"- {name}: {error}" for name, error in errors.items()] + [""]
    return "\n".join(parts)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _command(*args: str) -> str:
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout or done.stderr).strip() or "?"


def machine_info(server_binary: str | None) -> dict[str, Any]:
    import brainlessdb

    source = Path(brainlessdb.__file__).resolve().parent
    commit = _command("git", "rev-parse", "--short", "HEAD")
    if source != ROOT / "src" / "brainlessdb":
        commit += f" of this repository, but brainlessdb imported from {source}"
    elif _command("git", "status", "--porcelain", "--untracked-files=no", "src") not in ("", "?"):
        commit += " (src modified)"
    server = _command(server_binary, "--version") if server_binary else "not used"
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "nats_server": server.removeprefix("nats-server: "),
        "nats_py": _version("nats-py"),
        "msgspec": _version("msgspec"),
        "brainlessdb": _version("brainlessdb"),
        "commit": commit,
        "brainlessdb_source": str(source),
        "executable": sys.executable,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(
    path: Path,
    machine: dict[str, Any],
    params: Params,
    selected: Sequence[str],
    rows: Sequence[Row],
    errors: dict[str, str],
    seconds: float,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine,
        "parameters": {**dataclasses.asdict(params), "benchmarks": list(selected)},
        "seconds": seconds,
        "results": [row.to_json() for row in rows],
        "targets": evaluate(rows),
        "errors": errors,
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
