"""The connection of one command: global options to a nats-py client, the namespace's buckets, a database.

This is the one module of the command that talks to NATS directly (``nats`` is imported nowhere else
outside ``brainlessdb.storage.nats``): to connect with the operator's credentials and fail fast, and to
read what the library has no call for (stream settings and sizes, a key's history, the server's version
and the account's permissions). Entities are read and written through ``Brainless`` and the storage seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import nats  # noqa: TID251  # the command connects with the operator's options itself
import nats.errors  # noqa: TID251
import nats.js.errors  # noqa: TID251
from nats.aio.client import Client  # noqa: TID251
from nats.js import JetStreamContext  # noqa: TID251
from nats.js.api import StreamInfo  # noqa: TID251

from brainlessdb.cli.common import CliError, NotFound, UsageError
from brainlessdb.core import names
from brainlessdb.errors import FlushError, InvalidNameError
from brainlessdb.shell.database import Brainless
from brainlessdb.storage.nats.errors import redact_servers
from brainlessdb.storage.nats.kv import NatsKVStorage

DEFAULT_URL: Final = "nats://127.0.0.1:4222"
DEFAULT_NAMESPACE: Final = "default"
CONNECT_ATTEMPTS: Final = 3  # a down server or refused credentials fail within a second, not minutes

# Options with the environment variable each falls back to (the nats CLI's names where it has them).
ENVIRONMENT: Final = {
    "server": "NATS_URL",
    "namespace": "BRAINLESS_NAMESPACE",
    "location": "BRAINLESS_LOCATION",
    "user": "NATS_USER",
    "password": "NATS_PASSWORD",
    "token": "NATS_TOKEN",
    "creds": "NATS_CREDS",
    "nkey": "NATS_NKEY",
    "tls_ca": "NATS_CA",
    "tls_cert": "NATS_CERT",
    "tls_key": "NATS_KEY",
}


@dataclass
class Settings:
    """The global options, after the environment filled in what the command line left out."""

    servers: list[str]
    namespace: str
    location: str
    timeout: float = 5.0
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds: str | None = None
    nkey: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def pick(name: str) -> str | None:
            given = options.get(name)
            if given:
                return str(given)
            fallback = env.get(ENVIRONMENT[name])
            return fallback or None

        servers = [url.strip() for url in (pick("server") or DEFAULT_URL).split(",") if url.strip()]
        namespace = pick("namespace") or DEFAULT_NAMESPACE
        try:
            names.check_namespace(namespace)
        except InvalidNameError as exc:
            raise UsageError(str(exc)) from None
        settings = cls(
            servers=servers,
            namespace=namespace,
            location=pick("location") or f"cli-{socket.gethostname()}",
            timeout=float(options.get("timeout") or 5.0),
            **{name: pick(name) for name in ("user", "password", "token", "creds", "nkey")},
            **{name: pick(name) for name in ("tls_ca", "tls_cert", "tls_key")},
        )
        if settings.tls_key and not settings.tls_cert:
            raise UsageError("--tls-key needs --tls-cert")
        return settings

    def nats_options(self) -> dict[str, Any]:
        """What ``nats.connect`` is given for the credentials and TLS (never shown anywhere)."""
        options: dict[str, Any] = {}
        if self.user:
            options["user"] = self.user
        if self.password:
            options["password"] = self.password
        if self.token:
            options["token"] = self.token
        if self.creds:
            options["user_credentials"] = self.creds
        if self.nkey:
            options["nkeys_seed"] = self.nkey
        if self.tls_ca or self.tls_cert:
            try:
                context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
                if self.tls_cert:
                    context.load_cert_chain(self.tls_cert, self.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise CliError(f"cannot load the TLS files: {exc}") from None
            options["tls"] = context
        return options

    def bucket(self, collection: str) -> str:
        return names.bucket_name(self.namespace, collection)


def check_collection_name(settings: Settings, name: str) -> str:
    """``name`` if it may name a collection of the namespace, else a usage error."""
    try:
        return names.check_collection(settings.namespace, name)
    except InvalidNameError as exc:
        raise UsageError(str(exc)) from None


async def connect(settings: Settings) -> Client:
    """A connected client: ``CliError`` at once when no server answers or the credentials are refused."""
    errors: list[Exception] = []

    async def quiet(exc: Exception) -> None:  # nats-py would log each error with its traceback
        errors.append(exc)

    client = Client()
    options: dict[str, Any] = {
        "name": "brainless-cli",
        "connect_timeout": max(1, int(settings.timeout)),
        "allow_reconnect": True,
        "max_reconnect_attempts": CONNECT_ATTEMPTS,
        "reconnect_time_wait": 0.2,
        "error_cb": quiet,
        **settings.nats_options(),
    }
    try:
        await asyncio.wait_for(client.connect(settings.servers, **options), settings.timeout + 5)
    except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
        with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(client.close(), 1)
        where = redact_servers(settings.servers)
        causes = [*errors, exc]
        if any("authorization violation" in str(cause).lower() for cause in causes):
            raise CliError(f"NATS at {where} refused the credentials") from None
        if any("authentication" in str(cause).lower() for cause in causes):
            raise CliError(f"NATS at {where} refused the credentials") from None
        reason = next((cause for cause in reversed(errors) if isinstance(cause, OSError)), exc)
        raise CliError(f"cannot connect to NATS at {where}: {describe(reason)}") from None
    # Connected: a command that runs for long (watch) rides out outages as a node does.
    client.options["max_reconnect_attempts"] = -1
    return client


def describe(exc: BaseException) -> str:
    """An exception in a few words, for the one line of an error."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    return text.removeprefix("nats: ")


class Session:
    """One command's connection: the client, a storage over it, and a database once asked for."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._storage: NatsKVStorage | None = None
        self._db: Brainless | None = None

    async def __aenter__(self) -> Session:
        self._client = await connect(self.settings)
        self._storage = NatsKVStorage(self._client, timeout=self.settings.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        db, self._db = self._db, None
        try:
            if db is not None:
                await db.stop()
        finally:
            if self._storage is not None:
                await self._storage.close()
            if self._client is not None and not self._client.is_closed:
                with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(self._client.drain(), 2)
                if not self._client.is_closed:
                    with contextlib.suppress(nats.errors.Error, OSError):
                        await self._client.close()

    async def stop_database(self) -> None:
        """Stop the database (its pending changes written); the connection stays open."""
        db, self._db = self._db, None
        if db is not None:
            await db.stop()

    async def flush(self) -> None:
        """Write the database's pending changes now; ``CliError`` naming what could not be written."""
        if self._db is None:
            return
        try:
            await self._db.flush()
        except FlushError as exc:
            causes = "; ".join(f"{key}: {cause}" for key, cause in exc.errors.items())
            raise CliError(f"not written: {causes or exc}") from None

    @property
    def client(self) -> Client:
        assert self._client is not None, "not connected"
        return self._client

    @property
    def js(self) -> JetStreamContext:
        return self.client.jetstream(timeout=self.settings.timeout)

    @property
    def storage(self) -> NatsKVStorage:
        assert self._storage is not None, "not connected"
        return self._storage

    async def collections(self) -> list[str]:
        """The collections of the namespace: its buckets named ``{namespace}-{collection}``, sorted."""
        prefix = f"{self.settings.namespace}-"
        found = []
        for bucket in await self.storage.list_buckets(prefix):
            name = bucket[len(prefix) :]
            if names.is_collection_name(name):  # not the namespace's own ({namespace}--leases)
                found.append(name)
        return found

    async def stream(self, collection: str) -> StreamInfo:
        """The stream of a collection's bucket; ``NotFound`` when the namespace has no such collection."""
        check_collection_name(self.settings, collection)
        try:
            return await self.js.stream_info(f"KV_{self.settings.bucket(collection)}")
        except nats.js.errors.NotFoundError:
            raise NotFound(f"no collection {collection!r} in namespace {self.settings.namespace!r}") from None

    async def database(
        self, *, flush_interval: float = 0.5, setup: Callable[[Brainless], None] | None = None
    ) -> Brainless:
        """The namespace's database, started (every collection loaded) on this connection.

        ``setup`` is called with it before it starts.
        """
        if self._db is None:
            db = Brainless(
                self.client,
                namespace=self.settings.namespace,
                location=self.settings.location,
                flush_interval=flush_interval,
                claim_timeout=self.settings.timeout,
            )
            if setup is not None:
                setup(db)
            self._db = db
            await db.start()
        return self._db
