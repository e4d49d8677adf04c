"""What the stage scripts share on the command line: options, logging, dates and text tables.

    parser = argparse.ArgumentParser(..., formatter_class=settings.HelpFormatter)
    cli.add_registry_options(parser)      # --registry-dir, --model-version (default latest)
    cli.add_storage_option(parser)        # --storage local|blob
    cli.setup_logging()                   # WARNING and up, "LEVEL name: message" on stderr
    cli.stdout_closed_ok()                # `script | head -1`: the run goes on, output to devnull
    days = cli.parse_days(args.date, args.start, args.end)
    print(cli.format_table(rows, [("date", "date", ""), ("mean", "mean score", ".4f")]))

A helper module: it imports no stage script and touches nothing at import.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import storage

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class UsageError(ValueError):
    """A bad command-line value (a date, a range); the message says what to give instead."""


# ----- shared options ----------------------------------------------------------------------------
def add_registry_options(parser: argparse.ArgumentParser, *, model_version: bool = True,
                         registry_help: str = "registry folder (default: $LOCAL_REGISTRY_DIR or ./local_registry)",
                         ) -> argparse.ArgumentParser:
    """--registry-dir (a folder, default None: settings.registry_dir()) and --model-version (default latest)."""
    parser.add_argument("--registry-dir", type=Path, default=None, help=registry_help)
    if model_version:
        parser.add_argument("--model-version", default="latest", help="latest, 2, or v002")
    return parser


def add_storage_option(parser: argparse.ArgumentParser, *,
                       help_text: str = "where the raw and curated zones are (default: $STORAGE_BACKEND, else local)",
                       ) -> argparse.ArgumentParser:
    """--storage local|blob (default None: $STORAGE_BACKEND, else local)."""
    parser.add_argument("--storage", choices=storage.KINDS, default=None, help=help_text)
    return parser


def add_date_options(parser: argparse.ArgumentParser, *, date: str | None = "one date (default: today)",
                     start: str = "first date of a range", end: str = "last date of a range (inclusive)",
                     ) -> argparse.ArgumentParser:
    """--date (left out when `date` is None), --start and --end, as YYYY-MM-DD text; see parse_days."""
    if date is not None:
        parser.add_argument("--date", default=None, metavar="YYYY-MM-DD", help=date)
    parser.add_argument("--start", default=None, metavar="YYYY-MM-DD", help=start)
    parser.add_argument("--end", default=None, metavar="YYYY-MM-DD", help=end)
    return parser


def setup_logging(verbose: bool = False, *, level: int | None = None) -> None:
    """Diagnostics on stderr: WARNING and up (INFO with `verbose`, or `level` when given)."""
    chosen = level if level is not None else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=chosen, format=LOG_FORMAT)


class _ClosedOk:
    """A text stream that, once its reader has gone (BrokenPipeError), points its file
    descriptor at os.devnull and goes on: the rest of the output is dropped, the run is not."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _closed(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def stdout_closed_ok() -> None:
    """Keep a script running when its stdout reader closes early (`script | head -1`): further
    output goes to os.devnull instead of raising BrokenPipeError mid-run. Not SIG_DFL, which
    would end the process (and a pipeline's remaining days) at the next print. Call it from
    `if __name__ == "__main__":`, before main()."""
    if not isinstance(sys.stdout, _ClosedOk) and hasattr(sys.stdout, "fileno"):
        sys.stdout = _ClosedOk(sys.stdout)


# ----- dates ---------------------------------------------------------------------------------------
def parse_date(text: str) -> dt.date:
    """A YYYY-MM-DD string as a date, else UsageError (so "../x" never becomes a file name)."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise UsageError(f"invalid date {text!r}: expected YYYY-MM-DD, for example 2026-11-26")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"invalid date {text!r}: {exc}") from None


def days_between(start: dt.date, end: dt.date, *, max_days: int | None = None) -> list[dt.date]:
    """Every date from `start` to `end`, both included (at most `max_days` of them when given)."""
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    if max_days is not None and (end - start).days >= max_days:
        raise UsageError(f"a backfill covers at most {max_days} days")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def parse_date_range(start: str | None, end: str | None) -> tuple[dt.date | None, dt.date | None]:
    """--start and --end, each optional (an open end), as dates in order."""
    first = parse_date(start) if start else None
    last = parse_date(end) if end else None
    if first and last and last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    return first, last


def parse_days(date: str | None, start: str | None, end: str | None, *,
               max_days: int | None = None, today: dt.date | None = None) -> list[dt.date]:
    """The days a run covers: --date (default today), or --start with --end (both included)."""
    if date is not None and (start or end):
        raise UsageError("give either --date or --start/--end, not both")
    if (start is None) != (end is None):
        raise UsageError("--start and --end go together")
    if start is not None:
        return days_between(parse_date(start), parse_date(end), max_days=max_days)
    return [parse_date(date) if date is not None else (today or dt.date.today())]


# ----- text tables -------------------------------------------------------------------------------
def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A plain text table; columns are (key, header, format spec); numeric columns right-aligned.

    A column is numeric when every row holds an int or float there (not a bool); NaN shows as
    "-" and a float without a spec as .4f. Strings are shown as they are, left-aligned.
    """
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([format_cell(row[key], spec) for key, _, spec in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [bool(rows) and all(is_number(row[key]) for row in rows) for key, _, _ in columns]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def format_cell(value: Any, spec: str = "") -> str:
    """One table cell as text: NaN as "-", a float by `spec` (default .4f), an int by `spec` if given."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return format(value, spec or ".4f")
    if spec and is_number(value):
        return format(value, spec)
    return str(value)


def is_number(value: Any) -> bool:
    """An int or float, not a bool: what a table right-aligns."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
