"""The reference profile: what a model version's training data looked like, for drift monitoring.

At registration, `build_profile` summarises the training features and the training scores
(per feature: 10 quantile bin edges and the share of rows in each bin, min/max for the
out-of-bounds check, the null rate, and an equal-weight quantile sample for the Wasserstein
distance); `write_profile` stores it as reference_profile.json in the version folder, and
`load_reference_profile(registry_dir, version)` is the one way to read a version's back.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import fileio
from drift_metrics import MonitoringError, bin_counts

log = logging.getLogger("monitoring")

PROFILE_FILE = "reference_profile.json"
PROFILE_SCHEMA = 1
DEFAULT_BINS = 10
# The reference sample kept per feature for the Wasserstein distance: every training value
# when there are at most this many rows (so the distance is exact), else evenly spaced quantiles.
REFERENCE_SAMPLE_MAX = 1000
# Bins of the score histogram kept for charts (on [0, 1]).
SCORE_HISTOGRAM_BINS = 20


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
                  bins: int = DEFAULT_BINS, schema: Any = None) -> dict[str, Any]:
    """The reference profile of a training matrix (rows x features, in the model's order).

    With the version's feature schema, category features (whose matrix columns hold category
    codes) also record each training category's count and share.
    """
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
    for j, feature in enumerate(schema.features if schema is not None else ()):
        profile["columns"][feature.name].update(profile_categories(matrix[:, j], feature.categories)
                                                if feature.is_category else {"type": "number"})
    return profile


def profile_categories(codes: np.ndarray, categories: Sequence[str]) -> dict[str, Any]:
    """A category feature's reference: its categories with their training counts and shares."""
    counts = category_counts(codes, len(categories))
    seen = int(counts.sum())
    return {"type": "category", "categories": list(categories), "category_counts": [int(c) for c in counts],
            "category_proportions": [float(c) / seen if seen else 0.0 for c in counts]}


def category_counts(codes: np.ndarray, size: int) -> np.ndarray:
    """Rows per category code (0..size-1); NaN (empty) and out-of-range codes are not counted."""
    codes = np.asarray(codes, dtype=np.float64)
    valid = codes[np.isfinite(codes) & (codes >= 0) & (codes < size)]
    return np.bincount(valid.astype(np.intp), minlength=size)[:size]


def write_profile(folder: Path, profile: dict[str, Any]) -> Path:
    """Write reference_profile.json into `folder` (atomically) and return its path."""
    path = Path(folder) / PROFILE_FILE
    fileio.write_atomic(path, json.dumps(profile, separators=(",", ":")) + "\n")
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
