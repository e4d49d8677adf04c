"""A table model's class-1 probability straight from its fitted parameters.

A helper of score.py (it imports no stage script). A table model is train.py's pipeline for
categories and gaps: median imputation and StandardScaler for the numbers, a "missing" level
and one-hot encoding for the categories, then a binary LogisticRegression. Scoring one
record through it builds a DataFrame and runs four transformers, about 100 times the cost
of the arithmetic itself. On the schema's float encoding (category codes, NaN for empty)
the same model is: impute and scale the number columns, look each category code up in a
table of its one-hot coefficient, add, expit. `table_direct` builds that form (TableForm)
and returns it only when it agrees with the pipeline's own predict_proba to 1e-12 on probe
rows; otherwise None, and the pipeline scores as usual. `linear_direct` does the same for the
plain StandardScaler -> LogisticRegression pipeline (LinearForm). Each form also scores one
record in Python floats (`one`), bit for bit as its matrix form does.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("direct_scoring")

def table_direct(model: Any, schema: Any, missing_level: str = "(missing)") -> "TableForm | None":
    """The direct form of a table model, or None when the model is not of that form."""
    try:
        return _build(model, schema, missing_level)
    except Exception:  # any surprise: fall back to the pipeline itself
        log.debug("direct scoring unavailable; using the pipeline's predict_proba", exc_info=True)
        return None


def _build(model: Any, schema: Any, missing_level: str) -> "TableForm | None":
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or [name for name, _ in model.steps] != ["prepare", "classifier"]:
        return None
    prepare, classifier = model.named_steps["prepare"], model.named_steps["classifier"]
    if type(classifier) is not LogisticRegression or len(classifier.classes_) != 2:
        return None
    coef = np.asarray(classifier.coef_, dtype=np.float64).reshape(-1)
    blocks = {name: (step, columns) for name, step, columns in prepare.transformers_ if name in ("number", "category")}
    slices = prepare.output_indices_
    if set(slices) - {"number", "category", "remainder"} or slices["remainder"].stop != slices["remainder"].start:
        return None
    index = {name: j for j, name in enumerate(schema.names)}
    numbers = _number_part(blocks.get("number"), slices.get("number"), coef, index)
    tables = _category_tables(blocks.get("category"), slices.get("category"), coef, index, schema, missing_level)
    if numbers is None or tables is None:
        return None
    form = TableForm(float(classifier.intercept_[0]), *numbers, tables)
    probe = _probe(schema, np.random.default_rng(0), 64)
    return _checked(form, probe, model.predict_proba(schema.frame(probe))[:, 1])


def _checked(form: Any, probe: np.ndarray, expected: np.ndarray) -> Any:
    """The form when it agrees with the pipeline's probabilities on the probe rows to 1e-12, else
    None; its one-row path is dropped unless it gives the matrix form's exact bits there."""
    matrix = form(probe)
    if not np.allclose(matrix, expected, rtol=0.0, atol=1e-12):
        return None
    if [form.one(row) for row in probe.tolist()] != matrix.tolist():  # never expected: then no one-row path
        form.one = None
    return form


class TableForm:
    """A table model's class-1 probability from its parameters: `form(matrix)` for a matrix in the
    schema's float encoding, `form.one(values)` for one encoded row in Python floats (no numpy: most
    of a one-record answer otherwise). The same operations in the same order, so the same bits."""

    def __init__(self, intercept: float, num_cols: np.ndarray, median: np.ndarray, mean: np.ndarray,
                 scale: np.ndarray, num_coef: np.ndarray, tables: list[tuple[int, np.ndarray]]):
        self.intercept, self.num_cols, self.median, self.mean, self.scale = intercept, num_cols, median, mean, scale
        self.num_coef, self.tables = num_coef, tables
        self._numbers = list(zip(num_cols.tolist(), median.tolist(), mean.tolist(), scale.tolist(),
                                 [float(c) for c in num_coef]))
        self._levels = [(j, table.tolist()) for j, table in tables]
        from scipy.special import expit

        self._expit = expit

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf/NaN: the caller checks
            logit = np.full(matrix.shape[0], self.intercept)
            if self.num_cols.size:
                x = matrix[:, self.num_cols]
                x = np.where(np.isnan(x), self.median, x)
                logit = fixed_order_logit(self.intercept, (x - self.mean) / self.scale, self.num_coef)
            for j, table in self.tables:
                codes = matrix[:, j]
                logit += table[np.where(np.isnan(codes), len(table) - 1, codes).astype(np.intp)]
            return self._expit(logit)

    def one(self, values: Sequence[float]) -> float | None:
        """The probability for one encoded row (category codes, NaN for empty), or None when the
        sum is not finite (the matrix path then answers)."""
        total = self.intercept
        for col, median, mean, scale, coef in self._numbers:
            x = values[col]
            if x != x:  # NaN: an empty value takes the training median
                x = median
            total += ((x - mean) / scale) * coef
        for j, table in self._levels:
            code = values[j]
            total += table[len(table) - 1 if code != code else int(code)]
        return _expit_one(total)


def _expit_one(total: float) -> float | None:
    """scipy's expit, 1 / (1 + exp(-z)), for one Python float; None when z is not finite."""
    if not math.isfinite(total):
        return None
    try:
        return 1.0 / (1.0 + math.exp(-total))
    except OverflowError:  # exp(-total) beyond the largest float: scipy's expit gives 0.0
        return 0.0


class LinearForm:
    """StandardScaler -> binary LogisticRegression's class-1 probability from its parameters:
    `form(matrix)` for a validated float64 matrix, `form.one(values)` for one row of numbers in
    Python floats. Both do scikit-learn's arithmetic (centre, scale, the fixed-order dot with
    coef_, add intercept_, expit = 1 / (1 + exp(-z))), each step rounded as IEEE does, so a row
    gets the same bits either way; one() skips numpy's per-call cost (most of a one-record answer).
    """

    def __init__(self, mean: np.ndarray | None, scale: np.ndarray | None, coef: np.ndarray, intercept: float):
        self.mean, self.scale, self.intercept = mean, scale, float(intercept)
        self.coef = [float(c) for c in coef]
        width = len(self.coef)
        # Without a mean or a scale, x - 0.0 and x / 1.0 are x exactly (IEEE), so one() needs no flags.
        self._terms = list(zip([0.0] * width if mean is None else [float(m) for m in mean],
                               [1.0] * width if scale is None else [float(s) for s in scale], self.coef))
        from scipy.special import expit

        self._expit = expit

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        expit = self._expit
        with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf/NaN: the caller checks
            x = matrix - self.mean if self.mean is not None else matrix.copy()
            if self.scale is not None:
                x /= self.scale
            return expit(fixed_order_logit(self.intercept, x, self.coef))

    def one(self, values: Sequence[int | float]) -> float | None:
        """The probability for one row of numbers (ints or floats), or None when the sum is not
        finite (an infinite, NaN or overflowing input: the matrix path then answers or says why)."""
        total = self.intercept
        try:
            for value, (mean, scale, coef) in zip(values, self._terms):
                total += ((float(value) - mean) / scale) * coef
        except OverflowError:  # an integer too large for a float
            return None
        return _expit_one(total)


def linear_direct(model: Any, width: int) -> LinearForm | None:
    """The direct form of a StandardScaler -> binary LogisticRegression pipeline, or None.

    The pipeline's predict_proba spends ~0.2 ms per call re-validating its input, which
    dominates single-record online scoring. The form is used only when it agrees with
    predict_proba to 1e-12 on probe rows.
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        if not isinstance(model, Pipeline) or len(model.steps) != 2:
            return None
        scaler, classifier = model.steps[0][1], model.steps[1][1]
        if type(scaler) is not StandardScaler or type(classifier) is not LogisticRegression:
            return None
        if len(classifier.classes_) != 2 or classifier.coef_.shape != (1, width):
            return None
        form = LinearForm(scaler.mean_ if scaler.with_mean else None, scaler.scale_ if scaler.with_std else None,
                          classifier.coef_[0], classifier.intercept_[0])
        center = form.mean if form.mean is not None else np.zeros(width)
        spread = form.scale if form.scale is not None else np.ones(width)
        probe = center + spread * np.random.default_rng(0).normal(0.0, 3.0, size=(64, width))
        return _checked(form, probe, model.predict_proba(probe)[:, 1])
    except Exception:  # any surprise: fall back to the pipeline itself
        log.debug("direct scoring unavailable; using the pipeline's predict_proba", exc_info=True)
        return None


def fixed_order_logit(intercept: float, x: np.ndarray, coef) -> np.ndarray:
    """intercept + x @ coef, term by term in a fixed order.

    A BLAS product's last bits depend on where a row sits in its batch; this sum's do not, so a
    row scores the same bits in any batch and the streaming and Spark engines write the same
    file. Python floats for a few rows (the online path, faster there), numpy columns otherwise:
    both round each product and each sum as IEEE does, in the same order.
    """
    coef = [float(c) for c in coef]
    if x.shape[0] <= 4:
        return np.array([_dot(float(intercept), row, coef) for row in x.tolist()], dtype=np.float64)
    logit = np.full(x.shape[0], float(intercept))
    for j, c in enumerate(coef):
        logit += x[:, j] * c
    return logit


def _dot(total: float, values: list[float], coef: list[float]) -> float:
    for value, c in zip(values, coef):
        total += value * c
    return total


def _number_part(block, out: slice | None, coef: np.ndarray, index: dict[str, int]):
    """(matrix columns, medians, means, scales, coefficients) of the number block."""
    if block is None or out is None or out.stop == out.start:
        empty = np.empty(0)
        return np.empty(0, dtype=np.intp), empty, empty, empty, empty
    pipe, columns = block
    imputer, scaler = pipe.named_steps["impute"], pipe.named_steps["scale"]
    mean = scaler.mean_ if scaler.with_mean else np.zeros(len(columns))
    scale = scaler.scale_ if scaler.with_std else np.ones(len(columns))
    cols = np.array([index[c] for c in columns], dtype=np.intp)
    return cols, np.asarray(imputer.statistics_, dtype=np.float64), mean, scale, coef[out]


def _category_tables(block, out: slice | None, coef: np.ndarray, index: dict[str, int], schema: Any,
                     missing_level: str) -> list[tuple[int, np.ndarray]] | None:
    """Per category feature: (matrix column, its coefficient for code 0..K-1 and then for empty)."""
    if block is None or out is None or out.stop == out.start:
        return []
    pipe, columns = block
    encoder = pipe.named_steps["onehot"]
    if encoder.drop_idx_ is not None:
        return None
    features = {f.name: f for f in schema.features}
    tables, position = [], out.start
    for name, fitted in zip(columns, encoder.categories_):
        weights = dict(zip((str(c) for c in fitted), coef[position:position + len(fitted)]))
        position += len(fitted)
        levels = [*features[name].categories, missing_level]
        tables.append((index[name], np.array([weights.get(level, 0.0) for level in levels], dtype=np.float64)))
    return tables if position == out.stop else None


def _probe(schema: Any, rng: np.random.Generator, rows: int) -> np.ndarray:
    """Rows over every category (and empty, where allowed) and numbers around their range."""
    probe = np.empty((rows, len(schema.features)), dtype=np.float64)
    for j, feature in enumerate(schema.features):
        if feature.is_category:
            probe[:, j] = rng.integers(0, len(feature.categories), rows)
        else:
            low, high = feature.minimum or 0.0, feature.maximum or 1.0
            probe[:, j] = rng.uniform(low - 1, high + 1, rows)
        if feature.nullable:
            probe[rng.random(rows) < 0.2, j] = np.nan
    return probe
