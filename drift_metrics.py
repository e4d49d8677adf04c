"""Drift metrics and the thresholds that turn them into levels (ok / warn / alert).

Metric names are Azure ML model monitoring's: population_stability_index,
normalized_wasserstein_distance, jensen_shannon_distance, and the two-sample
Kolmogorov-Smirnov test (two_sample_kolmogorov_smirnov_test). `compare_column` gives all of
them for one column against its reference profile; monitoring.py turns a run into a table of
them. Pure functions of numbers: nothing here reads or writes files.

Levels: a feature is at `alert` when its PSI >= the alert threshold (default 0.25) or its
normalized Wasserstein distance >= its threshold (default 0.1, the Azure SDK's), and at
`warn` when its PSI >= the warn threshold (default 0.1); the run's drift flag is the alert
level. Both distances are biased upwards on small samples: on clean days of 200 rows the
largest PSI over 30 features is above 0.1 on about half of the days and the largest
normalized Wasserstein distance is above 0.1 on all of them. So a distance also has to be
statistically significant to count: the KS test against the training sample must give a
p-value below alpha / features (default alpha 0.01, Bonferroni over the features), so that
clean data raises nothing on 99% of runs whatever their size. On large runs every real shift
is significant and the rule is the plain threshold convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

import settings

# Proportions are floored at this value inside the PSI's logarithm (an empty bin would be
# infinite); a common convention.
PSI_EPSILON = 1e-4
LEVELS = ("ok", "warn", "alert")


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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: float | None) -> "Thresholds":
        """Defaults, then DRIFT_* environment variables, then non-None keyword overrides."""
        values: dict[str, float] = {}
        for name, var in cls.ENV.items():
            try:
                value = settings.env_float(var, environ=environ)
            except settings.SettingsError as exc:
                raise MonitoringError(str(exc)) from None
            if value is not None:
                values[name] = value
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


def pearsons_chi_squared_test(reference: Sequence[float], production: Sequence[float]) -> float:
    """The p-value of Pearson's chi-squared test that two category count vectors come from one
    distribution (a 2 x categories contingency table; categories neither side has are left out)."""
    from scipy.stats import chi2_contingency

    table = np.array([reference, production], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return float("nan") if (table.sum(axis=1) == 0).any() else 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def compare_categories(reference: dict[str, Any], counts: np.ndarray) -> dict[str, float]:
    """The drift metrics of one category feature: its category counts against its profile
    (PSI and Jensen-Shannon distance over the categories, Pearson's chi-squared p-value)."""
    nan = float("nan")
    ref_counts = np.asarray(reference["category_counts"], dtype=np.float64)
    has_counts = int(np.sum(counts)) > 0
    return {
        "population_stability_index": population_stability_index(ref_counts, counts) if has_counts else nan,
        "normalized_wasserstein_distance": nan,
        "jensen_shannon_distance": jensen_shannon_distance(ref_counts, counts) if has_counts else nan,
        "pearsons_chi_squared_test": pearsons_chi_squared_test(ref_counts, counts) if has_counts else nan,
        "ks_statistic": nan,
        "ks_pvalue": nan,
        "reference_mean": nan,
    }
