"""The console under test: in this process over a real nats-server (the API), or as the real command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from brainlessdb.cli.connection import ENVIRONMENT, Session, Settings
from brainlessdb.console.app import make_app
from brainlessdb.console.command import TOKEN_VARIABLE
from brainlessdb.console.events import EventHub
from brainlessdb.console.reader import Reader
from brainlessdb.embedded import EmbeddedServer

VARIABLES = (*ENVIRONMENT.values(), TOKEN_VARIABLE)
START_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's own NATS_URL, credentials, namespace and console token never reach a test."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@dataclass
class Console:
    """A console served on a free loopback port, and an HTTP client for it."""

    url: str
    http: aiohttp.ClientSession
    reader: Reader

    async def get(self, path: str, **options: Any) -> tuple[int, Any]:
        """``GET path``: the status and the JSON body."""
        async with self.http.get(self.url + path, **options) as response:
            return response.status, await response.json()


@contextlib.asynccontextmanager
async def serve(
    url: str, namespace: str, *, token: str | None = None, keepalive: float = 15.0
) -> AsyncIterator[Console]:
    """The console of ``namespace`` in this process, as ``brainless console`` serves it."""
    settings = Settings(servers=[url], namespace=namespace, location="console-test")
    async with Session(settings) as session:
        reader = Reader(session, EventHub())
        await reader.start()
        runner = web.AppRunner(
            make_app(reader, token=token, keepalive=keepalive), access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            async with aiohttp.ClientSession() as http:
                yield Console(f"http://127.0.0.1:{port}", http, reader)
        finally:
            await runner.cleanup()


@pytest.fixture
async def console(nats_server: EmbeddedServer, namespace: str) -> AsyncIterator[Console]:
    async with serve(nats_server.url, namespace) as served:
        yield served


# -- the real command ------------------------------------------------------------------------------


@dataclass
class Running:
    """``brainless console`` running as a subprocess; ``url`` is the line it printed."""

    process: subprocess.Popen[str]
    url: str

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then its exit code and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def console_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "brainlessdb", *args]


def clean_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    env.update(extra)
    return env


def first_line(process: subprocess.Popen[str]) -> str:
    """The first line the console prints (its address, once it listens), or "" if it printed none within
    ``START_TIMEOUT`` seconds: a console that hangs fails the test instead of hanging it."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    return process.stdout.readline().strip() if ready else ""


@contextlib.contextmanager
def running_console(*args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    """``brainless ARGS console --listen 127.0.0.1:0`` until the block ends (then stopped, by its pid)."""
    process = subprocess.Popen(
        console_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_environment(**(env or {})),
    )
    try:
        line = first_line(process)
        if not line.startswith("http://"):
            process.kill()
            _, err = process.communicate(timeout=20)
            raise AssertionError(f"the console did not start (exit {process.returncode}): {err}")
        running = Running(process, line)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not met within {timeout}s")
        await asyncio.sleep(0.05)
