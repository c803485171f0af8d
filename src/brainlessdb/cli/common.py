"""What every subcommand shares: exit codes, the errors that carry them, and how results are written.

Exit codes: 0 ok, 1 error (the server, a refused change, a file), 2 usage (a malformed command line,
criterion or name), 3 not found or check failed. Each failure is one line on stderr, never a traceback.

Results go to stdout: with ``--json`` one JSON object per line; otherwise a table, drawn by ``rich`` when
it is installed (the ``cli`` extra) and stdout is a terminal, else plain aligned columns that ``grep``
and ``cut`` can read.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TextIO

from brainlessdb.core.clock import COUNTER_BITS, Stamp

OK: Final = 0
ERROR: Final = 1
USAGE: Final = 2
NOT_FOUND: Final = 3
"""Also the code of a failed check (``doctor``)."""


class CliError(Exception):
    """A failure the command reports in one line, with its exit code."""

    code = ERROR

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(CliError):
    code = USAGE


class NotFound(CliError):
    code = NOT_FOUND


# -- values on the command line --------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON


def parse_value(text: str) -> Any:
    """``text`` as JSON when it parses (``3``, ``true``, ``null``, ``"3"``, ``[1, 2]``), else the text."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def parse_assignments(items: Sequence[str], what: str) -> dict[str, Any]:
    """``["state=waiting", "priority__lt=3"]`` as ``{"state": "waiting", "priority__lt": 3}``."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key:
            raise UsageError(f"{what} {item!r} is not NAME=VALUE")
        if key in parsed:
            raise UsageError(f"{what} {key!r} is given twice")
        parsed[key] = parse_value(text)
    return parsed


# -- stamps ------------------------------------------------------------------------------------------


def stamp_ms(stamp: Stamp) -> int:
    return stamp[0] >> COUNTER_BITS


def iso_time(ms: float) -> str:
    """Milliseconds since the epoch as UTC ISO 8601 with milliseconds: ``2026-11-18T11:06:40.250Z``."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def stamp_json(stamp: Stamp) -> dict[str, Any]:
    """A field's stamp for people and scripts: when and where it was written."""
    hlc, node = stamp
    ms = hlc >> COUNTER_BITS
    return {"time": iso_time(ms), "ms": ms, "counter": hlc & ((1 << COUNTER_BITS) - 1), "node": node}


# -- output ------------------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    """Compact JSON on one line (non-ASCII kept as it is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def cell(value: Any) -> str:
    """A value in a table: strings as they are, everything else as JSON, nothing for a missing one."""
    return value if isinstance(value, str) else dumps(value)


class Output:
    """Where a command writes its results: JSON lines, or tables for people."""

    def __init__(self, *, json_lines: bool, stream: TextIO | None = None, rich: bool | None = None) -> None:
        self.json = json_lines
        self.stream = stream if stream is not None else sys.stdout
        if rich is None:
            rich = _rich_available() and self.stream.isatty()
        self.rich = rich

    def record(self, obj: Mapping[str, Any]) -> None:
        """One JSON object on its own line (``--json``)."""
        self.stream.write(dumps(obj) + "\n")
        self.stream.flush()

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
        """Rows under column headings; a title above them if given."""
        texts = [[cell(value) for value in row] for row in rows]
        if self.rich:
            self._rich_table(columns, texts, title)
            return
        if title:
            self.line(title)
        widths = [len(name) for name in columns]
        for row in texts:
            for index, text in enumerate(row):
                widths[index] = max(widths[index], len(text))
        for row in [list(columns), *texts]:
            self.line("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())

    def _rich_table(self, columns: Sequence[str], rows: list[list[str]], title: str | None) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(file=self.stream, highlight=False).print(table)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def warn(text: str) -> None:
    """A note on stderr (never on stdout, which holds results)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
