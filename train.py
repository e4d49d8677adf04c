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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cli
import fileio
import monitoring
import settings
import training_data
from registry import METRICS_FILE, MODEL_FILE, ModelVersion, Registry, RegistryError

log = logging.getLogger("train")

DEFAULT_MLFLOW_ALIAS = "champion"


class TrainingError(Exception):
    """An expected training failure (bad data, bad arguments), with a user-facing message."""


@dataclass
class Dataset:
    frame: Any  # pandas.DataFrame of features, in training order
    target: Any  # pandas.Series of 0/1
    source: str
    sha256: str


@dataclass
class TrainResult:
    version: ModelVersion
    metrics: dict[str, Any]
    report: str
    run_id: str | None


def load_dataset(data: Path | None, target: str) -> Dataset:
    """The training table (training_data.load_table), checked: numeric features, a 0/1 target."""
    import pandas as pd

    try:
        frame = training_data.load_table(data)
    except training_data.TrainingDataError as exc:
        raise TrainingError(str(exc)) from None
    source = frame.attrs["source"]
    if target not in frame.columns:
        raise TrainingError(f"target column {target!r} not found in {source} (columns: {', '.join(map(str, frame.columns[:8]))}...)")
    features = frame.drop(columns=[target])
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise TrainingError(f"feature columns must be numeric; not numeric in {source}: {', '.join(map(str, non_numeric))}")
    if features.isna().any().any():
        bad = features.columns[features.isna().any()].tolist()
        raise TrainingError(f"feature columns have empty values in {source}: {', '.join(map(str, bad))}")
    labels = frame[target]
    values = set(labels.dropna().unique().tolist())
    if labels.isna().any() or not values <= {0, 1} or len(values) != 2:
        raise TrainingError(f"target {target!r} must hold both 0 and 1 and nothing else; found {sorted(map(str, values))[:5]}")
    return Dataset(features, labels.astype(int), source, training_data.table_sha256(frame))


def fit_and_evaluate(ds: Dataset, test_size: float, random_state: int):
    """Stratified split, StandardScaler -> LogisticRegression, and the test metrics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, classification_report, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test = train_test_split(
        ds.frame, ds.target, test_size=test_size, random_state=random_state, stratify=ds.target
    )
    model = Pipeline([
        ("scaler", StandardScaler()),
        ("classifier", LogisticRegression(max_iter=1000)),
    ])
    # Fitted on plain arrays: the feature order lives in the version's metadata and every
    # scorer builds its matrix in that order.
    model.fit(X_train.to_numpy(dtype="float64"), y_train.to_numpy())
    X_test_np = X_test.to_numpy(dtype="float64")
    proba = model.predict_proba(X_test_np)[:, 1]
    predicted = model.predict(X_test_np)
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "roc_auc": float(roc_auc_score(y_test, proba)),
        "train_size": int(len(X_train)),
        "test_size": int(len(X_test)),
        "test_fraction": float(test_size),
        "random_state": int(random_state),
        "positive_rate_train": float(y_train.mean()),
    }
    report = classification_report(y_test, predicted, digits=4)
    return model, metrics, report, X_train


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


def log_to_mlflow(model, metrics: dict, report: str, params: dict, X_train, experiment: str) -> str:
    """One MLflow run: parameters, metrics, the classification report, and the model."""
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
    example = X_train.head(5)
    with warnings.catch_warnings():
        # The pipeline was fitted on arrays; MLflow hands it DataFrames. Same columns, same order.
        warnings.filterwarnings("ignore", message="X has feature names")
        warnings.filterwarnings("ignore", category=FutureWarning)
        signature = infer_signature(example, model.predict_proba(example.to_numpy())[:, 1])
        with mlflow.start_run() as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: v for k, v in metrics.items() if k in ("accuracy", "roc_auc")})
            mlflow.log_text(report, "classification_report.txt")
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                pip_requirements=_serving_requirements(),
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
) -> TrainResult:
    """Fit, evaluate, write artifacts/, log to MLflow and register a new version.

    With `register_mlflow`, the logged model is also registered under that name in the
    MLflow model registry and given `mlflow_alias`.
    """
    import joblib

    _check_arguments(test_size, use_mlflow, register_mlflow, mlflow_alias)
    ds = load_dataset(data, target)
    model, metrics, report, X_train = fit_and_evaluate(ds, test_size, random_state)
    log.info("trained on %d rows: accuracy %.4f, ROC AUC %.4f", metrics["train_size"], metrics["accuracy"], metrics["roc_auc"])

    artifacts = artifacts_dir or settings.artifacts_dir()
    artifacts.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_write(artifacts / MODEL_FILE) as handle:
        joblib.dump(model, handle)
    fileio.write_atomic(artifacts / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")

    params = {"test_size": test_size, "random_state": random_state, "max_iter": 1000,
              "model": "StandardScaler -> LogisticRegression", "data_source": ds.source}
    run_id = log_to_mlflow(model, metrics, report, params, X_train, experiment) if use_mlflow else None

    metadata = {
        "model_name": model_name,
        "description": "StandardScaler -> LogisticRegression(max_iter=1000) risk classifier",
        "model_type": "custom_model",
        "features": [str(c) for c in ds.frame.columns],
        "target": target,
        "classes": [0, 1],
        "data_source": ds.source,
        "data_sha256": ds.sha256,
        "library_versions": _library_versions(),
        "mlflow_run_id": run_id,
        "mlflow_tracking_uri": _redact(settings.mlflow_tracking_uri()) if use_mlflow else None,
    }
    if register_mlflow is not None and run_id:
        metadata["mlflow_registered_model"] = register_in_mlflow(run_id, register_mlflow, mlflow_alias)

    # The reference for drift monitoring: the training features and the scores the model
    # gives them, stored with the version so every later run compares against its own model.
    train_matrix = X_train.to_numpy(dtype="float64")
    profile = monitoring.build_profile(train_matrix, metadata["features"], model.predict_proba(train_matrix)[:, 1])

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
        description="Train StandardScaler -> LogisticRegression, log to MLflow, register a new version.",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=None,
                        help="training CSV (default: day1_breast_cancer.csv if present, else scikit-learn's data)")
    parser.add_argument("--target", default=settings.TARGET, help="binary target column")
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
        )
    except (TrainingError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = result.metrics
    print(f"registered {result.version.metadata['model_name']} {result.version.label} at {result.version.path}")
    print(f"accuracy {m['accuracy']:.4f}  roc_auc {m['roc_auc']:.4f}  "
          f"(train {m['train_size']} rows, test {m['test_size']} rows)")
    print(f"mlflow run id {result.run_id or '-'}")
    registered = result.version.metadata.get("mlflow_registered_model")
    if registered:
        print(f"mlflow model {registered['name']} version {registered['version']} alias {registered['alias']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
