"""Locations on loopback: one nats-server per location (a JetStream domain), joined by leaf links that a
test, a benchmark or the demo can cut and heal, to see a partition happen:

    async with EmbeddedLocations(["prague", "brno"]) as places:
        db = Brainless(places.url("brno"), namespace="app", location="brno-1",
                       domain="brno", peers=["prague"])
        places.links["brno"].cut()

The first location is the hub, each other one its leaf node, joined through a ``Link`` of its own: a
loopback TCP proxy that can be cut by resetting its connections or by black-holing its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from brainlessdb.embedded import LOOPBACK, EmbeddedServer, free_port

CutMode = Literal["reset", "blackhole"]


class Link:
    """A loopback TCP proxy that can be cut and healed: ``127.0.0.1:port`` forwarded to ``target``.

    ``cut("reset")`` aborts every connection and refuses new ones (a link that fails loudly);
    ``cut("blackhole")`` keeps the connections open but forwards no byte (a link that goes silent: the
    bytes wait, as TCP would retransmit them). ``heal()`` lets connections and bytes through again. Runs
    in the event loop that ``start()`` is awaited in.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.mode: CutMode | None = None
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[object]] = set()  # one per accepted connection

    async def start(self) -> Link:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self.port)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        if self.mode == "reset":
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, upstream_writer)
        self._pairs.add(pair)
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            self._pairs.discard(pair)
            for side in pair:
                side.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                # A black hole holds the bytes until it heals (the sockets stay open), as TCP would
                # retransmit them.
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()

    def cut(self, mode: CutMode = "reset") -> None:
        """Cut the link: ``reset`` aborts every connection, ``blackhole`` silently drops every byte."""
        self.mode = mode
        if mode == "reset":
            for pair in list(self._pairs):
                for side in pair:
                    side.transport.abort()
        else:
            self._flowing.clear()

    def heal(self) -> None:
        """Let connections and bytes through again."""
        self.mode = None
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for pair in list(self._pairs):
            for side in pair:
                side.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        # Each connection's handler ends once its pumps have: waited for here, so that none is left for the
        # event loop's shutdown to cancel (Python 3.11's stream server logs a cancelled handler as an error).
        if self._handlers:
            await asyncio.wait(list(self._handlers))


class EmbeddedLocations:
    """One nats-server per location, each in its own JetStream domain: the first location is the hub,
    each other one its leaf node, joined through a ``Link`` of its own (``links[domain]``) that can be
    cut. The hub's leaf listener does not advertise itself, so a leaf can reach it only through its link.
    """

    def __init__(
        self,
        domains: Sequence[str],
        *,
        base_dir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
    ) -> None:
        if len(domains) < 2 or len(set(domains)) != len(domains):
            raise ValueError(f"locations need two distinct domains or more, got {list(domains)}")
        self.domains = list(domains)
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if base_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="brainless-locations-")
            base_dir = self._own_dir.name
        self._base = Path(base_dir)
        self._binary = binary
        self._hub_port = free_port()
        self.servers: dict[str, EmbeddedServer] = {}
        self.links: dict[str, Link] = {}

    def url(self, domain: str) -> str:
        return self.servers[domain].url

    async def start(self) -> EmbeddedLocations:
        """Start the hub and every leaf with its link; all are stopped again if one fails."""
        hub, *leaves = self.domains
        try:
            self.servers[hub] = self._server(
                hub, f'leafnodes {{ listen: "{LOOPBACK}:{self._hub_port}", no_advertise: true }}'
            )
            for leaf in leaves:
                link = self.links[leaf] = await Link(self._hub_port).start()
                remote = f'{{ url: "nats-leaf://{LOOPBACK}:{link.port}" }}'
                self.servers[leaf] = self._server(
                    leaf, f"leafnodes {{ reconnect: 1, remotes: [ {remote} ] }}"
                )
            await asyncio.to_thread(self._start_servers)
        except BaseException:
            await self.close()
            raise
        return self

    def _server(self, domain: str, leafnodes: str) -> EmbeddedServer:
        return EmbeddedServer(
            store_dir=self._base / domain,
            name=domain,
            jetstream_config=f"domain: {domain}",
            extra_config=leafnodes,
            binary=self._binary,
        )

    def _start_servers(self) -> None:
        for server in self.servers.values():
            server.start(wait=False)
        for server in self.servers.values():
            server.wait_ready()

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()
        for server in self.servers.values():
            server.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    async def __aenter__(self) -> EmbeddedLocations:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
