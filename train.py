"""Train the risk classifier, track the run in MLflow and register a new model version.

Reads day1_breast_cancer.csv when present (else scikit-learn's copy of the data), or any
CSV with a binary target (--data, --target). Writes artifacts/model.joblib and
artifacts/metrics.json, one MLflow run (mlflow.db by default, $MLFLOW_TRACKING_URI to log
elsewhere, such as an Azure ML workspace), and a new immutable version
local_registry/model_vNNN/ holding model.joblib, metrics.json, metadata.json and
reference_profile.json (the training data's profile that drift monitoring compares with).

Azure ML counterpart: a command job that logs to the workspace and registers a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cli
import fileio
import monitoring
import settings
import training_data
from feature_schema import RESERVED_COLUMNS, Schema
from registry import METRICS_FILE, MODEL_FILE, ModelVersion, Registry, RegistryError

log = logging.getLogger("train")

DEFAULT_MLFLOW_ALIAS = "champion"
# The level a category's empty cells are imputed to, so that "missing" is a category of its own.
MISSING_LEVEL = "(missing)"
LOGGED_METRICS = ("accuracy", "roc_auc", "gini", "ks", "brier", "average_precision")


class TrainingError(Exception):
    """An expected training failure (bad data, bad arguments), with a user-facing message."""


@dataclass
class Dataset:
    frame: Any  # pandas.DataFrame of features, in training order (categories as text)
    target: Any  # pandas.Series of 0/1 (1: the positive class)
    source: str
    sha256: str
    schema: Schema
    target_name: str = settings.TARGET
    positive_class: Any = 1
    classes: list = field(default_factory=lambda: [0, 1])  # [negative, positive] as in the data

    @property
    def matrix(self):
        """The features as the project's float encoding (category codes, NaN for empty)."""
        return self.schema.encode_frame(self.frame)


@dataclass
class TrainResult:
    version: ModelVersion
    metrics: dict[str, Any]
    report: str
    run_id: str | None


def load_dataset(data: Path | None, target: str, positive_class: str | None = None,
                 categorical: Sequence[str] = ()) -> Dataset:
    """The training table (training_data.load_table), checked: usable features, a binary target."""
    try:
        frame = training_data.load_table(data, categorical=categorical)
    except training_data.TrainingDataError as exc:
        raise TrainingError(str(exc)) from None
    source = frame.attrs["source"]
    if target not in frame.columns:
        raise TrainingError(f"target column {target!r} not found in {source} (columns: {', '.join(map(str, frame.columns[:8]))}...)")
    unknown = [c for c in categorical if c not in frame.columns or c == target]
    if unknown:
        raise TrainingError(f"--categorical names column(s) that are not features of {source}: {', '.join(unknown)}")
    features = frame.drop(columns=[target])
    check_features(features, source, categorical)
    labels, positive, classes = binary_target(frame[target], target, positive_class)
    return Dataset(features, labels, source, training_data.table_sha256(frame), Schema.infer(features, categorical),
                   target, positive, classes)


def check_features(features, source: str, categorical: Sequence[str] = ()) -> None:
    """Errors for unusable feature columns, warnings for suspicious ones; each names the column."""
    import pandas as pd

    try:
        training_data.check_stray_text(features, source, categorical)
    except training_data.TrainingDataError as exc:
        raise TrainingError(str(exc)) from None
    reserved = [c for c in features.columns if str(c) in RESERVED_COLUMNS]
    if reserved:
        raise TrainingError(f"feature column(s) {', '.join(map(repr, reserved))} in {source} are named like an output "
                            f"column of the scorers ({', '.join(RESERVED_COLUMNS)}); rename or drop them")
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    if empty:
        raise TrainingError(f"feature column(s) {', '.join(map(repr, empty))} in {source} are empty throughout; drop them")
    rows = len(features)
    for name in features.columns:
        column = features[name]
        if rows < 20 or column.nunique(dropna=False) < rows:
            continue
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if not numeric:
            raise TrainingError(f"feature column {name!r} in {source} looks like an ID (a distinct value in each of "
                                f"its {rows} rows), so every new record would be an unknown category; drop it")
        if (column.dropna() % 1 == 0).all():
            log.warning("feature column %r in %s looks like an ID (a distinct whole number in each of its %d rows); "
                        "drop it unless it carries information", name, source, rows)


def binary_target(labels, target: str, positive_class: str | None):
    """(0/1 labels, the positive class and [negative, positive] as in the data) or a TrainingError."""
    empty = int(labels.isna().sum())
    if empty:
        first = int(labels.isna().to_numpy().argmax()) + 1
        raise TrainingError(f"target {target!r} has {empty} empty cell(s) (first at data row {first}); fill or drop those rows")
    values = sorted(labels.unique().tolist(), key=str)
    shown = ", ".join(repr(v) for v in values[:20]) + (f" and {len(values) - 20} more" if len(values) > 20 else "")
    if len(values) != 2:
        raise TrainingError(f"target {target!r} must have exactly two values; found {len(values)}: {shown}")
    if positive_class is None:
        if set(values) != {0, 1}:
            raise TrainingError(f"target {target!r} has values {shown}: give --positive-class with the one "
                                "whose probability is the score")
        positive = 1
    else:
        matches = [v for v in values if str(v) == positive_class]
        if not matches:
            raise TrainingError(f"--positive-class {positive_class!r} is not a value of target {target!r}; its values: {shown}")
        positive = matches[0]
    negative = next(v for v in values if v != positive)
    return (labels == positive).astype(int), _plain(positive), [_plain(negative), _plain(positive)]


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON-friendly Python value."""
    return value.item() if hasattr(value, "item") else value


def build_model(schema: Schema):
    """StandardScaler -> LogisticRegression for plain numbers (fitted on arrays); otherwise
    median imputation and scaling for numbers, a "missing" level and one-hot encoding for
    categories, then the same LogisticRegression (fitted on a DataFrame)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = LogisticRegression(max_iter=1000)
    if schema.plain_numbers:
        return Pipeline([("scaler", StandardScaler()), ("classifier", classifier)])
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    numbers = [f.name for f in schema.features if not f.is_category]
    categories = [f.name for f in schema.categorical]
    prepare = ColumnTransformer([
        ("number", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numbers),
        ("category", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=MISSING_LEVEL)),
                               ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categories),
    ])
    return Pipeline([("prepare", prepare), ("classifier", classifier)])


def model_input(schema: Schema, matrix):
    """What the fitted model takes: the float matrix itself, or the decoded DataFrame."""
    return matrix if schema.plain_numbers else schema.frame(matrix)


def fit_and_evaluate(ds: Dataset, test_size: float, random_state: int):
    """Stratified split, the pipeline of build_model, and the test metrics."""
    from sklearn.metrics import accuracy_score, classification_report
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        ds.matrix, ds.target.to_numpy(), test_size=test_size, random_state=random_state, stratify=ds.target
    )
    model = build_model(ds.schema)
    # Plain numbers are fitted on arrays: the feature order lives in the version's metadata
    # and every scorer builds its matrix in that order.
    model.fit(model_input(ds.schema, X_train), y_train)
    test_input = model_input(ds.schema, X_test)
    proba = model.predict_proba(test_input)[:, 1]
    predicted = model.predict(test_input)
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        **risk_metrics(y_test, proba),
        "train_size": int(len(X_train)),
        "test_size": int(len(X_test)),
        "test_fraction": float(test_size),
        "random_state": int(random_state),
        "positive_rate_train": float(y_train.mean()),
    }
    names = [str(c) for c in ds.classes]
    report = classification_report(y_test, predicted, digits=4, target_names=names if names != ["0", "1"] else None)
    return model, metrics, report, X_train


def risk_metrics(y_true, proba) -> dict[str, float]:
    """ROC AUC, Gini (2*AUC-1), KS (largest gap between the classes' score distributions),
    Brier score and average precision."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

    auc = float(roc_auc_score(y_true, proba))
    fpr, tpr, _ = roc_curve(y_true, proba)
    return {
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": float((tpr - fpr).max()),
        "brier": float(brier_score_loss(y_true, proba)),
        "average_precision": float(average_precision_score(y_true, proba)),
    }


def _library_versions() -> dict[str, str]:
    import joblib
    import numpy
    import pandas
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "joblib": joblib.__version__,
    }


def _serving_requirements() -> list[str]:
    """The model's pip requirements, pinned from this environment.

    Stated rather than inferred: MLflow's inference spawns a subprocess (about 4 s) and picks up
    whatever else happens to be imported, such as the test runner.
    """
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")]


def log_to_mlflow(model, metrics: dict, report: str, params: dict, example, experiment: str) -> str:
    """One MLflow run: parameters, metrics, the classification report, and the model.

    `example` is a DataFrame of training rows in the form the model takes (numbers; text
    for categories), so `mlflow models serve` accepts the same records as the endpoint.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines drown the summary
    uri = settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(experiment) is None:
        # Keep the run's artifacts beside the local database, wherever the script is run from.
        artifact_root = Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns"
        mlflow.create_experiment(experiment, artifact_location=artifact_root.as_uri())
    mlflow.set_experiment(experiment)
    with warnings.catch_warnings():
        # A pipeline fitted on arrays gets DataFrames from MLflow. Same columns, same order.
        warnings.filterwarnings("ignore", message="X has feature names")
        warnings.filterwarnings("ignore", category=FutureWarning)
        takes_frame = hasattr(model, "feature_names_in_")
        signature = infer_signature(example, model.predict_proba(example if takes_frame else example.to_numpy())[:, 1])
        with mlflow.start_run() as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: v for k, v in metrics.items() if k in LOGGED_METRICS})
            mlflow.log_text(report, "classification_report.txt")
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                pip_requirements=_serving_requirements(),
                # The one-hot encoder's fitted categories are object arrays; skops saves their
                # numpy.dtype, which it asks to be told is safe.
                **({"skops_trusted_types": ["numpy.dtype"]} if takes_frame else {}),
            )
    return run.info.run_id


def train(
    data: Path | None = None,
    target: str = settings.TARGET,
    test_size: float = 0.2,
    random_state: int = 42,
    registry_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    experiment: str = settings.MLFLOW_EXPERIMENT,
    model_name: str = settings.MODEL_NAME,
    use_mlflow: bool = True,
    register_mlflow: str | None = None,
    mlflow_alias: str = DEFAULT_MLFLOW_ALIAS,
    positive_class: str | None = None,
    categorical: Sequence[str] = (),
) -> TrainResult:
    """Fit, evaluate, write artifacts/, log to MLflow and register a new version.

    With `register_mlflow`, the logged model is also registered under that name in the
    MLflow model registry and given `mlflow_alias`.
    """
    import joblib

    _check_arguments(test_size, use_mlflow, register_mlflow, mlflow_alias)
    ds = load_dataset(data, target, positive_class, categorical)
    model, metrics, report, X_train = fit_and_evaluate(ds, test_size, random_state)
    log.info("trained on %d rows: accuracy %.4f, ROC AUC %.4f", metrics["train_size"], metrics["accuracy"], metrics["roc_auc"])

    artifacts = artifacts_dir or settings.artifacts_dir()
    artifacts.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_write(artifacts / MODEL_FILE) as handle:
        joblib.dump(model, handle)
    fileio.write_atomic(artifacts / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")

    description = _describe_model(ds.schema)
    params = {"test_size": test_size, "random_state": random_state, "max_iter": 1000,
              "model": _MODEL_PARAM[ds.schema.plain_numbers], "data_source": ds.source,
              "target": target, "positive_class": ds.positive_class}
    example = ds.schema.frame(X_train[:5])
    run_id = log_to_mlflow(model, metrics, report, params, example, experiment) if use_mlflow else None
    metadata = _metadata(ds, model_name, description, run_id, use_mlflow, X_train)
    if register_mlflow is not None and run_id:
        metadata["mlflow_registered_model"] = register_in_mlflow(run_id, register_mlflow, mlflow_alias)

    # The reference for drift monitoring: the training features and the scores the model
    # gives them, stored with the version so every later run compares against its own model.
    scores = model.predict_proba(model_input(ds.schema, X_train))[:, 1]
    profile = monitoring.build_profile(X_train, metadata["features"], scores, schema=ds.schema)

    def write_files(staging: Path) -> None:
        joblib.dump(model, staging / MODEL_FILE)
        monitoring.write_profile(staging, profile)
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (staging / "classification_report.txt").write_text(report, encoding="utf-8")

    version = Registry(registry_dir).register(write_files, metadata)
    if run_id:
        import mlflow

        mlflow.MlflowClient().set_tag(run_id, "registry_version", version.label)
        registered = metadata.get("mlflow_registered_model")
        if registered:
            mlflow.MlflowClient().set_model_version_tag(
                registered["name"], registered["version"], "registry_version", version.label)
    return TrainResult(version, metrics, report, run_id)


def _check_arguments(test_size: float, use_mlflow: bool, register_mlflow: str | None, mlflow_alias: str) -> None:
    if not 0.0 < test_size < 1.0:
        raise TrainingError(f"--test-size must be between 0 and 1, got {test_size}")
    if register_mlflow is not None and not use_mlflow:
        raise TrainingError("--register-mlflow needs MLflow tracking: drop --no-mlflow")
    if register_mlflow is not None and not register_mlflow.strip():
        raise TrainingError("--register-mlflow needs a model name")
    if register_mlflow is not None and not mlflow_alias.strip():
        raise TrainingError("--mlflow-alias must not be empty")


_MODEL_PARAM = {True: "StandardScaler -> LogisticRegression",
                False: "impute+scale numbers, impute+one-hot categories -> LogisticRegression"}


def _describe_model(schema: Schema) -> str:
    if schema.plain_numbers:
        return "StandardScaler -> LogisticRegression(max_iter=1000) risk classifier"
    return ("median imputation + StandardScaler for numbers, one-hot with a missing level for categories "
            "-> LogisticRegression(max_iter=1000) risk classifier")


def _metadata(ds: Dataset, model_name: str, description: str, run_id: str | None, use_mlflow: bool,
              X_train) -> dict[str, Any]:
    """The version's metadata.json: what it was trained on, its schema and its classes."""
    return {
        "model_name": model_name,
        "description": description,
        "model_type": "custom_model",
        "features": ds.schema.names,
        "feature_schema": ds.schema.to_list(),
        "target": ds.target_name,
        "positive_class": ds.positive_class,
        "classes": [0, 1],
        "class_labels": ds.classes,
        "input_example": ds.schema.decode_row(X_train[0]),
        "data_source": ds.source,
        "data_sha256": ds.sha256,
        "library_versions": _library_versions(),
        "mlflow_run_id": run_id,
        "mlflow_tracking_uri": _redact(settings.mlflow_tracking_uri()) if use_mlflow else None,
    }


def register_in_mlflow(run_id: str, name: str, alias: str) -> dict[str, Any]:
    """Register the run's logged model as a new version of `name` and point `alias` at it.

    The same calls register a model in an Azure ML workspace when the tracking URI is the
    workspace's MLflow endpoint.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
        logged = client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND name = 'model'", max_results=1)
        if not logged:
            raise TrainingError(f"MLflow run {run_id} has no logged model to register")
        registered = mlflow.register_model(logged[0].model_uri, name)
        client.set_registered_model_alias(name, alias, registered.version)
    except MlflowException as exc:
        raise TrainingError(f"cannot register the model in MLflow as {name!r}: {exc.message}") from None
    log.info("registered MLflow model %s version %s, alias %s", name, registered.version, alias)
    return {"name": name, "version": str(registered.version), "alias": alias,
            "model_uri": f"models:/{name}@{alias}"}


def _redact(uri: str) -> str:
    """Keep a tracking URI's scheme and host; drop anything that could be a secret."""
    return uri.split("?", 1)[0] if "://" in uri else uri


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a LogisticRegression risk classifier on a table (numbers and categories), "
                    "log to MLflow, register a new version.",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=None,
                        help="training CSV (default: day1_breast_cancer.csv if present, else scikit-learn's data)")
    parser.add_argument("--target", default=settings.TARGET, help="binary target column")
    parser.add_argument("--positive-class", default=None, metavar="VALUE",
                        help="the target value whose probability is the score (default: 1 when the "
                             "target's values are 0 and 1; required otherwise)")
    parser.add_argument("--categorical", default="", metavar="COL,...",
                        help="columns to treat as categories even if they look numeric "
                             "(text columns always are)")
    parser.add_argument("--test-size", type=float, default=0.2, help="held-out fraction (stratified)")
    parser.add_argument("--random-state", type=int, default=42, help="seed for the split")
    cli.add_registry_options(parser, model_version=False)
    parser.add_argument("--artifacts-dir", type=Path, default=None,
                        help="where model.joblib and metrics.json are written (default: ./artifacts)")
    parser.add_argument("--experiment", default=settings.MLFLOW_EXPERIMENT, help="MLflow experiment name")
    parser.add_argument("--model-name", default=settings.MODEL_NAME, help="registered model name")
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow tracking (faster; no run id)")
    parser.add_argument("--register-mlflow", metavar="NAME", default=None,
                        help="also register the logged model under NAME in the MLflow model registry")
    parser.add_argument("--mlflow-alias", default=DEFAULT_MLFLOW_ALIAS,
                        help="alias given to that MLflow model version (with --register-mlflow)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(verbose=True)
    try:
        result = train(
            data=args.data, target=args.target, test_size=args.test_size,
            random_state=args.random_state, registry_dir=args.registry_dir,
            artifacts_dir=args.artifacts_dir, experiment=args.experiment,
            model_name=args.model_name, use_mlflow=not args.no_mlflow,
            register_mlflow=args.register_mlflow, mlflow_alias=args.mlflow_alias,
            positive_class=args.positive_class,
            categorical=[c.strip() for c in args.categorical.split(",") if c.strip()],
        )
    except (TrainingError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = result.metrics
    print(f"registered {result.version.metadata['model_name']} {result.version.label} at {result.version.path}")
    print(f"accuracy {m['accuracy']:.4f}  roc_auc {m['roc_auc']:.4f}  "
          f"(train {m['train_size']} rows, test {m['test_size']} rows)")
    print(f"mlflow run id {result.run_id or '-'}")
    print(f"gini {m['gini']:.4f}  ks {m['ks']:.4f}  brier {m['brier']:.4f}  average_precision {m['average_precision']:.4f}"
          f"  (score: probability of {result.version.metadata['target']} = {result.version.metadata['positive_class']!r})")
    registered = result.version.metadata.get("mlflow_registered_model")
    if registered:
        print(f"mlflow model {registered['name']} version {registered['version']} alias {registered['alias']}")
    return 0


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
