"""The documentation's code runs: every ``examples/*.py`` script, and no untested Python in the guides.

Each example is a complete script that asserts what it shows, so a wrong example fails here. They all run
against ONE nats-server started for this module (each example uses a namespace of its own), as
subprocesses told where it is by ``NATS_URL``, each under a timeout.

The pages include their Python from these scripts (``--8<-- "examples/x.py"``); a page holding a fenced
Python block of its own would show code that nothing runs, so ``test_pages_hold_no_untested_python``
refuses one. A block that is not meant to run says so by its language (``sh``, ``text``, ``yaml``...); a
block naming none is refused too, as a reader could not tell. Every example is on some page, and every
name ``brainlessdb`` exports has a place in the API reference.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from brainlessdb.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
PAGES = [
    ROOT / "docs" / "index.md",
    ROOT / "docs" / "tutorial.md",
    *sorted((ROOT / "docs" / "guides").glob("*.md")),
]
TIMEOUT = 120.0  # seconds: an example that hangs fails rather than stalling the suite

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`{]*)")
"""The opening of a fenced block and its language (``python``, ``{ .python }`` is not used here)."""
PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "pycon"})
SNIPPET = re.compile(r"""^\s*-{1,}8<-{1,}\s+["'](?P<path>[^"']+)["']\s*$""")


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server for every example (each uses its own namespace)."""
    with EmbeddedServer(store_dir=tmp_path_factory.mktemp("nats-examples")) as server:
        yield server


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/*.py not found"


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs(script: Path, examples_server: EmbeddedServer) -> None:
    env = {**os.environ, "NATS_URL": examples_server.url, "PYTHONWARNINGS": "error"}
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} did not finish within {TIMEOUT:g} s\n{_text(exc.stderr)}")
    assert done.returncode == 0, f"{script.name} exited with {done.returncode}:\n{done.stderr}"


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """Each fenced block of a page: the line it starts on, its language ("" if none), its lines."""
    blocks: list[tuple[int, str, list[str]]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        start, body = index + 1, []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        blocks.append((start, language, body))
    return blocks


def untested_blocks(text: str) -> list[int]:
    """The lines where a block starts that may be taken for code nothing runs: a Python block that is
    not only snippet includes of ``examples/``, or a block that names no language at all."""
    untested = []
    for start, language, body in fenced_blocks(text):
        if not language:
            untested.append(start)
        elif language in PYTHON_LANGUAGES:
            code = [line for line in body if line.strip()]
            found = [SNIPPET.match(line) for line in code]
            if not code or not all(m is not None and m.group("path").startswith("examples/") for m in found):
                untested.append(start)
    return untested


def test_blocks_are_found() -> None:
    page = '```python\n--8<-- "examples/a.py"\n```\n\n``` py\nx = 1\n```\n\n```sh\nls\n```\n'
    assert [(start, language) for start, language, _ in fenced_blocks(page)] == [
        (1, "python"),
        (5, "py"),
        (9, "sh"),
    ]
    assert untested_blocks(page) == [5]
    assert untested_blocks('```python\n--8<-- "examples/a.py:step"\n```\n') == []
    assert untested_blocks('````python\n```\n--8<-- "examples/a.py"\n````\n') == [1]
    assert untested_blocks("text\n\n```\nx = 1\n```\n") == [3]  # no language: refused
    assert untested_blocks("```text\nx = 1\n```\n") == []


@pytest.mark.parametrize("page", PAGES, ids=[path.name for path in PAGES])
def test_pages_hold_no_untested_python(page: Path) -> None:
    if not page.exists():
        pytest.skip(f"{page.name} not written")
    untested = untested_blocks(page.read_text())
    assert not untested, (
        f"{page.relative_to(ROOT)}: the blocks at lines {untested} are Python not included from "
        "examples/, or name no language (put the code in an example script and include it, or give "
        "the block a language that is not Python: sh, text, yaml...)"
    )


def test_every_example_is_shown() -> None:
    """An example no page includes would be tested but never read: each is on some page."""
    included = set()
    for page in [*PAGES, *sorted((ROOT / "docs").glob("*.md"))]:
        for line in page.read_text().splitlines():
            found = SNIPPET.match(line)
            if found is not None:
                included.add(found.group("path").split(":", 1)[0])
    shown = {path.relative_to(ROOT).as_posix() for path in EXAMPLES}
    assert not shown - included, f"examples no page includes: {sorted(shown - included)}"


def test_every_public_name_is_in_the_reference() -> None:
    """What ``brainlessdb`` exports has a place in the API reference (errors: the errors page)."""
    import brainlessdb
    import brainlessdb.errors

    reference = " ".join(page.read_text() for page in (ROOT / "docs" / "reference").glob("*.md"))
    listed = set(re.findall(r"::: brainlessdb\.(\w+)", reference))
    listed |= set(re.findall(r"^\s+- (\w+)$", reference, flags=re.MULTILINE))  # members: lists
    missing = [
        name for name in brainlessdb.__all__ if name not in listed and not hasattr(brainlessdb.errors, name)
    ]
    assert not missing, f"add these to a page of docs/reference/: {missing}"
