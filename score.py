"""The core scorer: load a registered version, validate records, predict.

Reads a model version from the local registry (the latest by default) or, under Azure ML,
from $AZUREML_MODEL_DIR. Writes nothing.

    python score.py --sample 3                 # score 3 rows of the training data
    python score.py --input records.json       # a list of records or {"records": [...]}

The same file is an Azure ML online scoring script: `init()` loads the model once and
`run(raw_data)` takes the request body as a string and returns a JSON-serialisable dict.
"""

# No `from __future__ import annotations` here: Azure ML's inference server executes this
# file without registering it in sys.modules, and dataclasses resolves string annotations
# through sys.modules, so the deferred form fails to import there
# (tests/test_azureml_server.py runs the real server).
import argparse
import json
import logging
import itertools
import math
import operator
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

import cli
import settings
from direct_scoring import linear_direct, table_direct
from feature_schema import Schema, SchemaError
from registry import METADATA_FILE, MODEL_FILE, Registry, RegistryError, load_verified_model

log = logging.getLogger("score")

_NUMBER_TYPES = (int, float)
_NUMBER_SET = frozenset(_NUMBER_TYPES)


class ScoringError(ValueError):
    """A request or record the scorer cannot accept; the message says which and why."""


class RecordError(ScoringError):
    """One record is invalid: names the record's index and the feature."""

    def __init__(self, index: int, feature: str | None, reason: str):
        self.index = index
        self.feature = feature
        self.reason = reason
        where = f"record {index}" + (f", feature {feature!r}" if feature is not None else "")
        super().__init__(f"{where}: {reason}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown)}"
    return type(value).__name__


@dataclass
class ModelService:
    """A loaded model with its version and ordered feature list, ready to score."""

    model: Any
    version: str
    features: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # Class-1 probability computed straight from the fitted parameters (direct_scoring.py);
    # None when the model is not of a form it covers, and then the pipeline scores as usual.
    _direct: Any = field(default=None, init=False, repr=False, compare=False)
    # The version's feature schema (all plain numbers for versions registered before it existed).
    schema: Schema = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        try:
            self.schema = Schema.from_metadata({"features": self.features, **self.metadata})
        except SchemaError as exc:
            raise RegistryError(f"{self.version}: {exc}") from None
        self._plain = self.schema.plain_numbers  # read on every request: computed once
        # A table model (fitted on a DataFrame: categories, gaps) takes the decoded frame.
        self._takes_frame = hasattr(self.model, "feature_names_in_")
        self._direct = (table_direct(self.model, self.schema) if self._takes_frame
                        else linear_direct(self.model, len(self.features)))
        self._pick = (operator.itemgetter(*self.features) if len(self.features) > 1
                      else (lambda r, name=self.features[0]: (r[name],)))
        # One record is scored in Python floats (direct_scoring's forms, .one): the same bits as the
        # matrix path, a fraction of its time for a single record.
        self._one = getattr(self._direct, "one", None)
        if not self._takes_frame and not self._plain:
            self._one = None  # a linear form takes plain numbers only
        self._encoders = [feature.encode for feature in self.schema.features]
        if self._one is not None:
            try:
                self._classes = [int(c) for c in np.asarray(self.model.classes_).astype(np.int64).tolist()]
            except (TypeError, ValueError):
                self._one = None

    @property
    def positive_class(self) -> Any:
        """The target value whose probability is the score (1 for versions that do not say)."""
        return self.metadata.get("positive_class", 1)

    # ----- loading -------------------------------------------------------------------
    @classmethod
    def from_registry(cls, registry_dir: Path | str | None = None, version: str | int | None = "latest") -> "ModelService":
        model, entry = Registry(registry_dir).load(version)
        return cls._build(model, entry.label, entry.metadata, entry.metrics)

    @classmethod
    def from_model_dir(cls, model_dir: Path | str) -> "ModelService":
        """Load from a folder laid out as Azure ML mounts a registered model.

        AZUREML_MODEL_DIR holds the registered folder under its own name
        ($AZUREML_MODEL_DIR/model_v002/model.joblib); a folder holding model.joblib itself
        works too.
        """
        base = Path(model_dir)
        candidates = [base] + sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        for folder in candidates:
            if (folder / MODEL_FILE).is_file() and (folder / METADATA_FILE).is_file():
                metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
                metrics_path = folder / "metrics.json"
                metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
                label = f"v{int(metadata.get('version', 0)):03d}"
                model = load_verified_model(folder, metadata, label)
                return cls._build(model, label, metadata, metrics)
        raise RegistryError(f"no {MODEL_FILE} with {METADATA_FILE} found in {base}")

    @classmethod
    def _build(cls, model: Any, label: str, metadata: dict, metrics: dict) -> "ModelService":
        features = metadata.get("features")
        if not isinstance(features, list) or not features:
            raise RegistryError(f"{label}: metadata.json has no feature list")
        return cls(model, label, [str(f) for f in features], metadata, metrics)

    # ----- validation ----------------------------------------------------------------
    def to_matrix(self, records: Sequence[Any]) -> np.ndarray:
        """Records (mappings of feature name to value) -> float64 matrix in feature order.

        Category features become their category's index and a null in a nullable feature NaN
        (the schema's encoding); the plain-number path below serves versions without either.
        """
        if not self._plain:
            return self._schema_matrix(records)
        features = self.features
        # itemgetter (self._pick) and the set test run in C: the per-value Python loop below only
        # runs to name the culprit once a record is known to be bad.
        pick = self._pick
        numbers = _NUMBER_SET
        rows = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise RecordError(index, None, f"expected a JSON object, got {type(record).__name__}")
            try:
                row = pick(record)
            except KeyError:
                missing = next(name for name in features if name not in record)
                raise RecordError(index, missing, "missing feature") from None
            if not numbers.issuperset(map(type, row)):
                for name, value in zip(features, row):
                    if type(value) not in _NUMBER_TYPES:
                        raise RecordError(index, name, f"expected a number, got {_describe(value)}")
            rows.append(row)
        if not rows:
            return np.empty((0, len(features)), dtype=np.float64)
        try:  # one flat pass in C; the general path below names an oversized integer
            flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=len(rows) * len(features))
            return self._finite(flat.reshape(len(rows), len(features)))
        except OverflowError:
            return self._finite(self._array(rows))

    def _schema_matrix(self, records: Sequence[Any]) -> np.ndarray:
        """The general path: every value checked against its feature in the schema, a column at a time."""
        features, pick = self.features, self._pick
        rows, problem = [], None
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                problem = RecordError(index, None, f"expected a JSON object, got {type(record).__name__}")
                break
            try:
                rows.append(pick(record))
            except KeyError:
                problem = RecordError(index, next(n for n in features if n not in record), "missing feature")
                break
        # The earliest bad record wins: values of the records before a malformed one come first.
        matrix, bad = self.schema.encode_rows(rows)
        if bad is not None:
            raise RecordError(bad[0], features[bad[1]], bad[2])
        if problem is not None:
            raise problem
        return matrix

    def rows_to_matrix(self, rows: Sequence[Any]) -> np.ndarray:
        """Lists of values in the model's feature order -> float64 matrix."""
        width = len(self.features)
        for index, row in enumerate(rows):
            if not isinstance(row, (list, tuple)):
                raise RecordError(index, None, f"expected a list of {width} values, got {type(row).__name__}")
            if len(row) != width:
                raise RecordError(index, None, f"expected {width} values in feature order, got {len(row)}")
        if not self._plain:
            return self._schema_matrix([dict(zip(self.features, row)) for row in rows])
        for index, row in enumerate(rows):
            for name, value in zip(self.features, row):
                if type(value) not in _NUMBER_TYPES:
                    raise RecordError(index, name, f"expected a number, got {_describe(value)}")
        return self._finite(self._array(rows))

    def _array(self, rows: list) -> np.ndarray:
        try:
            return np.array(rows, dtype=np.float64).reshape(len(rows), len(self.features))
        except OverflowError:  # an integer too large for a float64
            for index, row in enumerate(rows):
                for name, value in zip(self.features, row):
                    if isinstance(value, int) and abs(value) > 1e308:
                        raise RecordError(index, name, "expected a finite number, got an integer too large for a float") from None
            raise

    def _finite(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.size and not np.isfinite(matrix).all():
            row, col = map(int, np.argwhere(~np.isfinite(matrix))[0])
            raise RecordError(row, self.features[col], f"expected a finite number, got {_describe(float(matrix[row, col]))}")
        return matrix

    # ----- scoring -------------------------------------------------------------------
    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of class 1 for each row of a validated matrix."""
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return self._class_proba(matrix)[:, 1]

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prediction 0/1, probability of class 1); the prediction is the pipeline's own."""
        if matrix.shape[0] == 0:
            empty = np.empty(0, dtype=np.float64)
            return empty.astype(np.int64), empty
        classes = np.asarray(self.model.classes_)
        if self._direct is not None:
            positive = self._checked(self._direct(matrix))
            # argmax over [1 - p, p], without building that matrix: class 1 only when p > 1 - p
            return classes[(positive > 1 - positive).astype(np.intp)].astype(np.int64), positive
        proba = self._class_proba(matrix)
        return classes[proba.argmax(axis=1)].astype(np.int64), proba[:, 1]

    def _class_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Both classes' probabilities; a RecordError for the first row the model cannot score.

        Finite inputs can still overflow inside the model (1e306 divided by a small scale is
        infinite): the pipeline then raises and the direct path gives NaN. Either way that row
        is the caller's error, not the server's.
        """
        if self._direct is not None:
            positive = self._checked(self._direct(matrix))
            return np.stack([1 - positive, positive], axis=1)
        try:
            proba = self.model.predict_proba(self._model_input(matrix))
        except ValueError:
            proba = np.vstack([self._row_proba(row) for row in matrix])
        self._checked(proba)
        return proba

    def _model_input(self, matrix: np.ndarray) -> Any:
        """What the fitted model takes: the matrix, or for a table model the decoded DataFrame."""
        return self.schema.frame(matrix) if self._takes_frame else matrix

    @staticmethod
    def _checked(proba: np.ndarray) -> np.ndarray:
        """proba itself, or a RecordError naming the first row whose probability is not finite."""
        finite = np.isfinite(proba)
        if not finite.all():
            bad = ~(finite if finite.ndim == 1 else finite.all(axis=1))
            raise RecordError(int(bad.argmax()), None,
                              "values too large for the model to score (its arithmetic overflows); "
                              "send values in the range of the training data")
        return proba

    def _row_proba(self, row: np.ndarray) -> np.ndarray:
        try:
            return self.model.predict_proba(self._model_input(row.reshape(1, -1)))
        except ValueError:
            return np.full((1, len(self.model.classes_)), np.nan)

    def score_records(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        """[{input, prediction, probability}] for each record (or value list in feature order), in order."""
        inputs, predictions, probabilities = self.predict_records(records)
        return [
            {"input": record, "prediction": p, "probability": q}
            for record, p, q in zip(inputs, predictions, probabilities)
        ]

    def records_matrix(self, records: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
        """(matrix, inputs) for a list of records, or of value lists in feature order (Azure's "data")."""
        if records and all(isinstance(r, (list, tuple)) for r in records):
            return self.rows_to_matrix(records), [dict(zip(self.features, row)) for row in records]
        return self.to_matrix(records), list(records)

    def predict_records(self, records: Sequence[Any]) -> tuple[list[Any], list[int], list[float]]:
        """(inputs, predictions, probabilities of class 1) as Python lists, for records or value
        lists in feature order; a RecordError for the first bad one."""
        if self._one is not None and len(records) == 1:
            scored = self._score_one(records[0])
            if scored is not None:
                return list(records), [scored[0]], [scored[1]]
        matrix, inputs = self.records_matrix(records)
        predictions, probabilities = self.predict(matrix)
        return inputs, predictions.tolist(), probabilities.tolist()

    def _score_one(self, record: Any) -> tuple[int, float] | None:
        """(prediction, probability) of one record, or None for anything the matrix path must see
        (it then gives the same answer, or names what is wrong)."""
        if type(record) is not dict:
            return None
        try:
            row = self._pick(record)
        except KeyError:
            return None
        if not self._takes_frame:  # the linear form: plain numbers as sent
            if not _NUMBER_SET.issuperset(map(type, row)):
                return None
        else:  # a table form: the schema's encoding (category codes, NaN for an empty value)
            try:
                row = [encode(value) for encode, value in zip(self._encoders, row)]
            except ValueError:
                return None
        probability = self._one(row)
        if probability is None:
            return None
        return self._classes[1 if probability > 1 - probability else 0], probability

    def score_payload(self, payload: Any) -> dict[str, Any]:
        """Score a parsed request body: {"records": [...]} or Azure's {"data": [...]}."""
        return {"results": self.score_records(extract_records(payload)), "model_version": self.version}


def extract_records(payload: Any) -> list[Any]:
    """The list of records in a request body, or a ScoringError saying what is wrong."""
    if isinstance(payload, list):
        records = payload
    elif isinstance(payload, dict):
        key = "records" if "records" in payload else "data" if "data" in payload else None
        if key is None:
            raise ScoringError('request body must have "records" (or Azure\'s "data"): a list of records')
        records = payload[key]
        if not isinstance(records, list):
            raise ScoringError(f'"{key}" must be a list of records, got {type(records).__name__}')
    else:
        raise ScoringError(f"request body must be a JSON object, got {type(payload).__name__}")
    if not records:
        raise ScoringError("no records to score: the list is empty")
    return records


# ----- Azure ML online scoring contract -------------------------------------------------
_service: ModelService | None = None


def load_service() -> ModelService:
    """The model an Azure ML init() loads: $AZUREML_MODEL_DIR when set, else the local registry's
    $MODEL_VERSION (latest by default)."""
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if model_dir:
        return ModelService.from_model_dir(model_dir)
    return ModelService.from_registry(settings.registry_dir(), os.environ.get("MODEL_VERSION", "latest"))


def init() -> None:
    """Called once by the server: load from $AZUREML_MODEL_DIR, else the latest local version."""
    global _service
    _service = load_service()
    log.info("score.init loaded model %s", _service.version)


def run(raw_data: str | bytes) -> dict[str, Any]:
    """Score one request body (a JSON string); returns a dict, never a JSON string.

    A bad request raises ScoringError, except under Azure ML's inference server, where it
    is answered 400 {"message": ...}: the server turns any exception from run() into a 500
    whose message hides what was wrong.
    """
    if _service is None:
        init()
    assert _service is not None
    try:
        try:
            payload = json.loads(raw_data)
        except (TypeError, ValueError) as exc:
            raise ScoringError(f"request body is not valid JSON: {exc}") from None
        return _service.score_payload(payload)
    except ScoringError as exc:
        response = _inference_server_error(400, str(exc))
        if response is None:
            raise
        log.warning("score.run rejected a request: %s", exc)
        return response


def _inference_server_error(status: int, message: str) -> Any:
    """An HTTP error answer when running under azureml-inference-server-http, else None."""
    if "azureml_inference_server_http" not in sys.modules:
        return None
    from azureml_inference_server_http.api.aml_response import AMLResponse

    return AMLResponse({"message": message}, status, json_str=True)


# ----- CLI ---------------------------------------------------------------------------
def sample_records(n: int, data_path: Path | None = None, features: Iterable[str] | None = None,
                   schema: Schema | None = None) -> list[dict[str, Any]]:
    """The first n rows of the training data as records (features only); scikit-learn's when `data_path` is missing.

    With a schema, category values are text and empty cells null, as the scorer takes them.
    """
    import training_data

    categorical = [f.name for f in schema.categorical] if schema is not None else []
    frame = training_data.load_table(data_path, nrows=n, missing_ok=True, categorical=categorical)
    columns = list(features) if features is not None else [c for c in frame.columns if c != settings.TARGET]
    if schema is not None and not schema.plain_numbers:
        return [schema.decode_row(row) for row in schema.encode_frame(frame[schema.names])]
    return [{c: float(v) for c, v in zip(columns, row)} for row in frame[columns].itertuples(index=False)]


def training_data_path(service: "ModelService") -> Path | None:
    """The version's own training file when it was trained on one that is still there."""
    source = service.metadata.get("data_source")
    return Path(source) if source and Path(source).is_file() else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score records with a registered model version and print the results as JSON.",
        formatter_class=settings.HelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, help='JSON file: a list of records or {"records": [...]}')
    source.add_argument("--sample", type=int, default=None, metavar="N",
                        help="score the first N rows of the training data (default when no --input: 3)")
    cli.add_registry_options(parser)
    parser.add_argument("--format", choices=("json", "table"), default="json",
                        help="json: the endpoint's answer in full; table: one line per record")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging()
    try:
        service = ModelService.from_registry(args.registry_dir, args.model_version)
        if args.input is not None:
            try:
                payload = json.loads(args.input.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ScoringError(f"cannot read {args.input}: {exc.strerror}") from None
            except ValueError as exc:
                raise ScoringError(f"{args.input} is not valid JSON: {exc}") from None
        else:
            n = args.sample if args.sample is not None else 3
            if n < 1:
                raise ScoringError("--sample must be at least 1")
            payload = {"records": sample_records(n, training_data_path(service), service.features, service.schema)}
        result = service.score_payload(payload)
    except (RegistryError, ScoringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.format == "json" else format_table(result))
    return 0


def format_table(result: dict[str, Any]) -> str:
    """One line per scored record: index, prediction, probability of class 1."""
    rows = [{"record": i, "prediction": r["prediction"], "probability": r["probability"]}
            for i, r in enumerate(result["results"])]
    table = cli.format_table(rows, (("record", "record", ""), ("prediction", "prediction", ""),
                                    ("probability", "probability", ".6f")))
    return f"model {result['model_version']}: {len(result['results'])} record(s)\n{table}"


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
