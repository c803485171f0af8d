"""A loopback TCP proxy that a test can cut and heal: how a partition between two locations is made.

``cut("reset")`` aborts every connection and refuses new ones (a link that fails loudly);
``cut("blackhole")`` keeps the connections open but forwards no byte either way (a link that goes silent).
``heal()`` lets bytes and connections through again. Runs in the test's event loop; loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

from brainlessdb.embedded import LOOPBACK, free_port

CutMode = Literal["reset", "blackhole"]


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``, until cut."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.mode: CutMode | None = None
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self.port)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
