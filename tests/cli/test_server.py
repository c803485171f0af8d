"""``brainless server`` stops on SIGTERM and SIGINT and says when its port is taken; an embedded server
never outlives the Python process that started it, however that process ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from brainlessdb.embedded import LOOPBACK, free_port
from tests.cli.conftest import clean_environment, command

pytestmark = pytest.mark.nats


def running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process not yet reaped by its new parent, a zombie, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.05)
    return False


def start_server(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command("server", "--data", str(tmp_path / "data"), "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_brainless_server_stops_nats_server_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    port = free_port()
    process = start_server(tmp_path, port)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"nats-server nats://{LOOPBACK}:{port} (pid ")
        nats_pid = int(first.split("(pid ")[1].split(")")[0])
        assert running(nats_pid)
        with socket.create_connection((LOOPBACK, port), timeout=5):
            pass  # it serves
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.strip() == f"nats-server stopped ({signum.name})"
    assert err == ""
    assert wait_gone(nats_pid)


def test_brainless_server_says_in_one_line_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_server(tmp_path, port)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert out == ""
    assert err == f"error: port {port} on {LOOPBACK} is already in use (another nats-server?); try --port\n"


OWNER = textwrap.dedent(
    """
    import sys, time
    from brainlessdb.embedded import EmbeddedServer
    server = EmbeddedServer(store_dir=sys.argv[1]).start()
    print(server.pid, flush=True)
    sys.stdin.readline()  # the test has seen the server run
    if sys.argv[2] == "raise":
        raise RuntimeError("the owner fails")
    if sys.argv[2] == "wait":
        time.sleep(60)
    """
)


@pytest.mark.parametrize("ending", ["exit", "raise", "SIGKILL", "SIGTERM"])
def test_an_embedded_server_never_outlives_its_owner(tmp_path: Path, ending: str) -> None:
    """The owner exits normally, by an exception, or is killed: its nats-server is gone within seconds."""
    if ending.startswith("SIG") and not sys.platform.startswith("linux"):
        pytest.skip("a killed owner takes its servers with it on Linux only")
    mode = "wait" if ending.startswith("SIG") else ending
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "data"), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    ) as owner:
        try:
            assert owner.stdout is not None
            nats_pid = int(owner.stdout.readline())
            assert running(nats_pid)
            assert owner.stdin is not None
            owner.stdin.write("go\n")
            owner.stdin.flush()
            if ending.startswith("SIG"):
                owner.send_signal(getattr(signal, ending))
            _, err = owner.communicate(timeout=20)
        finally:
            if owner.poll() is None:
                owner.kill()
    try:
        assert wait_gone(nats_pid), f"nats-server {nats_pid} still runs after its owner ended ({ending})"
    finally:
        if running(nats_pid):
            os.kill(nats_pid, signal.SIGKILL)
    if ending == "raise":
        assert owner.returncode == 1 and "the owner fails" in err


def test_a_server_started_from_a_thread_that_ends_keeps_running(tmp_path: Path) -> None:
    """Servers are started from one thread that lasts: the end of the caller's thread is not a death."""
    import threading

    from brainlessdb.embedded import EmbeddedServer

    server = EmbeddedServer(store_dir=tmp_path / "data")
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    try:
        pid = server.pid
        assert pid is not None
        time.sleep(0.5)
        assert server.is_running and running(pid)
    finally:
        server.close()
    assert not running(pid)
