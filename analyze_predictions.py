"""Risk buckets, trends, drift and charts from the curated predictions: the report.

Reads every curated `predictions_YYYYMMDD.csv` (local curated/ or the blob container
`curated`, --storage; only the `score` and `model_version` columns, streamed), optionally
within --start/--end; the run log logs/batch_runs_log.csv for each date's drift flag (runs
on the same storage); the latest run's drift table logs/drift/drift_YYYYMMDD.csv
(drift_blob_YYYYMMDD.csv for blob); and the reference profile of the
model version that scored it (for the training score distribution).

Prints two tables: risk bucket counts per date (low / medium / high by `score`, thresholds
--medium-threshold and --high-threshold) and a trend over dates (rows, mean score, share
of high risk, model version, drift). Writes into the report folder (default reports/):

    buckets.png  score_trend.png  psi_latest.png  score_distribution.png
    risk_buckets.csv  trend.csv  drift_latest.csv
    report.html        one self-contained file: charts embedded, styles inline, no links

The charts are drawn by charts.py; the page is templates/report.html.j2 (Jinja2, autoescaped)
with templates/report.css inlined into it.

Azure counterpart: a Power BI report over the curated zone, with Azure ML model
monitoring's drift signals next to it.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import functools
import io
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import jinja2
import numpy as np

import charts
import cli
import collector
import fileio
import monitoring
import online_traffic
import runlog
import settings
import storage

log = logging.getLogger("analyze_predictions")

BUCKETS = ("low", "medium", "high")
HIST_BINS = monitoring.SCORE_HISTOGRAM_BINS
TEMPLATES_DIR = settings.ROOT / "templates"  # report.html.j2 and the report.css it inlines


class AnalysisError(Exception):
    """An expected failure (no files, bad column, bad arguments), with a message for the user."""


# ----- reading the curated zone -------------------------------------------------------------
@dataclass
class DayStats:
    """One predictions file, reduced to what the report needs."""

    date: dt.date
    name: str
    rows: int = 0
    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    score_sum: float = 0.0
    min_score: float = math.inf
    max_score: float = -math.inf
    versions: dict[str, int] = field(default_factory=dict)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, dtype=np.int64))

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.rows if self.rows else math.nan

    @property
    def high_share(self) -> float:
        return self.buckets["high"] / self.rows if self.rows else math.nan

    @property
    def model_version(self) -> str:
        """The version that scored the file ('v001+v002' if several did)."""
        return "+".join(sorted(self.versions)) if self.versions else "-"


def bucket_of(scores: np.ndarray, medium: float, high: float) -> dict[str, int]:
    """Counts per bucket: low < medium <= medium-risk < high <= high-risk."""
    return {
        "low": int(np.count_nonzero(scores < medium)),
        "medium": int(np.count_nonzero((scores >= medium) & (scores < high))),
        "high": int(np.count_nonzero(scores >= high)),
    }


def summarize_file(handle, name: str, day: dt.date, medium: float, high: float,
                   block_size: int = 1 << 20) -> DayStats:
    """Stream one predictions CSV (only `score` and `model_version`) into a DayStats.

    1 MiB blocks keep memory flat: with 8 MiB blocks pyarrow reads far ahead (about 280 MB peak
    on a 1-million-row file against about 100 MB).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    stats = DayStats(day, name)
    try:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(block_size=block_size),
            convert_options=pacsv.ConvertOptions(
                include_columns=["score", "model_version"], include_missing_columns=True,
                column_types={"score": pa.float64(), "model_version": pa.string()},
            ),
        )
        header = reader.schema.names
        for batch in reader:
            _add_batch(stats, batch, medium, high)
    except pa.ArrowInvalid as exc:
        message = str(exc).split("\n")[0]
        if "Empty CSV file" in message:
            raise AnalysisError(f"{name} is empty: expected a header with a score column") from None
        raise AnalysisError(f"{name}: cannot read the score column: {message}") from None
    if stats.rows == 0 and "score" not in header:
        raise AnalysisError(f"{name} has no score column")
    return stats


def _add_batch(stats: DayStats, batch, medium: float, high: float) -> None:
    scores_col = batch.column("score")
    if scores_col.null_count == len(scores_col) and len(scores_col):
        raise AnalysisError(f"{stats.name} has no score column (or every score is empty)")
    if scores_col.null_count:
        raise AnalysisError(f"{stats.name}: {scores_col.null_count} rows have an empty score")
    scores = scores_col.to_numpy(zero_copy_only=False)
    if scores.size == 0:
        return
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        bad = int(np.argmax(~np.isfinite(scores) | (scores < 0) | (scores > 1)))
        raise AnalysisError(f"{stats.name}: score {scores[bad]!r} of a row is not a probability between 0 and 1")
    for key, count in bucket_of(scores, medium, high).items():
        stats.buckets[key] += count
    stats.rows += scores.size
    stats.score_sum += float(scores.sum())
    stats.min_score = min(stats.min_score, float(scores.min()))
    stats.max_score = max(stats.max_score, float(scores.max()))
    stats.histogram += np.histogram(scores, bins=HIST_BINS, range=(0.0, 1.0))[0]
    versions = batch.column("model_version")
    if versions.null_count < len(versions):
        import pyarrow.compute as pc

        counts = pc.value_counts(versions.drop_null() if hasattr(versions, "drop_null") else versions)
        for item in counts.to_pylist():
            if item["values"] is not None:
                stats.versions[item["values"]] = stats.versions.get(item["values"], 0) + int(item["counts"])


def load_days(store, start: dt.date | None, end: dt.date | None, medium: float, high: float) -> list[DayStats]:
    """Every dated predictions file in the curated zone within [start, end], oldest first."""
    names = [n for n in store.list_curated() if "predictions" in n and n.endswith(".csv")]
    dated = []
    for name in names:
        day = storage.date_of(name)
        if day is None:
            log.warning("skipping %s: no YYYYMMDD date in its name", name)
            continue
        if (start and day < start) or (end and day > end):
            continue
        dated.append((day, name))
    days = []
    for day, name in sorted(dated):
        with store.open_curated(name) as handle:
            days.append(summarize_file(handle, name, day, medium, high))
    return days


# ----- the run log and drift tables ------------------------------------------------------------
def read_run_log(logs_dir: Path, storage_kind: str = "local") -> dict[dt.date, dict[str, str]]:
    """The last successful run of each date on this storage in the run log (empty when there is no log)."""
    runs: dict[dt.date, dict[str, str]] = {}
    for row in runlog.read(logs_dir / runlog.LOG_FILE):
        if row.get("status") != runlog.SUCCESS or (row.get("storage") or "local") != storage_kind:
            continue
        day = _run_day(row)
        if day is not None:
            runs[day] = row  # rows are in time order: the last one wins
    return runs


def _run_day(row: dict[str, str]) -> dt.date | None:
    text = row.get("run_date") or ""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return storage.date_of(Path(row.get("output_file") or "").name)


def run_thresholds(run: dict[str, str] | None) -> monitoring.Thresholds | None:
    """The thresholds a run was judged by, from its log row (None for older rows)."""
    if not run:
        return None
    try:
        return monitoring.Thresholds(float(run["psi_warn"]), float(run["psi_alert"]),
                                     float(run["wasserstein_threshold"]), float(run["drift_alpha"]))
    except (KeyError, TypeError, ValueError, monitoring.MonitoringError):
        return None


def drift_status(run: dict[str, str] | None) -> str:
    """alert / warn / ok from a run's log row; '-' when the run has no monitoring fields."""
    if not run or run.get("drift_flag", "") == "":
        return "-"
    if run["drift_flag"] == "true":
        return "alert"
    return "warn" if run.get("drift_warn") == "true" else "ok"


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


# ----- tables --------------------------------------------------------------------------------
def bucket_rows(days: Sequence[DayStats]) -> list[dict[str, Any]]:
    return [{"date": d.date.isoformat(), "rows": d.rows, **d.buckets} for d in days]


def trend_rows(days: Sequence[DayStats], runs: dict[dt.date, dict[str, str]]) -> list[dict[str, Any]]:
    rows = []
    for d in days:
        run = runs.get(d.date)
        rows.append({
            "date": d.date.isoformat(),
            "rows": d.rows,
            "mean_score": d.mean_score,
            "high_share": d.high_share,
            "model_version": d.model_version,
            "drift": drift_status(run),
            "max_psi": _float(run.get("max_psi")) if run else math.nan,
            "max_psi_feature": (run.get("max_psi_feature") or "") if run else "",
            "drifted_features": (run.get("drifted_features") or "") if run else "",
        })
    return rows


BUCKET_COLUMNS = (("date", "date", ""), ("rows", "rows", ""), ("low", "low", ""),
                  ("medium", "medium", ""), ("high", "high", ""))
TREND_COLUMNS = (("date", "date", ""), ("rows", "rows", ""), ("mean_score", "mean_score", ".4f"),
                 ("high_share", "high_share", ".1%"), ("model_version", "model", ""),
                 ("drift", "drift", ""), ("max_psi", "max_psi", ".3f"), ("max_psi_feature", "max_psi_feature", ""))


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: monitoring.format_value(row.get(k)) for k in columns})
    fileio.write_atomic(path, buffer.getvalue())


# ----- the HTML report ---------------------------------------------------------------------------
ONLINE_DAYS = 7  # the report's online traffic: what the endpoint collected in the last week
ONLINE_HOUR_COLUMNS = (("deployment", "deployment", ""), ("hour", "hour (UTC)", ""), ("requests", "requests", ""),
                       ("records", "records", ""))
ONLINE_SCORE_COLUMNS = (("deployment", "deployment", ""), ("records", "records", ""),
                        ("mean_score", "mean score", ".4f"), ("low", "low", ".1%"), ("medium", "medium", ".1%"),
                        ("high", "high", ".1%"))
ONLINE_MONITOR_COLUMNS = (("deployment", "deployment", ""), ("run_at", "run at", ""), ("window", "window", ""),
                          ("records", "records", ""), ("data_drift", "data drift", ""),
                          ("prediction_drift", "prediction drift", ""), ("data_quality", "data quality", ""))
TOP_COLUMNS = (("feature", "feature", ""), ("type", "type", ""), ("psi", "PSI", ".3f"),
               ("nwd", "norm. Wasserstein", ".3f"), ("ks", "KS p-value", ".2g"), ("chi2", "chi-squared p-value", ".2g"),
               ("ref", "training mean", ".4g"), ("prod", "run mean", ".4g"), ("level", "level", ""))


@functools.lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    """The report templates, autoescaped: text from the data (file names, versions) cannot become markup."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(fmt=format, cell=cli.format_cell)
    env.tests.update(numeric=cli.is_number, nan=lambda v: isinstance(v, float) and math.isnan(v))
    return env


def _top_features(drift_rows: Sequence[dict[str, Any]], limit: int = 8) -> list[dict[str, Any]]:
    """The features with the largest PSI, as rows of the report's "Largest shifts" table."""
    features = [r for r in drift_rows if r["signal"] == "data_drift"]
    features.sort(key=lambda r: 0 if math.isnan(r["population_stability_index"]) else -r["population_stability_index"])
    return [{"feature": r["feature"], "type": r.get("type") or "number", "psi": r["population_stability_index"],
             "nwd": r["normalized_wasserstein_distance"], "ks": r["ks_pvalue"],
             "chi2": r.get("pearsons_chi_squared_test", math.nan),
             "ref": r["reference_mean"], "prod": r["production_mean"], "level": r["level"]}
            for r in features[:limit]]


def render_html(context: dict[str, Any]) -> str:
    """The report as one HTML page: the CSS inline, images as data: URIs, no other reference."""
    days: list[DayStats] = context["days"]
    drift_rows = context.get("drift_table") or []
    feature_rows = [r for r in drift_rows if r["signal"] == "data_drift"]
    quality = None
    if feature_rows:
        quality = {"nulls": np.nanmean([r["null_value_rate"] for r in feature_rows]),
                   "out_of_bounds": np.nanmean([r["out_of_bounds_rate"] for r in feature_rows])}
    css = (TEMPLATES_DIR / "report.css").read_text(encoding="utf-8")  # inlined: the page stays one file
    page = {
        **context,
        "css": css,
        "first": days[0].date, "last": days[-1].date, "latest": days[-1],
        "previous": days[-2] if len(days) > 1 else None,
        "total_rows": sum(d.rows for d in days), "latest_trend": context["trend"][-1],
        "feature_rows": feature_rows, "drift_alerts": sum(r["level"] == "alert" for r in feature_rows),
        "top_features": _top_features(drift_rows), "quality": quality,
        "score_row": next((r for r in drift_rows if r["signal"] == "prediction_drift"), None),
        "images": {k: base64.b64encode(v).decode("ascii") if v else None for k, v in context["charts"].items()},
        "bucket_columns": BUCKET_COLUMNS, "trend_columns": TREND_COLUMNS, "top_columns": TOP_COLUMNS,
        "online_hour_columns": ONLINE_HOUR_COLUMNS, "online_score_columns": ONLINE_SCORE_COLUMNS,
        "online_monitor_columns": ONLINE_MONITOR_COLUMNS,
        "colors": charts.COLORS, "level_colors": charts.LEVEL_COLORS,
    }
    return _templates().get_template("report.html.j2").render(page)


# ----- the whole analysis -----------------------------------------------------------------------
@dataclass
class Report:
    days: list[DayStats]
    buckets: list[dict[str, Any]]
    trend: list[dict[str, Any]]
    drift_table: list[dict[str, Any]]
    files: dict[str, Path]


def reference_scores(registry_dir: Path | None, version: str) -> dict[str, Any] | None:
    """The training score profile of a version, or None (version unknown, several, no profile)."""
    profile = monitoring.load_reference_profile(registry_dir, version)
    return profile.get("score") if profile else None


def category_counts_in_file(store, name: str, feature: str) -> dict[str, int]:
    """Rows per value of one column of a curated predictions file (its text as written)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    with store.open_curated(name) as handle:
        table = pacsv.read_csv(handle, convert_options=pacsv.ConvertOptions(
            include_columns=[feature], column_types={feature: pa.string()}, strings_can_be_null=False))
    return {item["values"]: int(item["counts"]) for item in pc.value_counts(table.column(feature)).to_pylist()}


def chart_top_category(store, latest: DayStats, drift_table: Sequence[dict[str, Any]], registry_dir: Path | None,
                       path: Path) -> bytes | None:
    """The shares chart of the latest run's most drifted category feature (largest PSI), or None."""
    rows = [r for r in drift_table if r.get("type") == "category" and not math.isnan(r["population_stability_index"])]
    profile = monitoring.load_reference_profile(registry_dir, latest.model_version) if rows else None
    if not rows or not profile:
        return None
    top = max(rows, key=lambda r: r["population_stability_index"])
    reference = profile["columns"].get(top["feature"], {})
    if reference.get("type") != "category":
        return None
    counts = category_counts_in_file(store, latest.name, top["feature"])
    return charts.chart_category_shares(top["feature"], reference["categories"], reference["category_proportions"],
                                        counts, f"{latest.date:%b %d} ({latest.rows} rows)", path)


def online_summary(kind: str, medium: float, high: float) -> online_traffic.Traffic | None:
    """The endpoint's collected traffic of the last ONLINE_DAYS and its latest monitor runs (None if unreadable)."""
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=ONLINE_DAYS)
    try:
        return online_traffic.summarize(collector.get_sink(kind), since, medium, high)
    except Exception as exc:  # the batch report stands without it
        log.warning("online traffic left out of the report: %s", exc)
        return None


def analyze(store, *, start: dt.date | None = None, end: dt.date | None = None, medium: float = 0.3,
            high: float = 0.7, reports_dir: Path | None = None, logs_dir: Path | None = None,
            registry_dir: Path | None = None, monitor_thresholds: monitoring.Thresholds | None = None) -> Report:
    """Read, summarise, chart and write the report folder; returns the tables and file paths."""
    if not 0 < medium < high <= 1:
        raise AnalysisError(f"bucket thresholds must satisfy 0 < medium < high <= 1, got {medium} and {high}")
    days = load_days(store, start, end, medium, high)
    if not days:
        where = store.location(storage.CURATED, "predictions_YYYYMMDD.csv")
        window = ""
        if start or end:
            window = f" between {start or 'the beginning'} and {end or 'the end'}"
        raise AnalysisError(
            f"no prediction files{window} in the curated zone ({where}): "
            "run python pipeline_run_batch.py --date YYYY-MM-DD first"
        )
    logs = logs_dir or settings.logs_dir()
    runs = read_run_log(logs, store.kind)
    buckets = bucket_rows(days)
    trend = trend_rows(days, runs)
    latest = days[-1]
    drift_path = monitoring.drift_table_path(logs, f"{latest.date:%Y%m%d}", store.kind)
    drift_table = monitoring.read_drift_table(drift_path) if drift_path.is_file() else []
    mt = monitor_thresholds or run_thresholds(runs.get(latest.date)) or monitoring.Thresholds.from_env()
    out = reports_dir or settings.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "buckets_png": out / "buckets.png", "trend_png": out / "score_trend.png",
        "psi_png": out / "psi_latest.png", "distribution_png": out / "score_distribution.png",
        "buckets_csv": out / "risk_buckets.csv", "trend_csv": out / "trend.csv",
        "drift_csv": out / "drift_latest.csv", "html": out / "report.html",
    }
    images: dict[str, bytes | None] = {
        "buckets": charts.chart_buckets(days, files["buckets_png"], medium, high),
        "trend": charts.chart_trend(days, trend, files["trend_png"]),
        "psi": None,
        "distribution": charts.chart_distribution(latest, reference_scores(registry_dir, latest.model_version),
                                           files["distribution_png"]),
    }
    if drift_table:
        images["psi"] = charts.chart_psi(drift_table, {"warn": mt.psi_warn, "alert": mt.psi_alert},
                                  f"PSI per feature, run of {latest.date:%b %d}", files["psi_png"])
    else:
        del files["psi_png"]
    images["categories"] = chart_top_category(store, latest, drift_table, registry_dir, out / "category_shares.png")
    if images["categories"] is not None:
        files["categories_png"] = out / "category_shares.png"
    write_csv(files["buckets_csv"], buckets, [c for c, _, _ in BUCKET_COLUMNS])
    write_csv(files["trend_csv"], trend, ["date", "rows", "mean_score", "high_share", "model_version", "drift",
                                          "max_psi", "max_psi_feature", "drifted_features"])
    write_csv(files["drift_csv"], drift_table, monitoring.TABLE_COLUMNS)
    context = {
        "days": days, "buckets": buckets, "trend": trend, "drift_table": drift_table, "charts": images,
        "bucket_thresholds": {"medium": medium, "high": high},
        "monitor_thresholds": {"warn": mt.psi_warn, "alert": mt.psi_alert, "wasserstein": mt.wasserstein},
        "source": f"{store.kind} curated zone",
        "online": online_summary(store.kind, medium, high), "online_days": ONLINE_DAYS,
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    fileio.write_atomic(files["html"], render_html(context))
    return Report(days, buckets, trend, drift_table, files)


# ----- CLI ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Risk buckets, trends and drift from the curated predictions; writes charts, CSVs and an HTML report.",
        formatter_class=settings.HelpFormatter,
    )
    cli.add_storage_option(parser, help_text="where the curated zone is (default: $STORAGE_BACKEND, else local)")
    parser.add_argument("--start", default=None, metavar="YYYY-MM-DD", help="first date to include (default: all)")
    parser.add_argument("--end", default=None, metavar="YYYY-MM-DD", help="last date to include (default: all)")
    parser.add_argument("--medium-threshold", type=float, default=0.3, help="score from which a row is medium risk")
    parser.add_argument("--high-threshold", type=float, default=0.7, help="score from which a row is high risk")
    parser.add_argument("--reports-dir", type=Path, default=None,
                        help="report folder (default: $REPORTS_DIR or ./reports)")
    parser.add_argument("--logs-dir", type=Path, default=None,
                        help="folder of the run log and drift tables (default: $LOGS_DIR or ./logs)")
    cli.add_registry_options(parser, model_version=False, registry_help=(
        "registry folder, for the training score reference (default: $LOCAL_REGISTRY_DIR or ./local_registry)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging()
    try:
        start, end = cli.parse_date_range(args.start, args.end)
        store = storage.get_storage(args.storage)
        report = analyze(store, start=start, end=end, medium=args.medium_threshold, high=args.high_threshold,
                         reports_dir=args.reports_dir, logs_dir=args.logs_dir, registry_dir=args.registry_dir)
    except (AnalysisError, cli.UsageError, storage.StorageError, monitoring.MonitoringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Risk buckets per date (low < {args.medium_threshold:g} <= medium < {args.high_threshold:g} <= high)")
    print(cli.format_table(report.buckets, BUCKET_COLUMNS))
    print()
    print("Trend")
    print(cli.format_table(report.trend, TREND_COLUMNS))
    print()
    print(f"HTML report: {storage.display(str(report.files['html']))}")
    print(f"charts and CSV tables: {storage.display(str(report.files['html'].parent))}/")
    return 0


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
