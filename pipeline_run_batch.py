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
second refuses (or waits, with --wait); the lock is a filelock.FileLock, an fcntl lock that
the kernel drops when its process dies, so a killed run never leaves a stale lock.

Azure counterpart: a Data Factory / Synapse pipeline triggering an Azure ML batch job, with
the run log standing in for Log Analytics.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import filelock
import numpy as np

import batch_score
import cli
import monitoring
import runlog
import settings
import storage
from registry import RegistryError, parse_version_spec
from score import ModelService

log = logging.getLogger("pipeline_run_batch")

SUCCESS, FAILED = runlog.SUCCESS, runlog.FAILED
MAX_BACKFILL_DAYS = 3660


class RunLockedError(storage.StorageError):
    """Another run of the same date holds its lock."""


class RunMonitor(Protocol):
    """Something that watches a run: sees every scored chunk, then adds fields to its log row."""

    def on_chunk(self, matrix: np.ndarray, scores: np.ndarray) -> None: ...

    def log_fields(self, summary: batch_score.BatchSummary | None) -> Mapping[str, Any]: ...


# ----- one run ---------------------------------------------------------------------------------
@contextlib.contextmanager
def date_lock(day: dt.date, kind: str, *, wait: bool = False) -> Iterator[None]:
    """The lock that keeps two runs of one date (on one storage) from overlapping.

    A filelock.FileLock (an fcntl lock, released by the kernel if the process dies). Held by
    another run: RunLockedError, or with `wait` a warning on stderr and a wait for it.
    """
    path = settings.logs_dir() / "locks" / f"batch_{kind}_{day:%Y%m%d}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            raise RunLockedError(f"another run holds {path}") from None
        log.warning("another run of %s holds %s; waiting for it", day, path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def run_date(day: dt.date, store, service: ModelService | None, *, monitor: RunMonitor | None = None,
             wait: bool = False, block_size: int = batch_score.DEFAULT_BLOCK_SIZE,
             load_error: str | None = None, engine=None) -> dict[str, Any]:
    """Score one date's raw file into the curated zone and log the run; returns the log row.

    Expected failures are caught and logged as `failed` rows; they never leave a partial
    curated file. `service` None with `load_error` logs a run that could not load a model.
    `engine` (a spark_engine.SparkEngine) scores with Spark instead of the streaming scorer.
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
            if engine is not None:
                summary = engine.score_named(store, raw, curated, service, monitor=monitor)
            else:
                summary = batch_score.score_named(store, raw, curated, service, block_size=block_size,
                                                  on_chunk=monitor.on_chunk if monitor is not None else None)
    except RunLockedError:
        row.update(status=FAILED, error=f"another run for {day} is in progress; wait for it or pass --wait")
    except (storage.StorageError, batch_score.BatchError, RegistryError) as exc:
        row.update(status=FAILED, error=str(exc))
    except Exception as exc:  # a bug, not an input problem: log it, then let it surface
        row.update(status=FAILED, error=f"{type(exc).__name__}: {exc}", duration_s=round(time.perf_counter() - started, 3))
        runlog.append(row, _monitor_fields(monitor, None))
        raise
    else:
        row.update(
            status=SUCCESS, row_count=summary.row_count, min_score=summary.min_score,
            max_score=summary.max_score, mean_score=summary.mean_score, error="",
        )
    row["duration_s"] = round(time.perf_counter() - started, 3)
    return runlog.append(row, _monitor_fields(monitor, summary))


def _discard_partial_output(store, curated: str) -> None:
    """Remove what a killed run of this date left half-written (its hidden temporary file).

    Only called under the date's lock, so no other run is writing that file. On Blob Storage
    a killed run leaves only uncommitted blocks, which are never visible and expire by themselves.
    """
    if isinstance(store, storage.LocalStorage):
        target = store.path(storage.CURATED, curated)
        for stale in target.parent.glob(f".{target.name}.*.tmp"):  # a folder: the Spark engine's parts
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _monitor_fields(monitor: RunMonitor | None, summary) -> Mapping[str, Any] | None:
    if monitor is None:
        return None
    try:
        return monitor.log_fields(summary)
    except Exception as exc:  # monitoring never fails a run
        log.warning("monitoring failed: %s", exc)
        return None


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
    cli.add_date_options(parser, date="the date to run (default: today)", start="first date of a backfill",
                         end="last date of a backfill (inclusive)")
    cli.add_storage_option(parser)
    cli.add_registry_options(parser)
    parser.add_argument("--wait", action="store_true",
                        help="wait for a run of the same date that is in progress instead of refusing")
    parser.add_argument("--block-size", type=int, default=batch_score.DEFAULT_BLOCK_SIZE,
                        help="bytes of CSV scored per chunk")
    parser.add_argument("--engine", choices=("stream", "spark"), default="stream",
                        help="stream: this process, in chunks; spark: PySpark, same output and log (docs/spark.md)")
    parser.add_argument("--spark-master", default=None,
                        help="Spark master for --engine spark (default: $SPARK_MASTER, else local[*])")
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
                        help="print the last N runs of the log (N >= 1) as a table and exit")
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

    shown = [{c: cell(c, r.get(c, "") or "") for c in columns} for r in rows]
    return cli.format_table(shown, [(c, c, "") for c in columns])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging()
    for name in ("batch_score", "spark_engine"):  # progress on long files, the Spark session's start
        logging.getLogger(name).setLevel(logging.INFO)
    if args.show_log is not None:
        if args.show_log < 1:
            print(f"error: --show-log takes a number of runs, 1 or more; got {args.show_log}", file=sys.stderr)
            return 2
        rows = runlog.read()
        if not rows:
            print(f"error: no runs logged yet ({runlog.log_path()} does not exist); run a date first", file=sys.stderr)
            return 1
        print(format_log(rows[-args.show_log:]))
        return 0
    try:
        days = cli.parse_days(args.date, args.start, args.end, max_days=MAX_BACKFILL_DAYS)
        parse_version_spec(args.model_version)  # a malformed one is a usage error; an unknown one a logged failure
        if args.block_size < 4096:
            raise storage.StorageError("--block-size must be at least 4096")
        store = storage.get_storage(args.storage)
        if args.engine == "spark":
            import spark_engine

            spark_engine.check_storage(store)
        thresholds = monitoring.Thresholds.from_env(psi_warn=args.psi_warn, psi_alert=args.psi_alert,
                                                    wasserstein=args.wasserstein_threshold, alpha=args.drift_alpha)
    except (cli.UsageError, RegistryError, storage.StorageError, monitoring.MonitoringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    service, load_error = None, None
    try:
        service = ModelService.from_registry(args.registry_dir, args.model_version)
    except RegistryError as exc:
        load_error = str(exc)
    profile = None
    if service is not None:
        profile = monitoring.load_reference_profile(args.registry_dir, service.version)
        if profile is None:
            log.warning("drift monitoring is off for model %s", service.version)
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(spark_engine.SparkEngine(args.spark_master)) if args.engine == "spark" else None
        failed = _run_days(args, days, store, service, load_error, profile, thresholds, engine)
    if len(days) > 1:
        print(f"{len(days) - failed} of {len(days)} runs succeeded; log: {storage.display(str(runlog.log_path()))}")
    else:
        print(f"log: {storage.display(str(runlog.log_path()))}")
    return 1 if failed else 0


def _run_days(args, days, store, service, load_error, profile, thresholds, engine) -> int:
    """Run and print each date; returns how many failed."""
    failed = 0
    for day in days:
        monitor = None
        if profile is not None:
            monitor = monitoring.DriftMonitor(profile, thresholds,
                                              monitoring.drift_table_path(settings.logs_dir(), f"{day:%Y%m%d}", store.kind))
        row = run_date(day, store, service, monitor=monitor, wait=args.wait, block_size=args.block_size,
                       load_error=load_error, engine=engine)
        if row["status"] == SUCCESS:
            print(describe(row))
            drift_line = monitoring.describe_fields(row)
            if drift_line:
                print(f"  {drift_line}")
        else:
            failed += 1
            print(f"error: {describe(row)}", file=sys.stderr)
    return failed


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
