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

Azure counterpart: a Power BI report over the curated zone, with Azure ML model
monitoring's drift signals next to it.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import html
import io
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import monitoring
import settings
import storage
from registry import Registry, RegistryError

log = logging.getLogger("analyze_predictions")

LOG_FILE = "batch_runs_log.csv"  # the pipeline's run log, in settings.logs_dir()
BUCKETS = ("low", "medium", "high")
HIST_BINS = monitoring.SCORE_HISTOGRAM_BINS
# Charts are drawn FIG_WIDTH inches wide at DPI: twice the pixels they are shown at in the report.
FIG_WIDTH = 10.4
DPI = 200
COLORS = {"low": "#3a9d6b", "medium": "#f2a541", "high": "#d64550", "ink": "#1f2a37",
          "muted": "#6b7785", "grid": "#e6e9ee", "accent": "#2f6fb0", "reference": "#9aa5b1"}
LEVEL_COLORS = {"ok": "#3a9d6b", "warn": "#f2a541", "alert": "#d64550"}


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
    path = logs_dir / LOG_FILE
    if not path.is_file():
        return {}
    runs: dict[dt.date, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("status") != "success" or (row.get("storage") or "local") != storage_kind:
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


def _cell(value: Any, spec: str = "") -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return format(value, spec or ".4f")
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A plain text table; columns are (key, title, format spec); numbers right-aligned."""
    cells = [[title for _, title, _ in columns]]
    for row in rows:
        cells.append([_cell(row[key], spec) for key, _, spec in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [all(_is_number(row[key]) for row in rows) and bool(rows) for key, _, _ in columns]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    _atomic_write(path, buffer.getvalue().encode("utf-8"))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----- charts ----------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 12, "axes.titleweight": "bold",
        "axes.titlelocation": "left", "axes.edgecolor": COLORS["grid"], "axes.labelcolor": COLORS["muted"],
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": COLORS["grid"],
        "grid.linewidth": 0.8, "xtick.color": COLORS["muted"], "ytick.color": COLORS["muted"],
        "text.color": COLORS["ink"], "legend.frameon": False, "figure.dpi": 100,
    })
    return plt


def _save(fig, path: Path) -> bytes:
    buffer = io.BytesIO()
    # No metadata: the PNG carries no software name or URL.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white", metadata={"Software": None})
    data = buffer.getvalue()
    _atomic_write(path, data)
    return data


def _date_labels(days: Sequence[DayStats]) -> list[str]:
    return [d.date.strftime("%b %d").replace(" 0", " ") for d in days]


def chart_buckets(days: Sequence[DayStats], path: Path, medium: float, high: float) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.8))
    x = np.arange(len(days))
    bottom = np.zeros(len(days))
    labels = {"low": f"low (< {medium:g})", "medium": f"medium ({medium:g} to < {high:g})", "high": f"high (>= {high:g})"}
    for key in BUCKETS:
        values = np.array([d.buckets[key] for d in days], dtype=float)
        bars = ax.bar(x, values, bottom=bottom, color=COLORS[key], width=0.62, label=labels[key], zorder=3)
        for rect, value, base in zip(bars, values, bottom):
            if value and len(days) <= 20 and value / max(1, max(d.rows for d in days)) > 0.06:
                ax.text(rect.get_x() + rect.get_width() / 2, base + value / 2, f"{int(value)}",
                        ha="center", va="center", color="white", fontsize=8.5, fontweight="bold", zorder=4)
        bottom += values
    ax.set_xticks(x, _date_labels(days), rotation=0 if len(days) <= 10 else 45)
    ax.set_ylabel("rows")
    ax.grid(axis="x", visible=False)
    ax.set_title("Risk buckets per day")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    data = _save(fig, path)
    plt.close(fig)
    return data


def chart_trend(days: Sequence[DayStats], trend: Sequence[dict[str, Any]], path: Path) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.8))
    x = np.arange(len(days))
    mean = [d.mean_score for d in days]
    share = [d.high_share for d in days]
    ax.plot(x, mean, color=COLORS["accent"], marker="o", linewidth=2.2, label="mean score (0 to 1)", zorder=3)
    ax.plot(x, share, color=COLORS["high"], marker="s", linewidth=2.2, label="share high-risk", zorder=3)
    if len(days) <= 14:
        for xi, m, h in zip(x, mean, share):
            above_mean = math.isnan(h) or m >= h
            ax.annotate(f"{m:.2f}", (xi, m), xytext=(0, 9 if above_mean else -15), textcoords="offset points",
                        ha="center", fontsize=8.5, color=COLORS["accent"], fontweight="bold")
            if not math.isnan(h):
                ax.annotate(f"{h:.0%}", (xi, h), xytext=(0, -15 if above_mean else 9), textcoords="offset points",
                            ha="center", fontsize=8.5, color=COLORS["high"], fontweight="bold")
    for xi, row in zip(x, trend):
        if row["drift"] in ("alert", "warn"):
            ax.axvspan(xi - 0.4, xi + 0.4, color=LEVEL_COLORS[row["drift"]], alpha=0.12, zorder=1, linewidth=0)
            ax.text(xi, 1.02, f"drift {row['drift']}", ha="center", va="bottom", fontsize=8,
                    color=LEVEL_COLORS[row["drift"]], fontweight="bold")
    ax.set_ylim(0, 1.08)
    ax.set_xlim(-0.6, len(days) - 0.4)
    ax.set_xticks(x, _date_labels(days), rotation=0 if len(days) <= 10 else 45)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.1f}" if v <= 1 else ""))
    ax.set_title("Score trend")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    data = _save(fig, path)
    plt.close(fig)
    return data


def chart_psi(table: Sequence[dict[str, Any]], thresholds: dict[str, float], title: str, path: Path) -> bytes:
    plt = _pyplot()
    rows = [r for r in table if r["signal"] == "data_drift" and not math.isnan(r["population_stability_index"])]
    rows.sort(key=lambda r: r["population_stability_index"])
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, max(3.2, 0.24 * len(rows) + 1.1)))
    y = np.arange(len(rows))
    floor = 1e-3  # a log axis: tiny and huge PSIs on one chart, the thresholds in between
    values = [max(r["population_stability_index"], floor) for r in rows]
    noisy = COLORS["reference"]  # above a threshold, but within sampling noise (KS test)
    colors = [noisy if r["level"] == "ok" and r["population_stability_index"] >= thresholds["warn"]
              else LEVEL_COLORS.get(r["level"], noisy) for r in rows]
    ax.barh(y, values, left=0, color=colors, height=0.72, zorder=3)
    from matplotlib.patches import Patch

    legend = [Patch(color=LEVEL_COLORS["ok"], label="ok"), Patch(color=noisy, label="over warn, within noise"),
              Patch(color=LEVEL_COLORS["warn"], label="warn"), Patch(color=LEVEL_COLORS["alert"], label="alert")]
    ax.legend(handles=legend, loc="lower right", fontsize=8.5, frameon=True, facecolor="white", edgecolor=COLORS["grid"])
    ax.set_xscale("log")
    top = max(values + [thresholds["alert"] * 4])
    ax.set_xlim(floor, top * 3)
    for yi, row, value in zip(y, rows, values):
        if row["level"] in ("warn", "alert") or value >= thresholds["warn"]:
            ax.text(value * 1.08, yi, f"{row['population_stability_index']:.2f}", va="center", fontsize=8,
                    color=COLORS["ink"])
    ax.set_yticks(y, [r["feature"] for r in rows], fontsize=8.5)
    for key in ("warn", "alert"):
        ax.axvline(thresholds[key], color=LEVEL_COLORS[key], linestyle="--", linewidth=1.3, zorder=4)
        ax.text(thresholds[key], len(rows) - 0.2, f" {key} {thresholds[key]:g}", color=LEVEL_COLORS[key],
                fontsize=8.5, va="bottom", fontweight="bold")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylim(-0.7, len(rows) + 0.6)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("population stability index (log scale)")
    ax.set_title(title)
    data = _save(fig, path)
    plt.close(fig)
    return data


def chart_distribution(latest: DayStats, reference: dict[str, Any] | None, path: Path) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.8))
    edges = np.linspace(0, 1, HIST_BINS + 1)
    width = edges[1] - edges[0]
    share = latest.histogram / max(latest.rows, 1)
    ax.bar(edges[:-1], share, width=width, align="edge", color=COLORS["accent"], alpha=0.75,
           label=f"{latest.date:%b %d} ({latest.rows} rows)", zorder=3, edgecolor="white", linewidth=0.6)
    if reference and reference.get("histogram"):
        counts = np.asarray(reference["histogram"]["counts"], dtype=float)
        ref_share = counts / max(counts.sum(), 1)
        ax.step(np.append(edges[:-1], 1.0), np.append(ref_share, ref_share[-1]), where="post",
                color=COLORS["ink"], linewidth=1.8, label="training reference", zorder=4)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (probability of class 1)")
    ax.set_ylabel("share of rows")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title("Score distribution: latest run vs training")
    ax.legend(loc="upper center")
    data = _save(fig, path)
    plt.close(fig)
    return data


# ----- the HTML report ---------------------------------------------------------------------------
CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f9;color:#1f2a37;font:14px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:linear-gradient(120deg,#1f3b57,#2f6fb0);color:#fff;padding:28px 40px 72px}
header h1{margin:0;font-size:26px;font-weight:650;letter-spacing:.2px}
header p{margin:6px 0 0;opacity:.85}
main{max-width:1120px;margin:-52px auto 40px;padding:0 24px}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:16px;margin-bottom:20px}
.kpi{background:#fff;border-radius:12px;padding:16px 18px;box-shadow:0 1px 3px rgba(16,24,40,.08),0 1px 2px rgba(16,24,40,.04)}
.kpi .label{color:#6b7785;font-size:12px;text-transform:uppercase;letter-spacing:.6px}
.kpi .value{font-size:28px;font-weight:650;margin-top:4px}
.kpi .sub{color:#6b7785;font-size:12.5px}
.kpi .count{font-size:15px;font-weight:500;color:#3c4956;margin-left:6px}
.kpi .badge{font-size:15px;padding:2px 12px;vertical-align:middle}
.card{background:#fff;border-radius:12px;padding:20px 24px;margin-bottom:20px;box-shadow:0 1px 3px rgba(16,24,40,.08),0 1px 2px rgba(16,24,40,.04)}
.card h2{margin:0 0 4px;font-size:17px}
.card .note{color:#6b7785;margin:0 0 12px;font-size:13px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:20px}
img{width:100%;height:auto;display:block;margin:6px auto 14px}
.card h3{margin:14px 0 6px;font-size:14px;color:#3c4956}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th{text-align:left;color:#6b7785;font-weight:600;border-bottom:2px solid #e6e9ee;padding:7px 10px;white-space:nowrap}
td{border-bottom:1px solid #eef0f3;padding:7px 10px}
td.num,th.num{text-align:right}
tr:last-child td{border-bottom:none}
.badge{display:inline-block;border-radius:999px;padding:1px 10px;font-size:12px;font-weight:600;color:#fff}
.badge.ok{background:#3a9d6b}.badge.warn{background:#f2a541}.badge.alert{background:#d64550}.badge.none{background:#9aa5b1}
.bar{display:inline-block;height:8px;border-radius:4px;vertical-align:middle}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:middle}
footer{color:#6b7785;font-size:12.5px;max-width:1120px;margin:0 auto 40px;padding:0 24px}
@media (max-width:800px){.kpis{grid-template-columns:repeat(2,1fr)}.grid2{grid-template-columns:1fr}}
"""


def _img(data: bytes | None, alt: str) -> str:
    if not data:
        return f'<p class="note">{html.escape(alt)}: no data for this chart.</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _badge(level: str) -> str:
    css = level if level in LEVEL_COLORS else "none"
    text = {"-": "no data"}.get(level, level)
    return f'<span class="badge {css}">{html.escape(text)}</span>'


def _html_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]],
                render: dict[str, Any] | None = None) -> str:
    render = render or {}
    head = "".join(
        f'<th class="{"num" if rows and _is_number(rows[0][k]) else ""}">{html.escape(t)}</th>' for k, t, _ in columns
    )
    body = []
    for row in rows:
        cells = []
        for key, _, spec in columns:
            value = row[key]
            if key in render:
                content = render[key](value, row)
            else:
                content = html.escape(_cell(value, spec))
            cls = ' class="num"' if _is_number(value) else ""
            cells.append(f"<td{cls}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(context: dict[str, Any]) -> str:
    """The report as one HTML string: inline CSS, images as data: URIs, no other reference."""
    days: list[DayStats] = context["days"]
    latest = days[-1]
    trend = context["trend"]
    latest_trend = trend[-1]
    th = context["bucket_thresholds"]
    first, last = days[0].date, latest.date
    drift_level = latest_trend["drift"]
    drift_sub = (f"max PSI {latest_trend['max_psi']:.3f} ({html.escape(latest_trend['max_psi_feature'])})"
                 if not math.isnan(latest_trend["max_psi"]) else "no monitoring fields in the run log")
    drift_rows = context.get("drift_table") or []
    feature_rows = [r for r in drift_rows if r["signal"] == "data_drift"]
    drift_count = ""
    if feature_rows:
        alerts = sum(r["level"] == "alert" for r in feature_rows)
        drift_count = f' <span class="count">{alerts} of {len(feature_rows)} features</span>'
    previous = days[-2] if len(days) > 1 else None
    delta = ""
    if previous is not None and not math.isnan(previous.high_share):
        change = (latest.high_share - previous.high_share) * 100
        delta = f"{change:+.1f} pts vs {previous.date:%b %d}"
    kpis = [
        ("Latest run", f"{latest.date:%b %d}", f"{latest.rows:,} rows scored, model {html.escape(latest.model_version)}"),
        ("Mean score", f"{latest.mean_score:.3f}", f"range {latest.min_score:.3f} to {latest.max_score:.3f}"),
        ("High risk", f"{latest.high_share:.1%}", delta or f"score >= {th['high']:g}"),
        ("Data drift", _badge(drift_level) + drift_count, drift_sub),
    ]
    kpi_html = "".join(
        f'<div class="kpi"><div class="label">{label}</div><div class="value">{value}</div><div class="sub">{sub}</div></div>'
        for label, value, sub in kpis
    )
    bucket_render = {k: (lambda v, row, k=k: f'<span class="sw" style="background:{COLORS[k]}"></span>{v:,}') for k in BUCKETS}
    trend_render = {
        "drift": lambda v, row: _badge(v),
        "high_share": lambda v, row: (f'<span class="bar" style="width:{max(2, v * 80):.0f}px;background:{COLORS["high"]}"></span> {v:.1%}'
                                      if not math.isnan(v) else "-"),
    }
    top = sorted((r for r in drift_rows if r["signal"] == "data_drift"),
                 key=lambda r: -r["population_stability_index"] if not math.isnan(r["population_stability_index"]) else 0)[:8]
    top_html = _html_table(
        [{"feature": r["feature"], "psi": r["population_stability_index"],
          "nwd": r["normalized_wasserstein_distance"], "ks": r["ks_pvalue"],
          "ref": r["reference_mean"], "prod": r["production_mean"], "level": r["level"]} for r in top],
        (("feature", "feature", ""), ("psi", "PSI", ".3f"), ("nwd", "norm. Wasserstein", ".3f"),
         ("ks", "KS p-value", ".2g"), ("ref", "training mean", ".4g"), ("prod", "run mean", ".4g"),
         ("level", "level", "")),
        {"level": lambda v, row: _badge(v)},
    ) if top else '<p class="note">No drift table for this run.</p>'
    score_row = next((r for r in drift_rows if r["signal"] == "prediction_drift"), None)
    mt = context["monitor_thresholds"]
    charts = context["charts"]
    drift_note = (
        f"Each feature of the {latest.date:%b %d} run against the training data of {html.escape(latest.model_version)}: "
        f"PSI over 10 quantile bins (warn {mt['warn']:g}, alert {mt['alert']:g}) and the normalized Wasserstein "
        f"distance (alert {mt['wasserstein']:g}); a feature only counts when the two-sample KS test also says the "
        "difference is beyond sampling noise."
    )
    quality_note = ""
    if feature_rows:
        nulls = np.nanmean([r["null_value_rate"] for r in feature_rows])
        oob = np.nanmean([r["out_of_bounds_rate"] for r in feature_rows])
        quality_note = (f" Data quality: null value rate {nulls:.1%}, out-of-bounds rate {oob:.1%} "
                        "(values outside the training minimum and maximum).")
    prediction_note = ""
    if score_row is not None:
        prediction_note = (f" Prediction drift: score PSI {score_row['population_stability_index']:.3f}, "
                           f"normalized Wasserstein {score_row['normalized_wasserstein_distance']:.3f}.")
    generated = context["generated_at"]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Risk scoring report {first} to {last}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>Risk scoring report</h1>
<p>{len(days)} day{'s' if len(days) != 1 else ''} of curated predictions, {first:%b %d, %Y} to {last:%b %d, %Y}
&middot; {sum(d.rows for d in days):,} rows &middot; source: {html.escape(context['source'])}</p>
</header>
<main>
<section class="kpis">{kpi_html}</section>
<section class="card">
<h2>Risk buckets</h2>
<p class="note">low: score &lt; {th['medium']:g} &middot; medium: {th['medium']:g} to &lt; {th['high']:g} &middot; high: score &ge; {th['high']:g}</p>
{_img(charts.get('buckets'), 'Risk buckets per day')}
{_html_table(context['buckets'], BUCKET_COLUMNS, bucket_render)}
</section>
<section class="card">
<h2>Trend</h2>
<p class="note">Mean score and share of high-risk rows per day; drift from each run's monitoring in the run log.</p>
{_img(charts.get('trend'), 'Score trend')}
{_html_table(trend, TREND_COLUMNS, trend_render)}
</section>
<section class="card">
<h2>Data drift, latest run</h2>
<p class="note">{drift_note}{prediction_note}{quality_note}</p>
{_img(charts.get('psi'), 'PSI per feature')}
<h3>Largest shifts</h3>
{top_html}
</section>
<section class="card">
<h2>Score distribution</h2>
<p class="note">Share of rows per score band in the latest run, against the scores the model gave its own training data.</p>
{_img(charts.get('distribution'), 'Score distribution')}
</section>
</main>
<footer>Generated {html.escape(generated)} by analyze_predictions.py &middot; tables as CSV beside this file:
risk_buckets.csv, trend.csv, drift_latest.csv</footer>
</body>
</html>
"""


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
    if "+" in version or version == "-":
        return None
    try:
        entry = Registry(registry_dir).get(version)
        profile = monitoring.load_profile(entry.path)
    except (RegistryError, monitoring.MonitoringError) as exc:
        log.warning("no training score reference for %s: %s", version, exc)
        return None
    return profile.get("score") if profile else None


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
    charts: dict[str, bytes | None] = {
        "buckets": chart_buckets(days, files["buckets_png"], medium, high),
        "trend": chart_trend(days, trend, files["trend_png"]),
        "psi": None,
        "distribution": chart_distribution(latest, reference_scores(registry_dir, latest.model_version),
                                           files["distribution_png"]),
    }
    if drift_table:
        charts["psi"] = chart_psi(drift_table, {"warn": mt.psi_warn, "alert": mt.psi_alert},
                                  f"PSI per feature, run of {latest.date:%b %d}", files["psi_png"])
    else:
        del files["psi_png"]
    write_csv(files["buckets_csv"], buckets, [c for c, _, _ in BUCKET_COLUMNS])
    write_csv(files["trend_csv"], trend, ["date", "rows", "mean_score", "high_share", "model_version", "drift",
                                          "max_psi", "max_psi_feature", "drifted_features"])
    write_csv(files["drift_csv"], drift_table, monitoring.TABLE_COLUMNS)
    context = {
        "days": days, "buckets": buckets, "trend": trend, "drift_table": drift_table, "charts": charts,
        "bucket_thresholds": {"medium": medium, "high": high},
        "monitor_thresholds": {"warn": mt.psi_warn, "alert": mt.psi_alert, "wasserstein": mt.wasserstein},
        "source": f"{store.kind} curated zone",
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    _atomic_write(files["html"], render_html(context).encode("utf-8"))
    return Report(days, buckets, trend, drift_table, files)


# ----- CLI ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Risk buckets, trends and drift from the curated predictions; writes charts, CSVs and an HTML report.",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--storage", choices=storage.KINDS, default=None,
                        help="where the curated zone is (default: $STORAGE_BACKEND, else local)")
    parser.add_argument("--start", default=None, metavar="YYYY-MM-DD", help="first date to include (default: all)")
    parser.add_argument("--end", default=None, metavar="YYYY-MM-DD", help="last date to include (default: all)")
    parser.add_argument("--medium-threshold", type=float, default=0.3, help="score from which a row is medium risk")
    parser.add_argument("--high-threshold", type=float, default=0.7, help="score from which a row is high risk")
    parser.add_argument("--reports-dir", type=Path, default=None,
                        help="report folder (default: $REPORTS_DIR or ./reports)")
    parser.add_argument("--logs-dir", type=Path, default=None,
                        help="folder of the run log and drift tables (default: $LOGS_DIR or ./logs)")
    parser.add_argument("--registry-dir", type=Path, default=None,
                        help="registry folder, for the training score reference (default: $LOCAL_REGISTRY_DIR or ./local_registry)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        start = storage.parse_date(args.start) if args.start else None
        end = storage.parse_date(args.end) if args.end else None
        if start and end and end < start:
            raise AnalysisError(f"--end {end} is before --start {start}")
        store = storage.get_storage(args.storage)
        report = analyze(store, start=start, end=end, medium=args.medium_threshold, high=args.high_threshold,
                         reports_dir=args.reports_dir, logs_dir=args.logs_dir, registry_dir=args.registry_dir)
    except (AnalysisError, storage.StorageError, monitoring.MonitoringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Risk buckets per date (low < {args.medium_threshold:g} <= medium < {args.high_threshold:g} <= high)")
    print(format_table(report.buckets, BUCKET_COLUMNS))
    print()
    print("Trend")
    print(format_table(report.trend, TREND_COLUMNS))
    print()
    print(f"HTML report: {storage.display(str(report.files['html']))}")
    print(f"charts and CSV tables: {storage.display(str(report.files['html'].parent))}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
