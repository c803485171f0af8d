#!/usr/bin/env python3
"""Set-up and checks in one place, needing only Python 3.10+ and pip.

    python3 tasks.py demo        # make .venv, install, run the demo on an embedded nats-server
    python3 tasks.py test        # make .venv, install, run every check CI runs (lint, types, tests)
    python3 tasks.py bench       # make .venv, install, run the benchmark suite (not part of the tests)

Extra arguments after the task go to the underlying command (pytest for ``test``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".installed"


def run(*command: str | Path) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True)


def install() -> None:
    """Create .venv and install the project with its development tools (again when pyproject.toml changed)."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this file may be run by an older python3
        sys.exit("Python 3.10 or newer is needed")
    if not PYTHON.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    config = (ROOT / "pyproject.toml").stat().st_mtime
    if STAMP.exists() and STAMP.stat().st_mtime >= config:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.touch()


def demo(args: list[str]) -> None:
    run(PYTHON, "-m", "brainlessdb", "demo", *args)


def test(args: list[str]) -> None:
    run(PYTHON, "-m", "ruff", "format", "--check", "src", "tests", "benchmarks", "tasks.py")
    run(PYTHON, "-m", "ruff", "check", "src", "tests", "benchmarks", "tasks.py")
    run(PYTHON, "-m", "mypy")
    run(BIN / "lint-imports")
    run(PYTHON, "-m", "pytest", *args)


def bench(args: list[str]) -> None:
    run(PYTHON, "-m", "benchmarks", *args)


TASKS = {"demo": demo, "test": test, "bench": bench}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    install()
    try:
        TASKS[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)


if __name__ == "__main__":
    main()
