"""``brainless console`` as an operator runs it: a real subprocess, its output, exit codes and signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from brainlessdb.embedded import EmbeddedServer
from tests.console.conftest import clean_environment, console_command, first_line, running_console
from tests.console.data import CALLS, seed

pytestmark = pytest.mark.nats


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        console_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(**(env or {})),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


async def test_the_console_prints_its_address_serves_the_namespace_and_stops_on_sigterm(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    await seed(nats_server.url, namespace)
    with running_console("-s", nats_server.url, "-n", namespace, "console", "--listen", "127.0.0.1:0") as con:
        assert con.url.startswith("http://127.0.0.1:") and con.url.endswith("/")
        port = int(con.url.rstrip("/").rsplit(":", 1)[1])
        assert port > 0
        status, body = get(con.url + "api/collections")
        assert status == 200
        assert {row["collection"]: row["entities"] for row in body["collections"]} == {
            "call": len(CALLS),
            "agent": 3,
        }
        status, info = get(con.url + "api/info")
        assert info["namespace"] == namespace
        code, err = con.stop()
    assert code == 0, err
    assert f"console of namespace {namespace!r} at {con.url} (without a token)" in err
    assert "Traceback" not in err
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_sigint_stops_it_too_and_json_prints_the_address_as_an_object(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    process = subprocess.Popen(
        console_command(
            "-s", nats_server.url, "-n", namespace, "console", "--listen", "127.0.0.1:0", "--json"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_environment(),
    )
    try:
        record = json.loads(first_line(process))
        assert get(record["url"] + "api/info")[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out == ""


async def test_the_token_comes_from_the_option_or_the_environment(
    nats_server: EmbeddedServer, namespace: str
) -> None:
    base = ("-s", nats_server.url, "-n", namespace, "console", "--listen", "127.0.0.1:0")
    for args, env in (
        ((*base, "--console-token", "t0ken"), {}),
        (base, {"BRAINLESS_CONSOLE_TOKEN": "t0ken"}),
    ):
        with running_console(*args, env=env) as con:
            assert get(con.url + "api/info")[0] == 401
            assert get(con.url + "api/info", {"Authorization": "Bearer t0ken"})[0] == 200
            assert get(con.url + "api/info?token=t0ken")[0] == 200
            code, err = con.stop()
        assert code == 0 and "(with a token)" in err and "t0ken" not in err


@pytest.mark.parametrize(
    ("listen", "extra", "words"),
    [
        ("0.0.0.0:0", (), "not a loopback address"),
        ("[::]:0", (), "not a loopback address"),
        ("console.example:0", (), "not a loopback address"),
        ("0.0.0.0:0", ("--allow-remote",), "--allow-remote needs a token"),
        ("127.0.0.1", (), "is not HOST:PORT"),
        ("127.0.0.1:http", (), "is not a port"),
    ],
)
def test_an_address_other_machines_reach_is_refused_unless_allowed_with_a_token(
    nats_server: EmbeddedServer, namespace: str, listen: str, extra: tuple[str, ...], words: str
) -> None:
    done = run("-s", nats_server.url, "-n", namespace, "console", "--listen", listen, *extra)
    assert done.returncode == 2
    assert words in one_line(done.stderr)
    assert done.stdout == ""


def test_a_taken_port_is_one_line_and_exit_1(nats_server: EmbeddedServer, namespace: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = run("-s", nats_server.url, "-n", namespace, "console", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in one_line(done.stderr)
    assert time.monotonic() - started < 30


def test_a_server_that_is_down_is_one_line_and_exit_1() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = run("-s", f"nats://127.0.0.1:{port}", "console", "--listen", "127.0.0.1:0")
    assert done.returncode == 1
    assert "cannot connect to NATS" in one_line(done.stderr)


def test_help_describes_the_console() -> None:
    done = run("console", "--help")
    assert done.returncode == 0
    for option in ("--listen", "--console-token", "--allow-remote", "--server", "--namespace"):
        assert option in done.stdout
