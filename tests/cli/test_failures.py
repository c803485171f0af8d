"""Bad input and bad conditions: one line on stderr, the documented exit code, never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brainlessdb.embedded import EmbeddedServer, config_block, free_port
from tests.cli.conftest import Cli, Result
from tests.cli.data import seed

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server that takes one user with a password, and a token nobody has."""
    auth = config_block("authorization", {"users": [{"user": "ops", "password": PASSWORD}]})
    with EmbeddedServer(store_dir=tmp_path_factory.mktemp("nats-secured"), extra_config=auth) as server:
        yield server


@pytest.mark.nats
@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("get", "nosuch", "x"), 3, "no collection 'nosuch'"),
        (("find", "nosuch"), 3, "no collection 'nosuch'"),
        (("get", "call", "00000000-0000-11f1-8000-000000000000"), 3, "no entity"),
        (("get", "bad-name", "x"), 2, "invalid collection name"),
        (("find", "call", "state"), 2, "criterion 'state' is not NAME=VALUE"),
        (("find", "call", "priority__near=3"), 2, "unknown lookup 'near'"),
        (("find", "call", "nofield=1"), 2, "unknown field 'nofield'"),
        (("find", "call", "--order-by", "-nofield"), 2, "nofield"),
        (("find", "call", "state=1", "state=2"), 2, "given twice"),
        (("find", "call", "--limit", "-1"), 2, "--limit"),
        (("watch", "call", "priority__near=3"), 2, "unknown lookup"),
        (("history", "nosuch", "x"), 3, "no collection"),
        (("schema", "nosuch"), 3, "no collection"),
        (("dead-letters", "nosuch"), 3, "no collection"),
        (("stats", "nosuch"), 3, "no collection"),
        (("dump", "nosuch"), 3, "no collection"),
        (("put", "nosuch", "x", "a=1"), 3, "no collection"),
        (("del", "nosuch", "x"), 3, "no collection"),
        (("frobnicate",), 2, "invalid choice"),
        (("find",), 2, "required"),
        (("find", "call", "--bogus"), 2, "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_and_its_exit_code(
    cli: Cli, nats_server: EmbeddedServer, namespace: str, args: tuple[str, ...], code: int, says: str
) -> None:
    seed(nats_server.url, namespace)
    result = cli("-s", nats_server.url, "-n", namespace, *args)
    assert result.code == code, result
    assert says in result.error_line()
    assert result.out == ""


def test_an_invalid_namespace_is_a_usage_error(cli: Cli) -> None:
    result = cli("-n", "no spaces", "ls")
    assert result.code == 2 and "invalid namespace name" in result.error_line()


def test_a_server_that_is_down_is_one_line_exit_1(run_cli: Callable[..., Result]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = run_cli("-s", url, "ls", timeout=30)
    assert result.code == 1
    assert result.error_line() == f"brainless ls: error: cannot connect to NATS at {url}: connection refused"


@pytest.mark.nats
def test_refused_credentials_are_one_line_and_never_shown(
    run_cli: Callable[..., Result], cli: Cli, secured: EmbeddedServer
) -> None:
    wrong = run_cli("-s", secured.url, "--user", "ops", "--password", "wrong-Pa55", "ls")
    assert wrong.code == 1
    assert wrong.error_line() == f"brainless ls: error: NATS at {secured.url} refused the credentials"
    in_url = cli("-s", f"nats://ops:wrong-Pa55@127.0.0.1:{secured.port}", "ls")
    assert in_url.code == 1
    assert "wrong-Pa55" not in in_url.err and "***@127.0.0.1" in in_url.error_line()
    none = cli("-s", secured.url, "ls")
    assert none.code == 1 and "refused the credentials" in none.error_line()

    right = run_cli("-s", secured.url, "ls", "--json", env={"NATS_USER": "ops", "NATS_PASSWORD": PASSWORD})
    assert (right.code, right.err) == (0, "")
    assert PASSWORD not in right.out


@pytest.mark.nats
def test_the_environment_gives_the_server_and_the_namespace(
    run_cli: Callable[..., Result], nats_server: EmbeddedServer, namespace: str
) -> None:
    seed(nats_server.url, namespace)
    result = run_cli("ls", "--json", env={"NATS_URL": nats_server.url, "BRAINLESS_NAMESPACE": namespace})
    assert result.code == 0, result.err
    assert sorted(row["collection"] for row in result.records()) == ["call", "session"]


@pytest.mark.nats
def test_subprocess_errors_are_one_line_without_a_traceback(
    run_cli: Callable[..., Result], nats_server: EmbeddedServer, namespace: str, tmp_path: Path
) -> None:
    seed(nats_server.url, namespace)
    for args, code in [
        (("find", "call", "priority__near=3"), 2),
        (("get", "nosuch", "x"), 3),
        (("restore", str(tmp_path / "none.jsonl")), 1),
        (("put", "call", "00000000-0000-11f1-8000-000000000000", "state=x"), 3),
    ]:
        result = run_cli("-s", nats_server.url, "-n", namespace, *args)
        assert result.code == code, result
        assert result.error_line().startswith(f"brainless {args[0]}: ")


def test_help_lists_every_subcommand(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for name in (
        "ls",
        "get",
        "find",
        "watch",
        "history",
        "schema",
        "stats",
        "put",
        "del",
        "dead-letters",
        "dump",
        "restore",
        "doctor",
        "server",
        "demo",
    ):
        assert f"    {name}" in result.out
