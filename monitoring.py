"""Model monitoring: a batch run's drift against its model version's reference profile.

The local stand-in for Azure ML model monitoring (data drift, prediction drift and data
quality signals). A helper module: it imports no stage script. Three modules share the work:

- drift_profile.py: the reference profile (build_profile at registration, write_profile,
  load_profile, load_reference_profile(registry_dir, version)).
- drift_metrics.py: the metrics (PSI, normalized Wasserstein, Jensen-Shannon, KS), the
  Thresholds that turn them into levels, and MonitoringError.
- this module: per batch run, `DriftAccumulator.update(matrix, scores)` takes each scored
  chunk and `result()` returns the per-feature table and the run summary that goes into the
  run log; `DriftMonitor` wires that into the pipeline; the drift table on disk.

Metric names are Azure's. Number features: population_stability_index over quantile bins,
normalized_wasserstein_distance, jensen_shannon_distance, two_sample_kolmogorov_smirnov_test.
Category features (their matrix columns hold the schema's category codes): the PSI and the
Jensen-Shannon distance over the categories and pearsons_chi_squared_test (its p-value,
which then plays the KS test's part in the significance rule). Data quality for every
feature: null_value_rate, data_type_error_rate and out_of_bounds_rate (for a category, the
share of values not seen in training). Every name of the two other modules is also
reachable as monitoring.<name>, so callers import one module.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

import fileio
from drift_metrics import (  # noqa: F401  (re-exported: monitoring is the one import for callers)
    LEVELS, PSI_EPSILON, MonitoringError, Thresholds, bin_counts, compare_categories, compare_column,
    jensen_shannon_distance, normalized_wasserstein_distance, pearsons_chi_squared_test, population_stability_index,
)
from drift_profile import (  # noqa: F401  (re-exported)
    DEFAULT_BINS, PROFILE_FILE, PROFILE_SCHEMA, REFERENCE_SAMPLE_MAX, SCORE_HISTOGRAM_BINS, build_profile,
    category_counts,
    load_profile, load_reference_profile, profile_column, quantile_edges, reference_sample, write_profile,
)

log = logging.getLogger("monitoring")

# Rows kept per feature of a run for the Wasserstein distance (uniform reservoir sample):
# every row of a run of this size or less.
RESERVOIR_SIZE = 20000

# The per-feature drift table, one row per feature plus one for the score.
TABLE_COLUMNS = (
    "signal",
    "feature",
    "type",  # number, category, or score
    "population_stability_index",
    "normalized_wasserstein_distance",
    "jensen_shannon_distance",
    "pearsons_chi_squared_test",  # its p-value (category features)
    "ks_statistic",
    "ks_pvalue",
    "null_value_rate",
    "data_type_error_rate",
    "out_of_bounds_rate",
    "reference_mean",
    "production_mean",
    "level",
)

# The fields a run adds to its log row, in this order.
SUMMARY_COLUMNS = (
    "drift_flag",
    "drift_warn",
    "max_psi",
    "max_psi_feature",
    "max_normalized_wasserstein",
    "drifted_features",
    "warn_features",
    "null_rate",
    "out_of_bounds_rate",
    "score_psi",
    "min_ks_pvalue",
    # The thresholds the run was judged by, so a report can draw the same lines later.
    "psi_warn",
    "psi_alert",
    "wasserstein_threshold",
    "drift_alpha",
)


# ----- the streaming accumulator -----------------------------------------------------------
class _Reservoir:
    """A uniform sample of at most `size` rows of a stream (Vitter's algorithm R, per chunk)."""

    def __init__(self, width: int, size: int, rng: np.random.Generator):
        self.buffer = np.empty((size, width), dtype=np.float64)
        self.size = size
        self.seen = 0
        self.rng = rng

    def add(self, chunk: np.ndarray) -> None:
        n = chunk.shape[0]
        free = max(0, min(self.size - self.seen, n))
        if free:
            self.buffer[self.seen:self.seen + free] = chunk[:free]
        if n > free:
            # Row t (0-based over the whole stream) replaces a random slot with chance size/(t+1).
            t = self.seen + np.arange(free, n)
            slots = self.rng.integers(0, t + 1)
            keep = slots < self.size
            rows, slots = np.arange(free, n)[keep], slots[keep]
            if rows.size:
                # The later of two rows drawn for one slot wins, as in the sequential algorithm.
                last = np.unique(slots[::-1], return_index=True)[1]
                chosen = rows[::-1][last]
                self.buffer[slots[::-1][last]] = chunk[chosen]
        self.seen += n

    def values(self) -> np.ndarray:
        return self.buffer[: min(self.seen, self.size)]

    def merge(self, other: "_Reservoir") -> None:
        """Add a sample of rows that followed: both samples whole while they fit (so the result is
        what one pass would keep), else a uniform sample of both (a hypergeometric split)."""
        mine, theirs = self.values().copy(), other.values()
        total = self.seen + other.seen
        self.buffer = np.empty((self.size, self.buffer.shape[1]), dtype=np.float64)
        if total <= self.size:
            self.buffer[:total] = np.concatenate([mine, theirs])
        else:
            take = int(self.rng.hypergeometric(self.seen, other.seen, self.size))
            self.buffer[:take] = mine[self.rng.choice(len(mine), take, replace=False)]
            self.buffer[take:] = theirs[self.rng.choice(len(theirs), self.size - take, replace=False)]
        self.seen = total

    def __getstate__(self) -> dict[str, Any]:  # pickled with the filled rows only
        return {**self.__dict__, "buffer": self.values().copy()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        buffer = np.empty((self.size, state["buffer"].shape[1]), dtype=np.float64)
        buffer[:len(state["buffer"])] = state["buffer"]
        self.buffer = buffer


@dataclass
class DriftResult:
    """What one run's monitoring found: the per-feature table and the summary for the log."""

    table: list[dict[str, Any]]
    summary: dict[str, Any]
    thresholds: Thresholds
    rows: int
    model_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def log_fields(self) -> dict[str, str]:
        """The summary as strings, for the run log row (columns SUMMARY_COLUMNS)."""
        th = self.thresholds
        used = {"psi_warn": th.psi_warn, "psi_alert": th.psi_alert, "wasserstein_threshold": th.wasserstein,
                "drift_alpha": th.alpha}
        return {k: format_value(used[k] if k in used else self.summary.get(k)) for k in SUMMARY_COLUMNS}


class DriftAccumulator:
    """Accumulate a run's feature matrix and scores chunk by chunk against a reference profile."""

    def __init__(self, profile: dict[str, Any], thresholds: Thresholds | None = None,
                 reservoir_size: int = RESERVOIR_SIZE, seed: int = 0):
        self.profile = profile
        self.thresholds = thresholds or Thresholds()
        self.features: list[str] = list(profile["features"])
        columns = [profile["columns"][name] for name in self.features]
        self._edges = [np.asarray(c["bin_edges"], dtype=np.float64) for c in columns]
        self._min = np.array([np.nan if c["min"] is None else c["min"] for c in columns], dtype=np.float64)
        self._max = np.array([np.nan if c["max"] is None else c["max"] for c in columns], dtype=np.float64)
        width = len(self.features)
        # All features are binned together: edge k of every feature in one row of a matrix padded
        # with +inf (no finite value reaches it); counting the values that reach each edge gives
        # the bin counts by differences. About twice as fast as a searchsorted per column.
        slots = max((len(e) for e in self._edges), default=0) + 1
        self._edge_rows = np.full((slots - 1, width), np.inf)
        for i, edges in enumerate(self._edges):
            self._edge_rows[:len(edges), i] = edges
        self._count_matrix = np.zeros((width, slots), dtype=np.int64)
        self._nulls = np.zeros(width, dtype=np.int64)
        self._oob = np.zeros(width, dtype=np.int64)
        self._sum = np.zeros(width, dtype=np.float64)
        # Category features (their matrix columns hold category codes): counts per category.
        self._categories = {i: len(c["categories"]) for i, c in enumerate(columns) if c.get("type") == "category"}
        self._category_counts = {i: np.zeros(size, dtype=np.int64) for i, size in self._categories.items()}
        self.rows = 0
        rng = np.random.default_rng(seed)
        self._reservoir = _Reservoir(width, reservoir_size, rng)
        score = profile.get("score")
        self._score_edges = np.asarray(score["bin_edges"], dtype=np.float64) if score else None
        self._score_counts = np.zeros(len(self._score_edges) + 1, dtype=np.int64) if score else None
        self._score_hist = np.zeros(SCORE_HISTOGRAM_BINS, dtype=np.int64)
        self._score_sum = 0.0
        self._score_rows = 0
        self._score_reservoir = _Reservoir(1, reservoir_size, rng)

    def update(self, matrix: np.ndarray, scores: np.ndarray | None = None) -> None:
        """Add one chunk: rows x features in the model's feature order, and its scores."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.features):
            raise MonitoringError(
                f"expected chunks with {len(self.features)} columns in the model's feature order, got shape {matrix.shape}"
            )
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)
            if scores.shape[0] != matrix.shape[0]:
                raise MonitoringError(f"got {scores.shape[0]} scores for {matrix.shape[0]} rows")
        if matrix.shape[0] == 0:
            return
        finite = np.isfinite(matrix)
        self._nulls += (~finite).sum(axis=0)
        with np.errstate(invalid="ignore"):
            self._oob += ((matrix < self._min) | (matrix > self._max)).sum(axis=0)
        self._sum += np.where(finite, matrix, 0.0).sum(axis=0)
        self._count_matrix += self._bin_all(matrix if finite.all() else np.where(finite, matrix, np.nan),
                                            finite.sum(axis=0))
        self._reservoir.add(matrix)
        for i, size in self._categories.items():
            self._category_counts[i] += category_counts(matrix[:, i], size)
        self.rows += matrix.shape[0]
        if scores is not None:
            ok = scores[np.isfinite(scores)]
            if self._score_counts is not None:
                self._score_counts += bin_counts(ok, self._score_edges)
            self._score_hist += np.histogram(ok, bins=SCORE_HISTOGRAM_BINS, range=(0.0, 1.0))[0]
            self._score_sum += float(ok.sum())
            self._score_rows += ok.size
            self._score_reservoir.add(ok.reshape(-1, 1))

    def merge(self, other: "DriftAccumulator") -> "DriftAccumulator":
        """Add the rows another accumulator saw (a later part of the same run, e.g. a Spark partition).

        Counts and rates add up exactly; the samples behind the Wasserstein and KS figures are
        joined whole up to the reservoir's size (equal to one pass over the run), beyond it into
        a uniform sample of both.
        """
        if other.features != self.features or other._categories != self._categories:
            raise MonitoringError("can only merge accumulators built from the same profile")
        self._count_matrix += other._count_matrix
        self._nulls += other._nulls
        self._oob += other._oob
        self._sum += other._sum
        for i, counts in other._category_counts.items():
            self._category_counts[i] += counts
        self.rows += other.rows
        self._reservoir.merge(other._reservoir)
        if self._score_counts is not None and other._score_counts is not None:
            self._score_counts += other._score_counts
        self._score_hist += other._score_hist
        self._score_sum += other._score_sum
        self._score_rows += other._score_rows
        self._score_reservoir.merge(other._score_reservoir)
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the profile (a partial travels to a receiver that has it)."""
        return {**self.__dict__, "profile": None}

    def _bin_all(self, matrix: np.ndarray, finite_counts: np.ndarray) -> np.ndarray:
        """Bin counts of every feature (rows x features, non-finite values already NaN)."""
        edges = self._edge_rows.shape[0]
        reach = np.empty((matrix.shape[1], edges), dtype=np.int64)
        with np.errstate(invalid="ignore"):
            for k in range(edges):
                reach[:, k] = np.count_nonzero(matrix >= self._edge_rows[k], axis=0)
        counts = np.empty((matrix.shape[1], edges + 1), dtype=np.int64)
        if edges == 0:
            counts[:, 0] = finite_counts
            return counts
        counts[:, 0] = finite_counts - reach[:, 0]
        counts[:, 1:-1] = reach[:, :-1] - reach[:, 1:]
        counts[:, -1] = reach[:, -1]
        return counts

    def result(self, model_version: str | None = None) -> DriftResult:
        """The per-feature table and the run summary (nothing is flagged on an empty run)."""
        th = self.thresholds
        width = len(self.features)
        sample = self._reservoir.values()
        table: list[dict[str, Any]] = []
        for i, name in enumerate(self.features):
            ref = self.profile["columns"][name]
            if i in self._categories:
                row = {"signal": "data_drift", "feature": name, "type": "category",
                       **compare_categories(ref, self._category_counts[i])}
            else:
                row = {"signal": "data_drift", "feature": name, "type": "number", "pearsons_chi_squared_test": float("nan"),
                       **compare_column(ref, self._count_matrix[i, :len(self._edges[i]) + 1], sample[:, i])}
            valid = self.rows - int(self._nulls[i])
            row["null_value_rate"] = self._nulls[i] / self.rows if self.rows else float("nan")
            # Rows of the wrong type fail the batch run before it is monitored: a scored run has none.
            row["data_type_error_rate"] = 0.0 if self.rows else float("nan")
            # For a category: the share of values not seen in training (codes outside its list).
            row["out_of_bounds_rate"] = self._oob[i] / valid if valid else float("nan")
            row["production_mean"] = (self._sum[i] / valid if valid else float("nan")) if i not in self._categories else float("nan")
            row["level"] = self._level(row, width)
            table.append(row)
        score_psi = float("nan")
        score_ref = self.profile.get("score")
        if score_ref and self._score_counts is not None and self._score_counts.sum():
            row = {"signal": "prediction_drift", "feature": "score", "type": "score",
                   "pearsons_chi_squared_test": float("nan"),
                   **compare_column(score_ref, self._score_counts, self._score_reservoir.values()[:, 0])}
            row["null_value_rate"] = float("nan")
            row["data_type_error_rate"] = float("nan")
            row["out_of_bounds_rate"] = float("nan")
            row["production_mean"] = self._score_sum / self._score_rows
            row["level"] = self._level(row, 1)
            score_psi = row["population_stability_index"]
            table.append(row)
        data_rows = table[:width]
        psis = [(r["population_stability_index"], r["feature"]) for r in data_rows
                if not math.isnan(r["population_stability_index"])]
        nwds = [r["normalized_wasserstein_distance"] for r in data_rows
                if not math.isnan(r["normalized_wasserstein_distance"])]
        pvalues = [r["ks_pvalue"] for r in data_rows if not math.isnan(r["ks_pvalue"])]
        max_psi, max_feature = max(psis) if psis else (float("nan"), "")
        cells = self.rows * width
        valid_cells = cells - int(self._nulls.sum())
        alerts = sum(r["level"] == "alert" for r in data_rows)
        warns = sum(r["level"] == "warn" for r in data_rows)
        summary = {
            "drift_flag": alerts > 0,
            "drift_warn": warns + alerts > 0,
            "max_psi": max_psi,
            "max_psi_feature": max_feature,
            "max_normalized_wasserstein": max(nwds) if nwds else float("nan"),
            "drifted_features": alerts,
            "warn_features": warns,
            "null_rate": int(self._nulls.sum()) / cells if cells else float("nan"),
            "out_of_bounds_rate": int(self._oob.sum()) / valid_cells if valid_cells else float("nan"),
            "score_psi": score_psi,
            "min_ks_pvalue": min(pvalues) if pvalues else float("nan"),
        }
        return DriftResult(table, summary, th, self.rows, model_version,
                           {"score_histogram": [int(c) for c in self._score_hist]})

    def _level(self, row: dict[str, Any], tests: int) -> str:
        """alert / warn / ok for one table row (see the module docstring)."""
        th = self.thresholds
        pvalue = row["ks_pvalue"] if row.get("type") != "category" else row["pearsons_chi_squared_test"]
        if not th.significant(pvalue, tests):
            return "ok"
        psi = row["population_stability_index"]
        nwd = row["normalized_wasserstein_distance"]
        if (not math.isnan(psi) and psi >= th.psi_alert) or (not math.isnan(nwd) and nwd >= th.wasserstein):
            return "alert"
        if not math.isnan(psi) and psi >= th.psi_warn:
            return "warn"
        return "ok"


class DriftMonitor:
    """Watches one batch run: takes every scored chunk, then returns the fields for its log row.

    Duck-types the pipeline's run monitor (`on_chunk(matrix, scores)`, `log_fields(summary)`).
    On success it writes the run's per-feature table to `table_path`; on a failed run (summary
    None) it adds nothing. Monitoring never fails a run: a problem here becomes a warning.
    """

    def __init__(self, profile: dict[str, Any] | None, thresholds: Thresholds | None = None,
                 table_path: Path | None = None):
        self.accumulator = DriftAccumulator(profile, thresholds) if profile is not None else None
        self.table_path = table_path
        self.result: DriftResult | None = None
        self.problem: str | None = None if profile is not None else "the model version has no reference profile"

    def on_chunk(self, matrix: np.ndarray, scores: np.ndarray) -> None:
        if self.accumulator is None:
            return
        try:
            self.accumulator.update(matrix, scores)
        except Exception as exc:  # never let monitoring stop the scoring
            self.problem, self.accumulator = f"{type(exc).__name__}: {exc}", None
            log.warning("drift monitoring stopped for this run: %s", self.problem)

    def merge(self, partial: DriftAccumulator) -> None:
        """Add a partial accumulator computed elsewhere (a Spark partition); never fails the run."""
        if self.accumulator is None:
            return
        try:
            self.accumulator.merge(partial)
        except Exception as exc:
            self.problem, self.accumulator = f"{type(exc).__name__}: {exc}", None
            log.warning("drift monitoring stopped for this run: %s", self.problem)

    def log_fields(self, summary: Any = None) -> dict[str, str]:
        if summary is None or self.accumulator is None:
            return {}
        self.result = self.accumulator.result()
        if self.table_path is not None:
            try:
                write_drift_table(self.table_path, self.result.table)
            except OSError as exc:  # the log row still gets the summary
                log.warning("cannot write the drift table %s: %s", self.table_path, exc)
        return self.result.log_fields()


def describe_fields(fields: Mapping[str, Any]) -> str | None:
    """One line about a run's drift from its log fields, or None when it was not monitored."""
    flag = str(fields.get("drift_flag", "") or "")
    if flag == "":
        return None
    level = "alert" if flag == "true" else "warn" if str(fields.get("drift_warn")) == "true" else "ok"
    parts = [f"drift {level}:"]
    try:
        parts.append(f"max PSI {float(fields['max_psi']):.3f} ({fields.get('max_psi_feature', '')}),")
    except (KeyError, TypeError, ValueError):
        pass
    parts.append(f"{fields.get('drifted_features', '0')} features drifted, {fields.get('warn_features', '0')} at warn"
                 " (features count only beyond sampling noise),")
    try:
        parts.append(f"out-of-bounds {float(fields['out_of_bounds_rate']):.1%}, nulls {float(fields['null_rate']):.1%}")
    except (KeyError, TypeError, ValueError):
        pass
    return " ".join(parts).rstrip(",")


# ----- the drift table on disk -------------------------------------------------------------
def drift_table_path(logs_dir: Path, date_key: str, storage: str = "local") -> Path:
    """logs/drift/drift_YYYYMMDD.csv for one run date (YYYYMMDD) on local storage.

    Runs on other storage (`blob`) keep theirs apart, as drift_blob_YYYYMMDD.csv, since the
    same date can hold different data in each.
    """
    prefix = "drift" if storage == "local" else f"drift_{storage}"
    return Path(logs_dir) / "drift" / f"{prefix}_{date_key}.csv"


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def write_drift_table(path: Path, table: Iterable[dict[str, Any]]) -> Path:
    """Write the per-feature table as CSV, atomically (a reader never sees half a file)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(TABLE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: format_value(row.get(k)) for k in TABLE_COLUMNS})
    return fileio.write_atomic(path, buffer.getvalue())


def read_drift_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a drift table CSV, numbers as floats (empty cells as NaN)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if key in ("signal", "feature", "type", "level"):
                    parsed[key] = value
                else:
                    parsed[key] = float(value) if value not in ("", None) else float("nan")
            rows.append(parsed)
    return rows
