"""Running the ``brainless`` command: in this process (fast, for most tests) or as a real subprocess
(exit codes, stderr and signals exactly as an operator gets them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from brainlessdb.cli import main
from brainlessdb.cli.connection import ENVIRONMENT


@dataclass
class Result:
    code: int
    out: str
    err: str

    def records(self) -> list[dict[str, Any]]:
        """Each line of stdout as a JSON object (``--json``)."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def error_line(self) -> str:
        """stderr, which must be exactly one line, and never a traceback."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got: {self.err!r}"
        assert "Traceback" not in self.err
        return lines[0]


Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's own NATS_URL, credentials and namespace never reach a test."""
    for variable in ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli("find", "call", "state=x")``: the command run in this process."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "brainlessdb", *args]


def clean_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in set(ENVIRONMENT.values())}
    env.update(extra)
    return env


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """``run_cli("ls", env={...})``: the command as a subprocess, waited for (60 s at most)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> Result:
        done = subprocess.run(
            command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_environment(**(env or {})),
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run
