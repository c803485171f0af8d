#!/usr/bin/env python3
"""Set-up and checks in one place, needing only Python 3.10+ and pip.

    python3 tasks.py demo        # make .venv, install, run the demo on an embedded nats-server
    python3 tasks.py test        # make .venv, install, run every check CI runs (lint, types, tests)
    python3 tasks.py bench       # make .venv, install, run the benchmark suite (not part of the tests)
    python3 tasks.py docs        # make .venv, install, serve the documentation site on 127.0.0.1:8000

Extra arguments after the task go to the underlying command (pytest for ``test``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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
    run(PYTHON, "-m", "ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "tasks.py")
    run(PYTHON, "-m", "ruff", "check", "src", "tests", "benchmarks", "examples", "tasks.py")
    run(PYTHON, "-m", "mypy")
    run(BIN / "lint-imports")
    build_docs()
    run(PYTHON, "-m", "pytest", *args)


def build_docs() -> None:
    """Build the documentation site where nothing keeps it: --strict fails on a broken link or include."""
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # the theme's notice, not a problem of these pages
    with tempfile.TemporaryDirectory(prefix="brainless-site-") as site:
        run(PYTHON, "-m", "mkdocs", "build", "--strict", "--site-dir", site)


def docs(args: list[str]) -> None:
    run(PYTHON, "-m", "mkdocs", "serve", *args)


def bench(args: list[str]) -> None:
    run(PYTHON, "-m", "benchmarks", *args)


TASKS = {"demo": demo, "test": test, "bench": bench, "docs": docs}


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
