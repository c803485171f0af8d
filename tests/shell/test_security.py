"""Secured NATS: every way to authenticate, TLS, per-bucket permissions, and no secret in logs or reprs.

Each test starts the nats-server it needs (loopback, free port, its own configuration) and stops it. Keys,
JWTs and certificates are made here, in memory or in the test's temporary directory.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

import brainlessdb
from brainlessdb import Brainless
from brainlessdb.embedded import EmbeddedServer, config_block, free_port
from brainlessdb.errors import FlushError, PermissionDeniedError, StorageError
from brainlessdb.storage.base import Write
from brainlessdb.storage.nats.errors import redact_url
from brainlessdb.storage.nats.kv import NatsKVStorage
from tests.helpers import eventually

pytestmark = pytest.mark.nats

STEP = 15.0  # seconds any single awaited step may take before the test fails instead of hanging
NAMESPACE = "app"
StartServer = Callable[..., EmbeddedServer]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers with the given configuration; every one is stopped after the test."""
    servers: list[EmbeddedServer] = []

    def start(extra_config: str = "") -> EmbeddedServer:
        server = EmbeddedServer(store_dir=tmp_path / f"nats-{len(servers)}", extra_config=extra_config)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


def secret(kind: str) -> str:
    """A credential no log line, message or repr may contain."""
    return f"{kind}{uuid.uuid4().hex}"


def users(*entries: dict[str, Any]) -> str:
    return config_block("authorization", {"users": list(entries)})


async def write_then_read(
    url: str, options: dict[str, Any] | None = None, namespace: str = NAMESPACE
) -> None:
    """One node adds and flushes an entity; a second node, started afterwards, loads it."""

    async def run() -> None:
        async with Brainless(
            url, namespace=namespace, location="writer", flush_interval=60, nats_options=dict(options or {})
        ) as writer:
            writer.item.add(name="first", size=1)
            await writer.flush()
            async with Brainless(
                url, namespace=namespace, location="reader", nats_options=dict(options or {})
            ) as reader:
                await reader.item.load()
                found = await reader.item.find(name="first")
                assert found is not None and found.size == 1

    # A refused connection is retried for ever: the bound turns a hang into a failure.
    await asyncio.wait_for(run(), 3 * STEP)


async def refused(url: str, **options: Any) -> StorageError:
    """The error of a connection attempt the server refuses (no retrying)."""
    with pytest.raises(StorageError) as info:
        await asyncio.wait_for(
            NatsKVStorage.connect(
                url, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=2, **options
            ),
            STEP,
        )
    return info.value


# -- user and password, token --------------------------------------------------------------------


async def test_user_and_password_in_the_url(start_server: StartServer) -> None:
    password = secret("pw")
    server = start_server(users({"user": "app", "password": password}))
    await write_then_read(f"nats://app:{password}@127.0.0.1:{server.port}")
    error = await refused(f"nats://app:wrong@127.0.0.1:{server.port}")
    assert "wrong" not in str(error)


async def test_user_and_password_as_options(start_server: StartServer) -> None:
    password = secret("pw")
    server = start_server(users({"user": "app", "password": password}))
    await write_then_read(server.url, {"user": "app", "password": password})
    await refused(server.url)  # anonymous


@pytest.mark.parametrize("where", ["url", "options"])
async def test_token(start_server: StartServer, where: str) -> None:
    token = secret("tok")
    server = start_server(config_block("authorization", {"token": token}))
    if where == "url":
        await write_then_read(f"nats://{token}@127.0.0.1:{server.port}")
    else:
        await write_then_read(server.url, {"token": token})
    await refused(server.url, token="not-the-token")


# -- nkeys and credentials files -----------------------------------------------------------------


def new_keypair(prefix: int) -> Any:
    nkeys = pytest.importorskip("nkeys", reason="nkeys (a dev dependency) makes the test keys")
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


@pytest.mark.parametrize("where", ["seed", "seed file"])
async def test_nkey(start_server: StartServer, tmp_path: Path, where: str) -> None:
    nkeys = pytest.importorskip("nkeys", reason="nkeys (a dev dependency) makes the test keys")
    user = new_keypair(nkeys.PREFIX_BYTE_USER)
    server = start_server(users({"nkey": user.public_key.decode()}))
    seed = user.seed.decode()
    if where == "seed":
        await write_then_read(server.url, {"nkeys_seed_str": seed})
    else:
        path = tmp_path / "user.nk"
        path.write_text(seed + "\n")
        await write_then_read(server.url, {"nkeys_seed": str(path)})
    other = new_keypair(nkeys.PREFIX_BYTE_USER)
    await refused(server.url, nkeys_seed_str=other.seed.decode())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict[str, Any], signer: Any) -> str:
    """A NATS JWT (``ed25519-nkey``) issued by ``signer``, as ``nsc`` would make it."""
    claims = {**claims, "iat": int(time.time()), "iss": signer.public_key.decode()}
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{header}.{body}.{b64url(signer.sign(f'{header}.{body}'.encode()))}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True}


def operator_setup(tmp_path: Path) -> tuple[str, Path]:
    """Server configuration of an operator with a system account and an account with JetStream, and the
    ``.creds`` file (user JWT + seed) of a user of that account."""
    nkeys = pytest.importorskip("nkeys", reason="nkeys (a dev dependency) signs the test JWTs")
    operator = new_keypair(nkeys.PREFIX_BYTE_OPERATOR)
    system = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    account = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user = new_keypair(nkeys.PREFIX_BYTE_USER)

    def account_jwt(keys: Any, name: str, limits: dict[str, Any]) -> str:
        nats_claims = {"type": "account", "version": 2, "limits": {**UNLIMITED, "conn": -1, **limits}}
        return sign_jwt({"sub": keys.public_key.decode(), "name": name, "nats": nats_claims}, operator)

    operator_claims = {"type": "operator", "version": 2, "system_account": system.public_key.decode()}
    operator_jwt = sign_jwt(
        {"sub": operator.public_key.decode(), "name": "op", "nats": operator_claims}, operator
    )
    jetstream = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    user_claims = {"type": "user", "version": 2, "pub": {}, "sub": {}, **UNLIMITED}
    user_jwt = sign_jwt({"sub": user.public_key.decode(), "name": "app", "nats": user_claims}, account)

    (tmp_path / "operator.jwt").write_text(operator_jwt)
    creds = tmp_path / "app.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    config = "\n".join(
        [
            config_block("operator", str(tmp_path / "operator.jwt")),
            "resolver: MEMORY",
            config_block("system_account", system.public_key.decode()),
            config_block(
                "resolver_preload",
                {
                    system.public_key.decode(): account_jwt(system, "SYS", {}),
                    account.public_key.decode(): account_jwt(account, "APP", jetstream),
                },
            ),
        ]
    )
    return config, creds


async def test_credentials_file(start_server: StartServer, tmp_path: Path) -> None:
    config, creds = operator_setup(tmp_path)
    server = start_server(config)
    await write_then_read(server.url, {"user_credentials": str(creds)})
    await refused(server.url)


# -- TLS -----------------------------------------------------------------------------------------


class Certificates:
    """A test CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""

    def __init__(self, folder: Path) -> None:
        x509 = pytest.importorskip("cryptography.x509", reason="cryptography (a dev dependency) makes certs")
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)

        def name(common: str) -> Any:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

        def write_key(key: Any, path: Path) -> Path:
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            return path

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("brainless test CA"))
            .issuer_name(name("brainless test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        def issue(common: str, usage: Any, names: list[Any]) -> tuple[Path, Path]:
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(common))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
                )
            )
            if names:
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            cert_path = folder / f"{common}.pem"
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            return cert_path, write_key(key, folder / f"{common}.key")

        self.ca = folder / "ca.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = issue(
            "server",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        self.client_cert, self.client_key = issue("client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def server_config(self, *, verify_clients: bool = False) -> str:
        block: dict[str, Any] = {"cert_file": str(self.server_cert), "key_file": str(self.server_key)}
        if verify_clients:
            block.update(ca_file=str(self.ca), verify=True)
        return config_block("tls", block)

    def client_context(self, *, with_certificate: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        if with_certificate:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    folder = tmp_path / "certs"
    folder.mkdir()
    return Certificates(folder)


async def test_tls(start_server: StartServer, certificates: Certificates) -> None:
    server = start_server(certificates.server_config())
    await write_then_read(server.tls_url, {"tls": certificates.client_context()})
    # Also by name: the certificate is for localhost too.
    await write_then_read(
        f"tls://localhost:{server.port}", {"tls": certificates.client_context()}, namespace="byname"
    )
    # A client that does not trust the test CA refuses the server.
    await refused(server.tls_url, tls=ssl.create_default_context())


async def test_tls_with_client_certificates(start_server: StartServer, certificates: Certificates) -> None:
    server = start_server(certificates.server_config(verify_clients=True))
    await write_then_read(server.tls_url, {"tls": certificates.client_context(with_certificate=True)})
    await refused(server.tls_url, tls=certificates.client_context())  # no client certificate


# -- permissions ---------------------------------------------------------------------------------


def bucket_subjects(bucket: str) -> list[str]:
    """Every subject through which a client reads, watches or writes the KV bucket ``bucket``."""
    stream = f"KV_{bucket}"
    return [
        f"$KV.{bucket}.>",
        f"$JS.API.STREAM.*.{stream}",
        f"$JS.API.STREAM.MSG.*.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.*.{stream}",
        f"$JS.API.CONSUMER.*.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


# What docs/security.md lists as what a BrainlessDB user needs.
NEEDED_PUBLISH = [
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.CREATE.*",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.PURGE.*",
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.DIRECT.GET.*.>",
    "$JS.API.CONSUMER.CREATE.*.>",
    "$JS.API.CONSUMER.INFO.*.*",
    "$JS.API.CONSUMER.DELETE.*.*",
    "$JS.FC.>",
    "$KV.>",
]
NEEDED_SUBSCRIBE = ["_INBOX.>"]

ADMIN_PASSWORD = "admin-pw"
LIMITED_PASSWORD = "limited-pw"


@pytest.fixture
def restricted_server(start_server: StartServer) -> EmbeddedServer:
    """``admin`` may do anything; ``limited`` has only what BrainlessDB needs, minus three buckets of the
    ``app`` namespace: ``app-secret`` and ``app-vault`` (nor their schemas, which they hold), and writes
    only of ``app-readonly`` and of one key."""
    deny = [
        *bucket_subjects("app-secret"),
        *bucket_subjects("app-vault"),
        "$KV.app-readonly.>",
        "$KV.app-public.forbidden",
    ]
    return start_server(
        users(
            {"user": "admin", "password": ADMIN_PASSWORD},
            {
                "user": "limited",
                "password": LIMITED_PASSWORD,
                "permissions": {
                    "publish": {"allow": NEEDED_PUBLISH, "deny": deny},
                    "subscribe": {"allow": NEEDED_SUBSCRIBE},
                },
            },
        )
    )


def url_of(server: EmbeddedServer, user: str, password: str) -> str:
    return f"nats://{user}:{password}@127.0.0.1:{server.port}"


async def test_the_documented_permissions_are_enough(
    restricted_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await write_then_read(url_of(restricted_server, "limited", LIMITED_PASSWORD))
    assert [record.getMessage() for record in caplog.records] == []  # nothing was denied


async def test_a_denied_bucket_fails_fast_and_the_others_keep_working(
    restricted_server: EmbeddedServer,
) -> None:
    limited = url_of(restricted_server, "limited", LIMITED_PASSWORD)
    admin = url_of(restricted_server, "admin", ADMIN_PASSWORD)
    db = Brainless(limited, namespace=NAMESPACE, location="limited", flush_interval=60)
    await asyncio.wait_for(db.start(), STEP)
    try:
        public = db.public.add(name="visible")
        db.vault.add(name="kept")
        db.secret.add(name="hidden")
        started = time.monotonic()
        with pytest.raises(FlushError) as info:
            await asyncio.wait_for(db.flush(), STEP)
        # Fast: the server's refusal, not the 5 s acknowledgement timeout.
        assert time.monotonic() - started < 2.5
        errors = info.value.errors
        assert {key.partition("/")[0] for key in errors} == {"vault", "secret"}
        assert all(isinstance(error, PermissionDeniedError) for error in errors.values()), errors
        assert all(isinstance(error, PermissionError) for error in errors.values())

        # At the collection's first read, too.
        for collection in (db.secret, db.vault):
            with pytest.raises(PermissionDeniedError):
                await asyncio.wait_for(collection.find(name="hidden"), STEP)

        # The rest works: more writes, this node's load, and another node sees them.
        db.public.add(name="second")
        await asyncio.wait_for(db.public.flush(), STEP)
        await asyncio.wait_for(db.public.load(), STEP)
        assert db.public.count() == 2
        async with Brainless(admin, namespace=NAMESPACE, location="admin") as other:
            await asyncio.wait_for(other.public.load(), STEP)
            assert {e.name for e in await other.public.all()} == {"visible", "second"}
            assert (await other.public.get(public.uuid)) is not None
            assert await other.vault.all() == []  # nothing of the denied buckets got through
    finally:
        # The denied changes stay pending: stopping reports them once more.
        with pytest.raises(FlushError) as info:
            await asyncio.wait_for(db.stop(), STEP)
        assert all(isinstance(error, PermissionDeniedError) for error in info.value.errors.values())


async def test_a_node_starts_when_another_user_made_a_collection_it_may_not_read(
    restricted_server: EmbeddedServer,
) -> None:
    admin = url_of(restricted_server, "admin", ADMIN_PASSWORD)
    async with Brainless(admin, namespace=NAMESPACE, location="admin") as other:
        other.vault.add(name="kept")
        other.public.add(name="visible")
        await asyncio.wait_for(other.flush(), STEP)
    db = Brainless(url_of(restricted_server, "limited", LIMITED_PASSWORD), namespace=NAMESPACE)
    try:
        await asyncio.wait_for(db.start(), STEP)
        assert [e.name for e in await db.public.all()] == ["visible"]
        with pytest.raises(PermissionDeniedError):
            await asyncio.wait_for(db.vault.all(), STEP)
    finally:
        await asyncio.wait_for(db.stop(), STEP)


async def test_a_user_allowed_one_collections_bucket_alone_uses_that_collection(
    start_server: StartServer,
) -> None:
    """Permission on ``$KV.app-ok.>`` and the API subjects of its stream is all a user needs: no other
    bucket of the namespace (schemas live in the collection's bucket), nor a listing of the buckets."""
    server = start_server(
        users(
            {
                "user": "ok",
                "password": LIMITED_PASSWORD,
                "permissions": {
                    "publish": {"allow": bucket_subjects("app-ok")},
                    "subscribe": {"allow": NEEDED_SUBSCRIBE},
                },
            }
        )
    )
    url = url_of(server, "ok", LIMITED_PASSWORD)
    writer = Brainless(url, namespace=NAMESPACE, location="writer", flush_interval=60)
    await asyncio.wait_for(writer.start(), STEP)
    try:
        writer.ok.add(name="first", size=1)
        writer.secret.add(name="hidden")
        with pytest.raises(FlushError) as info:
            await asyncio.wait_for(writer.flush(), STEP)
        assert {key.partition("/")[0] for key in info.value.errors} == {"secret"}
        async with Brainless(url, namespace=NAMESPACE, location="reader") as reader:
            await asyncio.wait_for(reader.ok.load(), STEP)
            found = await reader.ok.find(name="first")
            assert found is not None and found.size == 1
            assert reader.ok.schema is not None and sorted(reader.ok.schema.fields) == ["name", "size"]
            with pytest.raises(PermissionDeniedError):
                await asyncio.wait_for(reader.secret.all(), STEP)
    finally:
        with pytest.raises(FlushError) as info:  # what of ``secret`` is still pending is reported again
            await asyncio.wait_for(writer.stop(), STEP)
        assert {key.partition("/")[0] for key in info.value.errors} == {"secret"}


async def test_storage_denials_are_keyed_to_the_subject(restricted_server: EmbeddedServer) -> None:
    admin = await NatsKVStorage.connect(url_of(restricted_server, "admin", ADMIN_PASSWORD))
    storage = await NatsKVStorage.connect(url_of(restricted_server, "limited", LIMITED_PASSWORD))
    try:
        for bucket in ("app-public", "app-readonly", "app-secret"):
            assert await admin.open_bucket(bucket)
        [revision] = await admin.write("app-readonly", [Write("k", b'{"a":1}', 0)])
        assert isinstance(revision, int)

        async def bounded(awaitable: Any) -> Any:
            started = time.monotonic()
            result = await asyncio.wait_for(awaitable, STEP)
            assert time.monotonic() - started < 2.5, "waited for a timeout instead of the denial"
            return result

        # A bucket it may not use at all: opening it says so at once.
        with pytest.raises(PermissionDeniedError):
            await bounded(storage.open_bucket("app-secret"))
        with pytest.raises(PermissionDeniedError):
            await bounded(storage.open_bucket("app-secret", create=False))

        # A bucket it may read but not write.
        assert await bounded(storage.open_bucket("app-readonly"))
        entry = await bounded(storage.get("app-readonly", "k"))
        assert entry is not None and entry.value == b'{"a":1}'
        assert await bounded(storage.last_revision("app-readonly")) == revision
        [result] = await bounded(storage.write("app-readonly", [Write("k", b"{}", revision)]))
        assert isinstance(result, PermissionDeniedError)
        with pytest.raises(PermissionDeniedError):
            await bounded(storage.purge("app-readonly", "k"))

        # One forbidden key among allowed ones: only its write fails.
        assert await bounded(storage.open_bucket("app-public"))
        writes = [Write("a", b"{}", 0), Write("forbidden", b"{}", 0), Write("b", b"{}", 0)]
        first, denied, last = await bounded(storage.write("app-public", writes))
        assert isinstance(first, int) and isinstance(last, int)
        assert isinstance(denied, PermissionDeniedError)
        assert await bounded(storage.get("app-public", "forbidden")) is None
        assert (await bounded(storage.get("app-public", "b"))) is not None
        assert storage.stats["write_errors"] == 2
    finally:
        await storage.close()
        await admin.close()


async def test_denials_on_a_client_connected_by_the_caller(restricted_server: EmbeddedServer) -> None:
    seen: list[Exception] = []

    async def error_cb(exc: Exception) -> None:
        seen.append(exc)

    client = await nats.connect(url_of(restricted_server, "limited", LIMITED_PASSWORD), error_cb=error_cb)
    try:
        db = Brainless(client, namespace=NAMESPACE, location="own", flush_interval=60)
        await asyncio.wait_for(db.start(), STEP)
        db.public.add(name="visible")
        db.vault.add(name="kept")
        started = time.monotonic()
        with pytest.raises(FlushError) as info:
            await asyncio.wait_for(db.flush(), STEP)
        assert time.monotonic() - started < 2.5
        assert {key.partition("/")[0] for key in info.value.errors} == {"vault"}
        assert all(isinstance(e, PermissionDeniedError) for e in info.value.errors.values())
        with pytest.raises(FlushError):
            await asyncio.wait_for(db.stop(), STEP)
        assert seen, "the caller's error callback still gets the server's errors"
    finally:
        await client.close()


async def test_the_callers_error_callback_is_kept(restricted_server: EmbeddedServer) -> None:
    seen: list[Exception] = []

    async def error_cb(exc: Exception) -> None:
        seen.append(exc)

    storage = await NatsKVStorage.connect(
        url_of(restricted_server, "limited", LIMITED_PASSWORD), error_cb=error_cb
    )
    try:
        with pytest.raises(PermissionDeniedError):
            await asyncio.wait_for(storage.open_bucket("app-secret"), STEP)
        await eventually(lambda: bool(seen))
    finally:
        await storage.close()


# -- no credentials in logs or reprs -------------------------------------------------------------


LEAK_CASES = ["password in the url", "password as options", "token in the url", "token as options"]


def leak_case(case: str, value: str) -> tuple[str, Callable[[int], tuple[str, dict[str, Any]]]]:
    """The server configuration of ``case`` and, for the server's port, the URL and options to use."""
    if case.startswith("password"):
        config = users({"user": "app", "password": value})
        in_url, options = f"app:{value}@", {"user": "app", "password": value}
    else:
        config = config_block("authorization", {"token": value})
        in_url, options = f"{value}@", {"token": value}
    if case.endswith("in the url"):
        return config, lambda port: (f"nats://{in_url}127.0.0.1:{port}", {})
    return config, lambda port: (f"nats://127.0.0.1:{port}", options)


def assert_no_secret(secret_value: str, *texts: str) -> None:
    for text in texts:
        assert secret_value not in text, f"the secret leaked into: {text[:300]!r}"


@pytest.mark.parametrize("case", LEAK_CASES)
async def test_credentials_never_appear_in_logs_or_reprs(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    password = secret("leak")
    config, connect = leak_case(case, password)
    server = start_server(config)
    url, options = connect(server.port)
    caplog.set_level(logging.DEBUG)

    async def run() -> None:
        storage = await NatsKVStorage.connect(url, **options)
        db = Brainless(url, namespace=NAMESPACE, location="node", flush_interval=0.02, nats_options=options)
        try:
            await db.start()
            db.item.add(name="before")
            await db.flush()
            # A disconnect and a reconnect, with everything they log.
            server.restart()
            await eventually(lambda: "reconnected" in caplog.text, timeout=STEP)
            db.item.add(name="after")
            await db.flush()
            texts = [repr(db), str(db), repr(storage), str(db.stats()), repr(db.item)]
        finally:
            await db.stop()
            await storage.close()
        assert_no_secret(password, *texts)

    await asyncio.wait_for(run(), 4 * STEP)
    # Nor when the connection fails: the URL in the message is redacted.
    port = free_port()
    failing = url.replace(str(server.port), str(port))
    error = await refused(failing, **options)
    assert str(port) in str(error)
    records = [record.getMessage() for record in caplog.records]
    assert any("disconnected" in message for message in records)
    assert_no_secret(password, caplog.text, *records, str(error), repr(error), repr(error.__cause__))


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("nats://user:pw@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
        ("nats://tok@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
        ("tls://u:p@ss@host:4443", "tls://***@host:4443"),
        ("u:pw@host:4222", "***@host:4222"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


# -- no pickle, no eval ----------------------------------------------------------------------------

FORBIDDEN_MODULES = frozenset({"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"})
FORBIDDEN_CALLS = frozenset({"eval", "exec", "compile", "__import__"})


def unsafe_constructs(source: str, filename: str) -> list[str]:
    """Imports of pickle-like modules and calls of eval-like builtins in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            modules = [node.module]
        found += [
            f"{filename}:{node.lineno} imports {m}" for m in modules if m.split(".")[0] in FORBIDDEN_MODULES
        ]
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else None
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if func.value.id in {"builtins", "__builtins__"}:
                    name = func.attr
                elif func.value.id in FORBIDDEN_MODULES:
                    name = f"{func.value.id}.{func.attr}"
            if name is not None and (name in FORBIDDEN_CALLS or "." in name):
                found.append(f"{filename}:{node.lineno} calls {name}")
    return found


def test_the_checker_finds_what_it_looks_for() -> None:
    sample = "import pickle\nfrom marshal import loads\nimport builtins\neval('1')\nbuiltins.exec('x')\n"
    assert len(unsafe_constructs(sample, "sample.py")) == 4
    assert unsafe_constructs("import re\nre.compile('x')\nast.literal_eval('1')\n", "ok.py") == []


def test_no_pickle_and_no_eval_in_the_library() -> None:
    package = Path(brainlessdb.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert len(files) > 10, f"found only {files} under {package}"
    found = [hit for path in files for hit in unsafe_constructs(path.read_text(), str(path))]
    assert found == []
