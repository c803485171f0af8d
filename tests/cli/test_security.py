"""The command's credentials and TLS options against secured servers, and what doctor says of permissions.

The keys, credentials files and certificates are made as the library's own security tests make them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brainlessdb.embedded import EmbeddedServer, config_block
from tests.cli.conftest import Cli
from tests.cli.data import seed
from tests.shell.test_security import Certificates, new_keypair, operator_setup

pytestmark = pytest.mark.nats


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[EmbeddedServer]]:
    started: list[EmbeddedServer] = []
    yield started
    for server in started:
        server.close()


def start(servers: list[EmbeddedServer], tmp_path: Path, config: str) -> EmbeddedServer:
    server = EmbeddedServer(store_dir=tmp_path / f"nats-{len(servers)}", extra_config=config)
    servers.append(server)
    return server.start()


def test_nkey_seed_file(cli: Cli, servers: list[EmbeddedServer], tmp_path: Path) -> None:
    nkeys = pytest.importorskip("nkeys")
    user = new_keypair(nkeys.PREFIX_BYTE_USER)
    server = start(
        servers, tmp_path, config_block("authorization", {"users": [{"nkey": user.public_key.decode()}]})
    )
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(user.seed.decode() + "\n")
    ok = cli("-s", server.url, "--nkey", str(seed_file), "ls")
    assert (ok.code, ok.err) == (0, "")
    other = tmp_path / "other.nk"
    other.write_text(new_keypair(nkeys.PREFIX_BYTE_USER).seed.decode())
    refused = cli("-s", server.url, "--nkey", str(other), "ls")
    assert refused.code == 1 and "refused the credentials" in refused.error_line()
    assert user.seed.decode() not in refused.err


def test_credentials_file(cli: Cli, servers: list[EmbeddedServer], tmp_path: Path) -> None:
    config, creds = operator_setup(tmp_path)
    server = start(servers, tmp_path, config)
    result = cli("-s", server.url, "--creds", str(creds), "-n", "app", "ls", "--json")
    assert (result.code, result.out, result.err) == (0, "", "")
    missing = cli("-s", server.url, "--creds", str(tmp_path / "none.creds"), "ls")
    assert missing.code == 1 and len(missing.error_line()) < 300


def test_tls_with_a_client_certificate(
    cli: Cli, servers: list[EmbeddedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    certificates = Certificates(folder)
    server = start(servers, tmp_path, certificates.server_config(verify_clients=True))
    seed_args = ("-s", server.tls_url, "--tls-ca", str(certificates.ca))
    ok = cli(
        *seed_args,
        "--tls-cert",
        str(certificates.client_cert),
        "--tls-key",
        str(certificates.client_key),
        "ls",
    )
    assert (ok.code, ok.err) == (0, "")
    monkeypatch.setenv("NATS_CA", str(certificates.ca))
    monkeypatch.setenv("NATS_CERT", str(certificates.client_cert))
    monkeypatch.setenv("NATS_KEY", str(certificates.client_key))
    by_environment = cli("-s", server.tls_url, "ls")
    assert (by_environment.code, by_environment.err) == (0, "")
    monkeypatch.delenv("NATS_CERT")
    monkeypatch.delenv("NATS_KEY")
    without_certificate = cli("-s", server.tls_url, "ls")
    assert without_certificate.code == 1 and without_certificate.error_line().startswith(
        "brainless ls: error:"
    )
    unreadable = cli("-s", server.tls_url, "--tls-cert", str(tmp_path / "none.pem"), "ls")
    assert unreadable.code == 1 and "cannot load the TLS files" in unreadable.error_line()


def test_doctor_reports_what_the_account_may_do_on_each_bucket(
    cli: Cli, servers: list[EmbeddedServer], tmp_path: Path
) -> None:
    owner = {"user": "owner", "password": "owner-Pa55"}
    reader = {
        "user": "reader",
        "password": "reader-Pa55",
        "permissions": {
            "publish": {
                "allow": ["$JS.API.>", "$JS.FC.>", "$KV.>", "$SYS.REQ.USER.INFO"],
                "deny": ["$KV.app-call.>"],
            },
            "subscribe": {"allow": ["_INBOX.>"]},
        },
    }
    server = start(servers, tmp_path, config_block("authorization", {"users": [owner, reader]}))
    seed(f"nats://owner:owner-Pa55@127.0.0.1:{server.port}", "app")
    result = cli(
        "-s", server.url, "--user", "reader", "--password", "reader-Pa55", "-n", "app", "doctor", "--json"
    )
    checks = {check["check"]: check for check in result.records()}
    assert checks["permissions call"] == {
        "check": "permissions call",
        "status": "warn",
        "detail": "read only: this account cannot write",
    }
    assert checks["permissions session"]["detail"] == "read and write"
    assert result.code == 0  # a warning is not a failed check
