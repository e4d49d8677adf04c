"""The nightly batch pipeline: pick the day's raw file, score it, log the run.

For each date (--date, default today; or --start/--end for a backfill) it reads the raw
zone's `new_data_YYYYMMDD.csv`, scores it with batch_score (the latest model version or
--model-version) into the curated zone's `predictions_YYYYMMDD.csv`, and appends one row
per run to `logs/batch_runs_log.csv` (settings.logs_dir()): timestamp, input and output,
row count, min/max/mean score, model version, status, duration and error; and the run's
drift monitoring against the version's reference profile (monitoring.SUMMARY_COLUMNS: drift
flag and warn level, largest PSI and its feature, drifted features, null and out-of-bounds
rates), with the per-feature table in logs/drift/drift_YYYYMMDD.csv. Drift never fails a run.

    python pipeline_run_batch.py --date 2026-11-26
    python pipeline_run_batch.py --start 2026-11-20 --end 2026-11-26 --storage blob

A failed run (missing input, bad columns or rows, storage unreachable, no model) logs a
`failed` row with the error, prints one line on stderr, leaves no partial curated file
(an earlier complete output of that date stays as it was) and makes the exit code 1.
Re-running a date replaces its output atomically. Two runs of the same date at once: the
second refuses (or waits, with --wait); the lock is an fcntl lock that the kernel drops
when its process dies, so a killed run never leaves a stale lock.

Azure counterpart: a Data Factory / Synapse pipeline triggering an Azure ML batch job, with
the run log standing in for Log Analytics.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import fcntl
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

import batch_score
import monitoring
import settings
import storage
from registry import Registry, RegistryError
from score import ModelService

log = logging.getLogger("pipeline_run_batch")

LOG_FILE = "batch_runs_log.csv"
BASE_LOG_COLUMNS = (
    "timestamp", "run_date", "storage", "input_file", "output_file", "row_count",
    "min_score", "max_score", "mean_score", "model_version", "status", "duration_s", "error",
)
# Columns that other modules contribute to each run's row (for example drift monitoring):
# list them here, and pass their values as `extra` to append_log_row / from a RunMonitor.
EXTRA_LOG_COLUMNS: tuple[str, ...] = monitoring.SUMMARY_COLUMNS
LOG_COLUMNS = BASE_LOG_COLUMNS + EXTRA_LOG_COLUMNS

SUCCESS, FAILED = "success", "failed"
MAX_BACKFILL_DAYS = 3660


class RunLockedError(storage.StorageError):
    """Another run of the same date holds its lock."""


class RunMonitor(Protocol):
    """Something that watches a run: sees every scored chunk, then adds fields to its log row."""

    def on_chunk(self, matrix: np.ndarray, scores: np.ndarray) -> None: ...

    def log_fields(self, summary: batch_score.BatchSummary | None) -> Mapping[str, Any]: ...


# ----- the run log -----------------------------------------------------------------------------
def log_path() -> Path:
    return settings.logs_dir() / LOG_FILE


@contextlib.contextmanager
def _locked(lock_file: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive fcntl lock on `lock_file`; the kernel releases it if the process dies."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"another run holds {lock_file}") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def _csv_line(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_format(v) for v in values])
    return buffer.getvalue()


def append_log_row(row: Mapping[str, Any], extra: Mapping[str, Any] | None = None, path: Path | None = None) -> dict[str, Any]:
    """Append one run to the log (header first if new); safe when several runs finish at once.

    `row` holds BASE_LOG_COLUMNS, `extra` any of EXTRA_LOG_COLUMNS; other keys are an error.
    Under an exclusive lock the row goes out in one write and is fsynced. A log whose header
    is not LOG_COLUMNS (written before columns were added) is rewritten, atomically, with the
    current header and its rows kept by column name.
    """
    merged = {**row, **(extra or {})}
    unknown = sorted(set(merged) - set(LOG_COLUMNS))
    if unknown:
        raise ValueError(f"not log columns: {', '.join(unknown)} (add them to EXTRA_LOG_COLUMNS)")
    path = path or log_path()
    line = _csv_line([merged.get(c) for c in LOG_COLUMNS]).encode("utf-8")
    header = _csv_line(LOG_COLUMNS).encode("utf-8")
    with _locked(path.with_name(f".{path.name}.lock")):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                os.write(fd, header + line)
            elif _read_header(path) != list(LOG_COLUMNS):
                os.close(fd)
                fd = -1
                _migrate(path, header, line)
            else:
                os.write(fd, line)
            if fd >= 0:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
    return merged


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _migrate(path: Path, header: bytes, line: bytes) -> None:
    """Rewrite the log under the current header (old rows kept by column name), then add `line`."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with storage.atomic_write(path) as out:
        out.write(header)
        for old in rows:
            out.write(_csv_line([old.get(c, "") for c in LOG_COLUMNS]).encode("utf-8"))
        out.write(line)
    log.info("rewrote %s with the current log columns", path)


def read_log(path: Path | None = None) -> list[dict[str, str]]:
    """The log's rows as dicts (empty when there is no log yet)."""
    path = path or log_path()
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ----- one run ---------------------------------------------------------------------------------
def date_lock(day: dt.date, kind: str, *, wait: bool = False) -> contextlib.AbstractContextManager[None]:
    """The lock that keeps two runs of one date (on one storage) from overlapping."""
    return _locked(settings.logs_dir() / "locks" / f"batch_{kind}_{day:%Y%m%d}.lock", wait=wait)


def run_date(day: dt.date, store, service: ModelService | None, *, monitor: RunMonitor | None = None,
             wait: bool = False, block_size: int = batch_score.DEFAULT_BLOCK_SIZE,
             load_error: str | None = None) -> dict[str, Any]:
    """Score one date's raw file into the curated zone and log the run; returns the log row.

    Expected failures are caught and logged as `failed` rows; they never leave a partial
    curated file. `service` None with `load_error` logs a run that could not load a model.
    """
    started = time.perf_counter()
    timestamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    raw, curated = storage.raw_name(day), storage.curated_name(day)
    try:
        input_file, output_file = store.location(storage.RAW, raw), store.location(storage.CURATED, curated)
    except storage.StorageError:  # a bad connection string: the run below fails with its message
        input_file, output_file = f"{storage.RAW}/{raw}", f"{storage.CURATED}/{curated}"
    row: dict[str, Any] = {
        "timestamp": timestamp, "run_date": day.isoformat(), "storage": store.kind,
        "input_file": input_file, "output_file": output_file,
        "model_version": service.version if service is not None else None,
    }
    summary = None
    try:
        if service is None:
            raise RegistryError(load_error or "no model loaded")
        with date_lock(day, store.kind, wait=wait):
            _discard_partial_output(store, curated)
            if not store.exists_raw(raw):
                raise storage.StorageNotFound(
                    f"no raw file for {day}: {storage.display(row['input_file'])} does not exist "
                    f"(generate it with: python generate_raw_data.py --date {day})"
                )
            summary = batch_score.score_named(store, raw, curated, service, block_size=block_size,
                                              on_chunk=monitor.on_chunk if monitor is not None else None)
    except RunLockedError:
        row.update(status=FAILED, error=f"another run for {day} is in progress; wait for it or pass --wait")
    except (storage.StorageError, batch_score.BatchError, RegistryError) as exc:
        row.update(status=FAILED, error=str(exc))
    except Exception as exc:  # a bug, not an input problem: log it, then let it surface
        row.update(status=FAILED, error=f"{type(exc).__name__}: {exc}", duration_s=round(time.perf_counter() - started, 3))
        append_log_row(row, _monitor_fields(monitor, None))
        raise
    else:
        row.update(
            status=SUCCESS, row_count=summary.row_count, min_score=summary.min_score,
            max_score=summary.max_score, mean_score=summary.mean_score, error="",
        )
    row["duration_s"] = round(time.perf_counter() - started, 3)
    return append_log_row(row, _monitor_fields(monitor, summary))


def _discard_partial_output(store, curated: str) -> None:
    """Remove what a killed run of this date left half-written (its hidden temporary file).

    Only called under the date's lock, so no other run is writing that file. On Blob Storage
    a killed run leaves only uncommitted blocks, which are never visible and expire by themselves.
    """
    if isinstance(store, storage.LocalStorage):
        target = store.path(storage.CURATED, curated)
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _monitor_fields(monitor: RunMonitor | None, summary) -> Mapping[str, Any] | None:
    if monitor is None:
        return None
    try:
        return monitor.log_fields(summary)
    except Exception as exc:  # monitoring never fails a run
        log.warning("monitoring failed: %s", exc)
        return None


def reference_profile(registry_dir: Path | None, service: ModelService) -> dict[str, Any] | None:
    """The served version's reference profile; None (and a warning) when it has none."""
    try:
        profile = monitoring.load_profile(Registry(registry_dir).get(service.version).path)
    except (RegistryError, monitoring.MonitoringError) as exc:
        log.warning("drift monitoring is off: %s", exc)
        return None
    if profile is None:
        log.warning("drift monitoring is off: model %s has no %s (retrain to add one)",
                    service.version, monitoring.PROFILE_FILE)
    return profile


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise storage.StorageError(f"--end {end} is before --start {start}")
    if (end - start).days >= MAX_BACKFILL_DAYS:
        raise storage.StorageError(f"a backfill covers at most {MAX_BACKFILL_DAYS} days")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def describe(row: Mapping[str, Any]) -> str:
    """One line about a run for the terminal."""
    if row["status"] == SUCCESS:
        if row["row_count"]:
            scores = f"score min {row['min_score']:.3f} max {row['max_score']:.3f} mean {row['mean_score']:.3f}"
        else:
            scores = "no rows"
        return (f"{row['run_date']} success {row['row_count']} rows, {scores}, model {row['model_version']} "
                f"-> {storage.display(row['output_file'])} ({row['duration_s']:.2f} s)")
    return f"{row['run_date']} failed: {row['error']}"


# ----- CLI -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the nightly batch scoring for a date or a range of dates and log each run.",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--date", default=None, metavar="YYYY-MM-DD", help="the date to run (default: today)")
    parser.add_argument("--start", default=None, metavar="YYYY-MM-DD", help="first date of a backfill")
    parser.add_argument("--end", default=None, metavar="YYYY-MM-DD", help="last date of a backfill (inclusive)")
    parser.add_argument("--storage", choices=storage.KINDS, default=None,
                        help="where the raw and curated zones are (default: $STORAGE_BACKEND, else local)")
    parser.add_argument("--registry-dir", type=Path, default=None,
                        help="registry folder (default: $LOCAL_REGISTRY_DIR or ./local_registry)")
    parser.add_argument("--model-version", default="latest", help="latest, 2, or v002")
    parser.add_argument("--wait", action="store_true",
                        help="wait for a run of the same date that is in progress instead of refusing")
    parser.add_argument("--block-size", type=int, default=batch_score.DEFAULT_BLOCK_SIZE,
                        help="bytes of CSV scored per chunk")
    drift = parser.add_argument_group("drift monitoring thresholds (each also settable by its environment variable)")
    defaults = monitoring.Thresholds()
    drift.add_argument("--psi-warn", type=float, default=None,
                       help=f"PSI from which a feature is at warn level ($DRIFT_PSI_WARN, else {defaults.psi_warn})")
    drift.add_argument("--psi-alert", type=float, default=None,
                       help=f"PSI from which a feature is at alert level ($DRIFT_PSI_ALERT, else {defaults.psi_alert})")
    drift.add_argument("--wasserstein-threshold", type=float, default=None,
                       help="normalized Wasserstein distance from which a feature is at alert level "
                            f"($DRIFT_WASSERSTEIN_THRESHOLD, else {defaults.wasserstein})")
    drift.add_argument("--drift-alpha", type=float, default=None,
                       help="significance level of the KS test a difference must also pass, over all features; "
                            f"0 turns it off ($DRIFT_ALPHA, else {defaults.alpha})")
    parser.add_argument("--show-log", type=int, default=None, metavar="N",
                        help="print the last N runs of the log as a table and exit")
    return parser


SHOWN_COLUMNS = ("timestamp", "run_date", "storage", "status", "row_count", "min_score", "max_score",
                 "mean_score", "model_version", "duration_s", "drift_flag", "max_psi", "error")


def format_log(rows: Sequence[Mapping[str, str]], columns: Sequence[str] = SHOWN_COLUMNS) -> str:
    """Log rows as an aligned text table (scores to 4 places, long errors cut)."""
    def cell(column: str, value: str) -> str:
        if column.endswith("_score") and value:
            return f"{float(value):.4f}"
        if column == "max_psi" and value:
            return f"{float(value):.3f}"
        if column == "timestamp":
            return value.replace("+00:00", "Z")
        return value if len(value) <= 60 else value[:57] + "..."

    table = [list(columns)] + [[cell(c, r.get(c, "") or "") for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("batch_score").setLevel(logging.INFO)  # progress on long files
    if args.show_log is not None:
        rows = read_log()
        if not rows:
            print(f"error: no runs logged yet ({log_path()} does not exist); run a date first", file=sys.stderr)
            return 1
        print(format_log(rows[-args.show_log:] if args.show_log > 0 else rows))
        return 0
    try:
        if args.date is not None and (args.start or args.end):
            raise storage.StorageError("give either --date or --start/--end, not both")
        if (args.start is None) != (args.end is None):
            raise storage.StorageError("--start and --end go together")
        if args.start is not None:
            days = days_between(storage.parse_date(args.start), storage.parse_date(args.end))
        else:
            days = [storage.parse_date(args.date) if args.date is not None else dt.date.today()]
        if args.block_size < 4096:
            raise storage.StorageError("--block-size must be at least 4096")
        store = storage.get_storage(args.storage)
        thresholds = monitoring.Thresholds.from_env(psi_warn=args.psi_warn, psi_alert=args.psi_alert,
                                                    wasserstein=args.wasserstein_threshold, alpha=args.drift_alpha)
    except (storage.StorageError, monitoring.MonitoringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    service, load_error = None, None
    try:
        service = ModelService.from_registry(args.registry_dir, args.model_version)
    except RegistryError as exc:
        load_error = str(exc)
    profile = reference_profile(args.registry_dir, service) if service is not None else None
    failed = 0
    for day in days:
        monitor = None
        if profile is not None:
            monitor = monitoring.DriftMonitor(profile, thresholds,
                                              monitoring.drift_table_path(settings.logs_dir(), f"{day:%Y%m%d}", store.kind))
        row = run_date(day, store, service, monitor=monitor, wait=args.wait, block_size=args.block_size,
                       load_error=load_error)
        if row["status"] == SUCCESS:
            print(describe(row))
            drift_line = monitoring.describe_fields(row)
            if drift_line:
                print(f"  {drift_line}")
        else:
            failed += 1
            print(f"error: {describe(row)}", file=sys.stderr)
    if len(days) > 1:
        print(f"{len(days) - failed} of {len(days)} runs succeeded; log: {storage.display(str(log_path()))}")
    else:
        print(f"log: {storage.display(str(log_path()))}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
