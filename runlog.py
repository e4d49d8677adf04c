"""The batch run log: logs/batch_runs_log.csv, one row per pipeline run.

Owns the columns, the path, how values are written and how rows are appended and read
back. pipeline_run_batch.py appends a row per run; analyze_predictions.py reads them.

    runlog.append({"timestamp": ..., "status": "success", ...}, extra=monitor_fields)
    rows = runlog.read()     # list of {column: text}, oldest first

Values are written one way: None as an empty cell, booleans as true/false, floats by repr,
text on one line. Rows written before booleans were lower-cased (True/False) read back as
true/false. Appends hold a filelock.FileLock on a hidden file beside the log.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from filelock import FileLock

import settings
from fileio import atomic_write
from monitoring import SUMMARY_COLUMNS

log = logging.getLogger("runlog")

LOG_FILE = "batch_runs_log.csv"
BASE_COLUMNS = (
    "timestamp", "run_date", "storage", "input_file", "output_file", "row_count",
    "min_score", "max_score", "mean_score", "model_version", "status", "duration_s", "error",
)
# Columns that other modules contribute to each run's row (drift monitoring): list them here
# and pass their values as `extra` to append.
EXTRA_COLUMNS: tuple[str, ...] = SUMMARY_COLUMNS
COLUMNS = BASE_COLUMNS + EXTRA_COLUMNS
SUCCESS, FAILED = "success", "failed"
BOOLEAN_COLUMNS = ("drift_flag", "drift_warn")
_OLD_BOOLEANS = {"True": "true", "False": "false"}


def log_path() -> Path:
    """logs/batch_runs_log.csv under settings.logs_dir() ($LOGS_DIR)."""
    return settings.logs_dir() / LOG_FILE


def lock_for(path: Path, *, timeout: float = -1) -> FileLock:
    """The lock beside `path` (.NAME.lock); timeout -1 waits, 0 refuses at once (filelock.Timeout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(f".{path.name}.lock"), timeout=timeout)


def format_value(value: Any) -> str:
    """One cell: None empty, booleans true/false, floats by repr, text on one line."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        return " ".join(value.split())
    return str(value)


def csv_line(values: Sequence[Any]) -> str:
    """One CSV line (\\n-terminated) of formatted values."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([format_value(v) for v in values])
    return buffer.getvalue()


def append(row: Mapping[str, Any], extra: Mapping[str, Any] | None = None, path: Path | None = None,
           columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Append one run to the log (header first if new); safe when several runs finish at once.

    `row` holds BASE_COLUMNS, `extra` any of EXTRA_COLUMNS; other keys are an error. Under
    the lock the row goes out in one write and is fsynced. A log whose header is not COLUMNS
    (written before columns were added) is rewritten, atomically, with the current header and
    its rows kept by column name.
    """
    columns = tuple(columns if columns is not None else COLUMNS)
    merged = {**row, **(extra or {})}
    unknown = sorted(set(merged) - set(columns))
    if unknown:
        raise ValueError(f"not log columns: {', '.join(unknown)} (add them to runlog.EXTRA_COLUMNS)")
    path = path or log_path()
    line = csv_line([merged.get(c) for c in columns]).encode("utf-8")
    with lock_for(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size == 0:
                os.write(fd, csv_line(columns).encode("utf-8") + line)
                os.fsync(fd)
                return merged
            if _read_header(path) == list(columns):
                os.write(fd, line)
                os.fsync(fd)
                return merged
        finally:
            os.close(fd)
        _migrate(path, columns, line)
    return merged


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _migrate(path: Path, columns: Sequence[str], line: bytes) -> None:
    """Rewrite the log under the current header (old rows kept by column name), then add `line`."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with atomic_write(path) as out:
        out.write(csv_line(columns).encode("utf-8"))
        for old in rows:
            out.write(csv_line([old.get(c, "") for c in columns]).encode("utf-8"))
        out.write(line)
    log.info("rewrote %s with the current log columns", path)


def read(path: Path | None = None) -> list[dict[str, str]]:
    """The log's rows as {column: text}, oldest first (empty when there is no log yet)."""
    path = path or log_path()
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for column in BOOLEAN_COLUMNS:
            if row.get(column) in _OLD_BOOLEANS:
                row[column] = _OLD_BOOLEANS[row[column]]
    return rows
