"""A typed collection is ``Collection[Call]`` to mypy: its queries and adds return ``Call``.

mypy checks ``models_usage.py`` (with its own cache directory, so that other runs do not interfere) and
its revealed types are compared, line by line, with what a reader of the code expects.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

USAGE = Path(__file__).with_name("models_usage.py")

EXPECTED = [
    "brainlessdb.core.collection.Collection[tests.typing.models_usage.Call]",
    "tests.typing.models_usage.Call",
    "tests.typing.models_usage.Call | None",
    "tests.typing.models_usage.Call | None",
    "list[tests.typing.models_usage.Call]",
    "list[tests.typing.models_usage.Call]",
    "tests.typing.models_usage.Call",
    "list[tests.typing.models_usage.Agent]",
]


@pytest.mark.slow
def test_a_typed_collection_returns_its_model_to_mypy(tmp_path: Path) -> None:
    out, err, _ = mypy_api.run(
        [str(USAGE), "--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"]
    )
    revealed = [
        match.group(1).replace("builtins.", "")  # older mypy spells builtins out
        for match in re.finditer(r'Revealed type is "(.*)"', out)
    ]
    assert revealed == EXPECTED, out + err
    # The one error: a str assigned to an int field of a Call that add() returned.
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == [_line_of('call.queue = "7"')], out


def _line_of(text: str) -> str:
    for number, line in enumerate(USAGE.read_text().splitlines(), start=1):
        if text in line:
            return str(number)
    raise AssertionError(f"{text!r} is not in {USAGE.name}")
