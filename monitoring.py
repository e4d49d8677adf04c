"""Model monitoring: the reference profile, drift metrics and a streaming drift accumulator.

The local stand-in for Azure ML model monitoring (data drift, prediction drift and data
quality signals). A helper module: it imports no stage script.

- At registration, `build_profile` summarises the training features and the training scores
  (per feature: 10 quantile bin edges and the share of rows in each bin, min/max for the
  out-of-bounds check, the null rate, and an equal-weight quantile sample for the Wasserstein
  distance); `write_profile` stores it as reference_profile.json in the version folder.
- Per batch run, `DriftAccumulator.update(matrix, scores)` takes each scored chunk and
  `result()` returns the per-feature table and the run summary that goes into the run log.
- Metric names are Azure's: population_stability_index, normalized_wasserstein_distance,
  jensen_shannon_distance; data quality: null_value_rate and out_of_bounds_rate.

Levels: a feature is at `alert` when its PSI >= the alert threshold (default 0.25) or its
normalized Wasserstein distance >= its threshold (default 0.1, the Azure SDK's), and at
`warn` when its PSI >= the warn threshold (default 0.1); the run's drift flag is the alert
level. Both distances are biased upwards on small samples: on clean days of 200 rows the
largest PSI over 30 features is above 0.1 on about half of the days and the largest
normalized Wasserstein distance is above 0.1 on all of them. So a distance also has to be
statistically significant to count: the two-sample Kolmogorov-Smirnov test
(two_sample_kolmogorov_smirnov_test) against the training sample must give a p-value below
alpha / features (default alpha 0.01, Bonferroni over the features), so that clean data
raises nothing on 99% of runs whatever their size. On large runs every real shift is
significant and the rule is the plain threshold convention.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger("monitoring")

PROFILE_FILE = "reference_profile.json"
PROFILE_SCHEMA = 1
DEFAULT_BINS = 10
# The reference sample kept per feature for the Wasserstein distance: every training value
# when there are at most this many rows (so the distance is exact), else evenly spaced quantiles.
REFERENCE_SAMPLE_MAX = 1000
# Rows kept per feature of a run for the Wasserstein distance (uniform reservoir sample):
# every row of a run of this size or less.
RESERVOIR_SIZE = 20000
# Bins of the score histogram kept for charts (on [0, 1]).
SCORE_HISTOGRAM_BINS = 20
# Proportions are floored at this value inside the PSI's logarithm (an empty bin would be
# infinite); a common convention.
PSI_EPSILON = 1e-4

LEVELS = ("ok", "warn", "alert")

# The per-feature drift table, one row per feature plus one for the score.
TABLE_COLUMNS = (
    "signal",
    "feature",
    "population_stability_index",
    "normalized_wasserstein_distance",
    "jensen_shannon_distance",
    "ks_statistic",
    "ks_pvalue",
    "null_value_rate",
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


class MonitoringError(Exception):
    """A profile or input the monitor cannot use; the message says what and why."""


# ----- thresholds ------------------------------------------------------------------------
@dataclass(frozen=True)
class Thresholds:
    """Drift levels; every field can be set by a flag or a DRIFT_* environment variable."""

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    wasserstein: float = 0.1
    alpha: float = 0.01

    ENV = {
        "psi_warn": "DRIFT_PSI_WARN",
        "psi_alert": "DRIFT_PSI_ALERT",
        "wasserstein": "DRIFT_WASSERSTEIN_THRESHOLD",
        "alpha": "DRIFT_ALPHA",
    }

    def __post_init__(self) -> None:
        if not 0 < self.psi_warn <= self.psi_alert:
            raise MonitoringError(
                f"PSI thresholds must satisfy 0 < warn <= alert, got warn {self.psi_warn} and alert {self.psi_alert}"
            )
        if not self.wasserstein > 0:
            raise MonitoringError(f"the normalized Wasserstein threshold must be above 0, got {self.wasserstein}")
        if not 0 <= self.alpha < 1:
            raise MonitoringError(f"the significance level alpha must be in [0, 1), got {self.alpha} (0 turns the test off)")

    def significant(self, pvalue: float, features: int) -> bool:
        """True when a KS p-value is below alpha / features (always, when alpha is 0)."""
        if self.alpha == 0:
            return True
        return not math.isnan(pvalue) and pvalue < self.alpha / max(features, 1)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: float | None) -> "Thresholds":
        """Defaults, then DRIFT_* environment variables, then non-None keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name, var in cls.ENV.items():
            raw = env.get(var)
            if raw not in (None, ""):
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise MonitoringError(f"{var} must be a number, got {raw!r}") from None
        values.update({k: float(v) for k, v in overrides.items() if v is not None})
        return cls(**values)


# ----- metric functions ------------------------------------------------------------------
def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts of finite values in the bins cut at `edges` (len(edges) + 1 bins, open-ended).

    A value equal to an edge goes to the bin above it.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def population_stability_index(reference: Sequence[float], production: Sequence[float],
                               epsilon: float = PSI_EPSILON) -> float:
    """PSI = sum over bins of (p - q) * ln(p / q), p production and q reference proportions.

    Takes counts or proportions (each side is normalised); proportions are floored at
    `epsilon` inside the sum so that an empty bin gives a large finite value.
    """
    q = _proportions(reference)
    p = _proportions(production)
    if q.shape != p.shape:
        raise MonitoringError(f"PSI needs the same bins on both sides, got {q.size} and {p.size}")
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    q = np.maximum(q, epsilon)
    p = np.maximum(p, epsilon)
    return float(np.sum((p - q) * np.log(p / q)))


def jensen_shannon_distance(reference: Sequence[float], production: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, so between 0 and 1) between two binned distributions."""
    from scipy.spatial.distance import jensenshannon

    q = _proportions(reference)
    p = _proportions(production)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    return float(jensenshannon(p, q, base=2))


def normalized_wasserstein_distance(reference: Sequence[float], production: Sequence[float],
                                    reference_std: float | None = None) -> float:
    """Wasserstein-1 distance between two samples divided by the reference's standard deviation.

    Azure names the metric without publishing its normalisation; dividing by the reference
    standard deviation makes it unit-free, so one threshold (0.1) fits every feature.
    """
    from scipy.stats import wasserstein_distance

    ref = np.asarray(reference, dtype=np.float64)
    prod = np.asarray(production, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    prod = prod[np.isfinite(prod)]
    if ref.size == 0 or prod.size == 0:
        return float("nan")
    scale = float(np.std(ref)) if reference_std is None else float(reference_std)
    distance = float(wasserstein_distance(ref, prod))
    if scale <= 0:  # a constant reference: any movement is infinite drift, none is zero
        return 0.0 if distance == 0 else float("inf")
    return distance / scale


def _proportions(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else array


# ----- the reference profile ---------------------------------------------------------------
def quantile_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> list[float]:
    """The inner cut points of `bins` equal-frequency bins (duplicates from ties removed)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    inner = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(inner)
    # A cut at the minimum would leave the first bin empty by construction.
    return [float(e) for e in edges if e > finite.min()]


def reference_sample(values: np.ndarray, size: int = REFERENCE_SAMPLE_MAX) -> list[float]:
    """Every finite value, sorted, when there are at most `size`; else `size` equal-weight quantiles."""
    finite = np.sort(values[np.isfinite(values)])
    if finite.size <= size:
        return [float(v) for v in finite]
    probs = (np.arange(size) + 0.5) / size
    return [float(v) for v in np.quantile(finite, probs, method="inverted_cdf")]


def profile_column(values: Sequence[float], bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """The reference summary of one feature (or of the scores)."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    nulls = int(array.size - finite.size)
    edges = quantile_edges(array, bins)
    counts = bin_counts(finite, edges)
    return {
        "count": int(array.size),
        "null_rate": nulls / array.size if array.size else 0.0,
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "bin_edges": edges,
        "bin_counts": [int(c) for c in counts],
        "bin_proportions": [float(c) / finite.size if finite.size else 0.0 for c in counts],
        "sample": reference_sample(finite),
    }


def build_profile(matrix: np.ndarray, features: Sequence[str], scores: Sequence[float] | None = None,
                  bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """The reference profile of a training matrix (rows x features, in the model's order)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise MonitoringError(f"expected a matrix with {len(features)} columns, got shape {matrix.shape}")
    if matrix.shape[0] < bins:
        raise MonitoringError(f"a reference profile needs at least {bins} rows, got {matrix.shape[0]}")
    profile: dict[str, Any] = {
        "schema": PROFILE_SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "row_count": int(matrix.shape[0]),
        "bins": int(bins),
        "features": [str(f) for f in features],
        "columns": {str(name): profile_column(matrix[:, i], bins) for i, name in enumerate(features)},
        "score": None,
    }
    if scores is not None:
        score_array = np.asarray(scores, dtype=np.float64)
        column = profile_column(score_array, bins)
        hist, hist_edges = np.histogram(score_array[np.isfinite(score_array)],
                                        bins=SCORE_HISTOGRAM_BINS, range=(0.0, 1.0))
        column["histogram"] = {"edges": [float(e) for e in hist_edges], "counts": [int(c) for c in hist]}
        profile["score"] = column
    return profile


def write_profile(folder: Path, profile: dict[str, Any]) -> Path:
    """Write reference_profile.json into `folder` (atomically) and return its path."""
    path = Path(folder) / PROFILE_FILE
    _atomic_write_text(path, json.dumps(profile, separators=(",", ":")) + "\n")
    return path


def load_profile(folder: Path) -> dict[str, Any] | None:
    """The profile stored in a version folder, or None when that version has none."""
    path = Path(folder) / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MonitoringError(f"{path} cannot be read: {exc}") from None
    if not isinstance(profile, dict) or profile.get("schema") != PROFILE_SCHEMA or "columns" not in profile:
        raise MonitoringError(f"{path} is not a reference profile (schema {PROFILE_SCHEMA})")
    return profile


def load_reference_profile(registry_dir: Path | str | None, version: str | int | None) -> dict[str, Any] | None:
    """The reference profile of a registered version, or None (with a warning saying why).

    None when the version is unknown, has no profile, or names several versions ("v001+v002",
    "-", as a report's mixed day does); a profile that cannot be read is a warning too.
    """
    from registry import Registry, RegistryError

    if version is None or (isinstance(version, str) and ("+" in version or version in ("", "-"))):
        return None
    try:
        entry = Registry(registry_dir).get(version)
        profile = load_profile(entry.path)
    except (RegistryError, MonitoringError) as exc:
        log.warning("no reference profile for model %s: %s", version, exc)
        return None
    if profile is None:
        log.warning("model %s has no %s (retrain to add one)", entry.label, PROFILE_FILE)
    return profile


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
        self.rows += matrix.shape[0]
        if scores is not None:
            ok = scores[np.isfinite(scores)]
            if self._score_counts is not None:
                self._score_counts += bin_counts(ok, self._score_edges)
            self._score_hist += np.histogram(ok, bins=SCORE_HISTOGRAM_BINS, range=(0.0, 1.0))[0]
            self._score_sum += float(ok.sum())
            self._score_rows += ok.size
            self._score_reservoir.add(ok.reshape(-1, 1))

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
            row = {"signal": "data_drift", "feature": name,
                   **compare_column(ref, self._count_matrix[i, :len(self._edges[i]) + 1], sample[:, i])}
            valid = self.rows - int(self._nulls[i])
            row["null_value_rate"] = self._nulls[i] / self.rows if self.rows else float("nan")
            row["out_of_bounds_rate"] = self._oob[i] / valid if valid else float("nan")
            row["production_mean"] = self._sum[i] / valid if valid else float("nan")
            row["level"] = self._level(row, width)
            table.append(row)
        score_psi = float("nan")
        score_ref = self.profile.get("score")
        if score_ref and self._score_counts is not None and self._score_counts.sum():
            row = {"signal": "prediction_drift", "feature": "score",
                   **compare_column(score_ref, self._score_counts, self._score_reservoir.values()[:, 0])}
            row["null_value_rate"] = float("nan")
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
        if not th.significant(row["ks_pvalue"], tests):
            return "ok"
        psi = row["population_stability_index"]
        nwd = row["normalized_wasserstein_distance"]
        if (not math.isnan(psi) and psi >= th.psi_alert) or (not math.isnan(nwd) and nwd >= th.wasserstein):
            return "alert"
        if not math.isnan(psi) and psi >= th.psi_warn:
            return "warn"
        return "ok"


def compare_column(reference: dict[str, Any], counts: np.ndarray, sample: np.ndarray) -> dict[str, float]:
    """The drift metrics of one column: binned counts and a value sample against its profile."""
    nan = float("nan")
    has_counts = int(np.sum(counts)) > 0
    values = sample[np.isfinite(sample)]
    out = {
        "population_stability_index": population_stability_index(reference["bin_counts"], counts) if has_counts else nan,
        "normalized_wasserstein_distance": nan,
        "jensen_shannon_distance": jensen_shannon_distance(reference["bin_counts"], counts) if has_counts else nan,
        "ks_statistic": nan,
        "ks_pvalue": nan,
        "reference_mean": reference["mean"],
    }
    ref_sample = np.asarray(reference["sample"], dtype=np.float64)
    if values.size and ref_sample.size:
        from scipy.stats import ks_2samp

        out["normalized_wasserstein_distance"] = normalized_wasserstein_distance(ref_sample, values, reference["std"])
        test = ks_2samp(ref_sample, values)
        out["ks_statistic"] = float(test.statistic)
        out["ks_pvalue"] = float(test.pvalue)
    return out


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path, buffer.getvalue())
    return path


def read_drift_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a drift table CSV, numbers as floats (empty cells as NaN)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if key in ("signal", "feature", "level"):
                    parsed[key] = value
                else:
                    parsed[key] = float(value) if value not in ("", None) else float("nan")
            rows.append(parsed)
    return rows


def _atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; profiles and tables are for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
