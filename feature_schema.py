"""The feature schema of a model version: which features, of which type, with which values.

A helper module (it imports no stage script). train.py infers the schema from the training
table and stores it in metadata.json as `feature_schema`, one object per feature in the
model's order:

    {"name": "purpose", "type": "category", "nullable": false, "categories": ["business", ...]}
    {"name": "age_in_years", "type": "number", "nullable": false, "min": 19.0, "max": 75.0}

Every scorer (score.py, the API, batch_score.py) and the monitoring read it back through
`Schema.from_metadata`; versions registered before the schema existed load as all-number,
non-nullable features. Inside the project a validated row is a float64 vector: a number
feature holds its value, a category feature the index of its category in the sorted
training categories, and NaN stands for an empty (null) value of a nullable feature. That
one encoding lets the batch scorer and the drift monitor keep working on plain matrices.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

NUMBER = "number"
CATEGORY = "category"
TYPES = (NUMBER, CATEGORY)
# Columns the scorers add to their output; a feature may not be named like one of them.
RESERVED_COLUMNS = ("prediction", "probability", "score", "model_version")
# An error message lists at most this many allowed categories.
MAX_LISTED = 20


class SchemaError(ValueError):
    """A schema in metadata.json that cannot be used; the message names the feature."""


def describe(value: Any) -> str:
    """A short, JSON-like description of a value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (int, float)):
        return f"number {value!r}" if len(repr(value)) <= 40 else "a number"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown, ensure_ascii=False)}"
    return type(value).__name__


@dataclass(frozen=True)
class Feature:
    """One feature of the schema."""

    name: str
    type: str = NUMBER
    nullable: bool = False
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    _codes: dict[str, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise SchemaError(f"feature {self.name!r}: type must be one of {', '.join(TYPES)}, got {self.type!r}")
        if self.type == CATEGORY:
            if not self.categories:
                raise SchemaError(f"feature {self.name!r}: a category feature needs its list of categories")
            self._codes.update((c, float(i)) for i, c in enumerate(self.categories))

    @property
    def is_category(self) -> bool:
        return self.type == CATEGORY

    def code(self, category: str) -> float | None:
        """The index of a training category (as a float), or None for an unknown one."""
        return self._codes.get(category)

    def allowed(self) -> str:
        """The allowed categories for an error message: up to MAX_LISTED, then how many more."""
        shown = ", ".join(json.dumps(c, ensure_ascii=False) for c in self.categories[:MAX_LISTED])
        more = len(self.categories) - MAX_LISTED
        return f"one of {shown}" + (f" and {more} more" if more > 0 else "")

    def encode(self, value: Any) -> float:
        """A JSON value -> its float encoding; ValueError with the reason when not allowed."""
        kind = type(value)
        if value is None:
            if self.nullable:
                return math.nan
            expected = "a category" if self.is_category else "a number"
            raise ValueError(f"expected {expected}, got null (this feature had no empty values in training)")
        if self.is_category:
            if kind is str:
                code = self._codes.get(value)
                if code is not None:
                    return code
                raise ValueError(f"unknown category {describe(value)}; expected {self.allowed()}")
            raise ValueError(f"expected a category (a string), got {describe(value)}; expected {self.allowed()}")
        if kind is not int and kind is not float:
            raise ValueError(f"expected a number, got {describe(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError("expected a finite number, got an integer too large for a float") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {describe(number)}")
        return number

    def encode_column(self, values: Sequence[Any]) -> tuple[list[float] | Any, int | None]:
        """Many values of this feature -> (their encodings, index of the first value not allowed or None).

        The same rules as `encode`, a column at a time: one pass in C for well-typed columns;
        the value-by-value path only names the culprit.
        """
        import numpy as np

        if self.is_category:
            get, nullable = self._codes.get, self.nullable
            codes = [get(v) if type(v) is str else None for v in values]
            if None in codes:
                for i, (code, value) in enumerate(zip(codes, values)):
                    if code is None and not (nullable and value is None):
                        return codes, i
                codes = [math.nan if c is None else c for c in codes]
            return codes, None
        kinds = set(map(type, values))
        if kinds <= {int, float} or (self.nullable and kinds <= {int, float, type(None)}):
            try:
                column = np.array(values, dtype=np.float64)  # None -> NaN
                finite = np.isfinite(column)
                if type(None) in kinds:
                    finite |= np.array([v is None for v in values])
                if finite.all():
                    return column, None
            except OverflowError:  # an integer too large for a float: found below
                pass
        for i, value in enumerate(values):
            try:
                self.encode(value)
            except ValueError:
                return [], i
        return [self.encode(v) for v in values], None

    def decode(self, code: float) -> Any:
        """A float encoding -> the JSON value (None for NaN, the category text, or the number)."""
        if math.isnan(code):
            return None
        return self.categories[int(code)] if self.is_category else float(code)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.is_category:
            out["categories"] = list(self.categories)
        else:
            out["min"], out["max"] = self.minimum, self.maximum
        return out

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> "Feature":
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise SchemaError(f"feature_schema entries need a name, got {item!r:.80}")
        return cls(
            name=item["name"], type=item.get("type", NUMBER), nullable=bool(item.get("nullable", False)),
            categories=tuple(str(c) for c in item.get("categories") or ()),
            minimum=item.get("min"), maximum=item.get("max"),
        )


@dataclass(frozen=True)
class Schema:
    """The ordered features of a model version."""

    features: tuple[Feature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def plain_numbers(self) -> bool:
        """Every feature a non-nullable number: the case of the numeric fast paths."""
        return all(f.type == NUMBER and not f.nullable for f in self.features)

    @property
    def categorical(self) -> list[Feature]:
        return [f for f in self.features if f.is_category]

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    def encode_record(self, record: Mapping[str, Any]) -> list[float]:
        """One record -> its float row; KeyError(name) for a missing feature, ValueError(name, reason)."""
        row = []
        for feature in self.features:
            value = record[feature.name]
            try:
                row.append(feature.encode(value))
            except ValueError as exc:
                raise ValueError(feature.name, str(exc)) from None
        return row

    def encode_frame(self, frame: Any) -> Any:
        """A DataFrame of training values (text categories, NaN for empty) -> the float matrix."""
        import numpy as np

        matrix = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, feature in enumerate(self.features):
            column = frame[feature.name]
            if feature.is_category:
                codes = {c: float(i) for i, c in enumerate(feature.categories)}
                matrix[:, j] = [math.nan if v is None or v != v else codes[str(v)] for v in column.tolist()]
            else:
                matrix[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return matrix

    def frame(self, matrix: Any) -> Any:
        """The float matrix -> the DataFrame a table model takes: floats, and text (NaN for empty)."""
        import numpy as np
        import pandas as pd

        columns = {}
        for j, feature in enumerate(self.features):
            values = np.asarray(matrix[:, j], dtype=np.float64)
            if feature.is_category:
                lookup = np.array([*feature.categories, np.nan], dtype=object)
                index = np.where(np.isnan(values), len(feature.categories), values).astype(np.intp)
                columns[feature.name] = pd.Series(lookup[index], dtype=object)
            else:
                columns[feature.name] = pd.Series(values, dtype=np.float64)
        return pd.DataFrame(columns)

    def encode_rows(self, rows: Sequence[Sequence[Any]]) -> tuple[Any, tuple[int, int, str] | None]:
        """Rows of values in feature order -> (float matrix, (row, feature index, reason) of the
        first value not allowed, earliest row then feature order; None when all are)."""
        import numpy as np

        matrix = np.empty((len(rows), len(self.features)), dtype=np.float64)
        first: tuple[int, int] | None = None
        for j, (feature, values) in enumerate(zip(self.features, zip(*rows))):
            column, bad = feature.encode_column(values)
            if bad is None:
                matrix[:, j] = column
            elif first is None or bad < first[0]:
                first = (bad, j)
        if first is None:
            return matrix, None
        i, j = first
        try:
            self.features[j].encode(rows[i][j])
        except ValueError as exc:
            return matrix, (i, j, str(exc))
        raise AssertionError("encode_column and encode disagree")  # pragma: no cover

    def decode_row(self, row: Sequence[float]) -> dict[str, Any]:
        return {f.name: f.decode(float(v)) for f, v in zip(self.features, row)}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "Schema":
        """The version's schema; versions without one are all-number, non-nullable."""
        names = [str(n) for n in metadata.get("features") or []]
        items = metadata.get("feature_schema")
        if items is None:
            return cls(tuple(Feature(n) for n in names))
        if not isinstance(items, list):
            raise SchemaError("metadata.json feature_schema must be a list of features")
        schema = cls(tuple(Feature.from_dict(i) for i in items))
        if names and schema.names != names:
            raise SchemaError("metadata.json feature_schema does not list the same features, in the same order, as features")
        return schema

    @classmethod
    def infer(cls, frame: Any, categorical: Iterable[str] = ()) -> "Schema":
        """The schema of a training DataFrame: non-numeric (or named) columns are categories."""
        import pandas as pd

        forced = set(categorical)
        features = []
        for name in frame.columns:
            column = frame[name]
            nullable = bool(column.isna().any())
            if name in forced or not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
                values = sorted({str(v) for v in column.dropna().tolist()})
                features.append(Feature(str(name), CATEGORY, nullable, tuple(values)))
            else:
                values = column.dropna().astype("float64")
                features.append(Feature(str(name), NUMBER, nullable, minimum=float(values.min()), maximum=float(values.max())))
        return cls(tuple(features))


def openapi_property(feature: Feature) -> dict[str, Any]:
    """The JSON-schema (OpenAPI 3.1) property of one feature."""
    if feature.is_category:
        prop: dict[str, Any] = {"type": "string", "enum": list(feature.categories)}
        if feature.nullable:
            prop = {"type": ["string", "null"], "enum": [*feature.categories, None]}
        return prop
    return {"type": ["number", "null"]} if feature.nullable else {"type": "number"}


# ----- CSV text (the batch scorer reads every cell as text with pyarrow) -----------------------
def encode_text(feature: Feature, column: Any) -> tuple[Any, Any]:
    """A pyarrow text column -> (float64 encoding, mask of cells the feature does not allow).

    Numbers may have spaces around them; an empty cell is NaN when the feature is nullable;
    a category must be one of the training categories exactly.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if feature.is_category:
        empty = pc.equal(column, "").to_numpy(zero_copy_only=False)
        codes = pc.index_in(column, value_set=pa.array(feature.categories, pa.string()))
        values = pc.cast(codes, pa.float64()).to_numpy(zero_copy_only=False)
    else:
        trimmed = pc.utf8_trim_whitespace(column)
        empty = pc.equal(trimmed, "").to_numpy(zero_copy_only=False)
        blanked = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
        try:
            values = pc.cast(blanked, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a bad cell somewhere: cell by cell
            values = np.array([_arrow_float(cell) for cell in blanked.to_pylist()], dtype=np.float64)
    bad = ~np.isfinite(values)
    if feature.nullable:
        bad &= ~empty
    return values, bad


def encode_columns(schema: Schema, columns: Sequence[Any]) -> tuple[Any, tuple[int, int] | None]:
    """Text columns in feature order -> (float64 matrix, (row, feature index) of the first cell
    the schema refuses, earliest row then feature order; None when every cell is allowed)."""
    import numpy as np

    matrix = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype=np.float64, order="F")
    first: tuple[int, int] | None = None
    for j, (feature, column) in enumerate(zip(schema.features, columns)):
        matrix[:, j], bad = encode_text(feature, column)
        if bad.any() and (first is None or int(bad.argmax()) < first[0]):
            first = (int(bad.argmax()), j)
    return matrix, first


def _arrow_float(text: str | None) -> float:
    """One cell as pyarrow parses it; NaN when it does not (or when empty)."""
    parsed = _arrow_parse(text)
    return math.nan if parsed is None else parsed


def _arrow_parse(text: str | None) -> float | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if text is None:
        return None
    try:
        return pc.cast(pa.array([text], pa.string()), pa.float64())[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def text_reason(feature: Feature, text: str | None) -> str:
    """Why a CSV cell is not allowed for the feature (the cell as written)."""
    if not text:
        return f"empty value, expected {feature.allowed() if feature.is_category else 'a number'}"
    shown = text if len(text) <= 40 else text[:37] + "..."
    if feature.is_category:
        return f"unknown category {shown!r}; expected {feature.allowed()}"
    expected = "a number" if _arrow_parse(text.strip()) is None else "a finite number"
    return f"expected {expected}, got {shown!r}"
