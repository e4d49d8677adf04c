"""train.py: two trainings give v001 and v002 with their files, tracked in MLflow."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import training_data
from conftest import run_script

METRIC_KEYS = {"accuracy", "roc_auc", "train_size", "test_size", "random_state"}
METADATA_KEYS = {"model_name", "version", "registered_at", "features", "target", "data_source",
                 "data_sha256", "library_versions", "mlflow_run_id", "model_sha256"}


@pytest.fixture(scope="module")
def two_trainings(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    env = {
        "LOCAL_REGISTRY_DIR": str(base / "registry"),
        "ARTIFACTS_DIR": str(base / "artifacts"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}",
        "TRAINING_DATA": str(base / "absent.csv"),
    }
    runs = [run_script("train.py", env=env), run_script("train.py", "--random-state", "7", env=env)]
    return base, env, runs


def test_two_trainings_register_v001_and_v002(two_trainings):
    base, _, runs = two_trainings
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (base / "registry").iterdir()) == ["model_v001", "model_v002"]
    for n in (1, 2):
        folder = base / "registry" / f"model_v00{n}"
        assert {"model.joblib", "metrics.json", "metadata.json"} <= {p.name for p in folder.iterdir()}
        metrics = json.loads((folder / "metrics.json").read_text())
        metadata = json.loads((folder / "metadata.json").read_text())
        assert METRIC_KEYS <= metrics.keys() and METADATA_KEYS <= metadata.keys()
        assert metadata["version"] == n and metadata["target"] == "target"
        assert len(metadata["features"]) == 30 and metadata["features"][0] == "mean radius"
        assert metadata["data_source"] == "sklearn.datasets.load_breast_cancer"
        assert metrics["train_size"] == 455 and metrics["test_size"] == 114
        assert metrics["accuracy"] > 0.9 and metrics["roc_auc"] > 0.95
    assert json.loads((base / "registry/model_v002/metrics.json").read_text())["random_state"] == 7
    assert (base / "artifacts" / "model.joblib").is_file() and (base / "artifacts" / "metrics.json").is_file()


def test_summary_names_version_metrics_and_run_id(two_trainings):
    _, _, runs = two_trainings
    lines = runs[1].stdout.splitlines()
    assert re.fullmatch(r"registered risk-classifier v002 at .*model_v002", lines[0])
    assert re.fullmatch(r"accuracy 0\.\d{4}  roc_auc 0\.\d{4}  \(train 455 rows, test 114 rows\)", lines[1])
    assert re.fullmatch(r"mlflow run id [0-9a-f]{32}", lines[2])


def test_run_is_tracked_in_mlflow(two_trainings):
    import mlflow

    base, env, _ = two_trainings
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    metadata = json.loads((base / "registry/model_v001/metadata.json").read_text())
    run = client.get_run(metadata["mlflow_run_id"])
    assert run.data.params["test_size"] == "0.2" and run.data.params["random_state"] == "42"
    assert run.data.metrics["accuracy"] == pytest.approx(json.loads((base / "registry/model_v001/metrics.json").read_text())["accuracy"])
    assert run.data.tags["registry_version"] == "v001"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "classification_report.txt" in artifacts
    logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    model = next(m for m in logged if m.source_run_id == run.info.run_id)
    loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    assert loaded.metadata.signature is not None
    assert [c.name for c in loaded.metadata.signature.inputs][:2] == ["mean radius", "mean texture"]
    # Tracking stays in the temporary store: the run's artifacts live beside its database.
    assert str(base) in run.info.artifact_uri


def test_custom_csv_and_target(tmp_path):
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "delinquent"})
    frame.iloc[:, :5].assign(delinquent=frame["delinquent"]).to_csv(tmp_path / "risk.csv", index=False)
    run = run_script("train.py", "--data", str(tmp_path / "risk.csv"), "--target", "delinquent",
                     "--registry-dir", str(tmp_path / "reg"), "--no-mlflow")
    assert run.returncode == 0, run.stderr
    metadata = json.loads((tmp_path / "reg/model_v001/metadata.json").read_text())
    assert metadata["features"] == list(frame.columns[:5]) and metadata["target"] == "delinquent"
    assert metadata["data_source"] == str(tmp_path / "risk.csv") and metadata["mlflow_run_id"] is None


def _ids(rows: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"a": [i % 5 for i in range(rows)], "customer": [f"c{i}" for i in range(rows)],
                         "target": [0, 1] * (rows // 2)})


@pytest.mark.parametrize("make_csv, args, message", [
    (None, ["--data", "{tmp}/nope.csv"], "error: data file {tmp}/nope.csv does not exist"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0], "target": [0, 1]}), ["--target", "label"], "error: target column 'label' not found"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0], "target": [0, 1, 2]}), [],
     "error: target 'target' must have exactly two values; found 3: 0, 1, 2"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": ["good", "bad", "good"]}), ["--target", "y"],
     "error: target 'y' has values 'bad', 'good': give --positive-class with the one whose probability is the score"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": ["good", "bad", "good"]}), ["--target", "y", "--positive-class", "Bad"],
     "error: --positive-class 'Bad' is not a value of target 'y'; its values: 'bad', 'good'"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0], "target": [0, None, 1]}), [],
     "error: target 'target' has 1 empty cell(s) (first at data row 2); fill or drop those rows"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0], "b": [None, None], "target": [0, 1]}), [],
     "error: feature column(s) 'b' in {tmp}/d.csv are empty throughout; drop them"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0], "score": [3.0, 4.0], "target": [0, 1]}), [],
     "error: feature column(s) 'score' in {tmp}/d.csv are named like an output column of the scorers "
     "(prediction, probability, score, model_version); rename or drop them"),
    (_ids, [], "error: feature column 'customer' in {tmp}/d.csv looks like an ID (a distinct value in each of its 30 rows)"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0], "target": [0, 1]}), ["--categorical", "a,zip"],
     "error: --categorical names column(s) that are not features of {tmp}/d.csv: zip"),
    (lambda: pd.DataFrame({"a": [1.0, 2.0], "target": [0, 1]}), ["--test-size", "1.5"], "error: --test-size must be between 0 and 1, got 1.5"),
])
def test_bad_data_gives_one_clear_line(tmp_path, make_csv, args, message):
    if make_csv is not None:
        make_csv().to_csv(tmp_path / "d.csv", index=False)
        args = ["--data", str(tmp_path / "d.csv"), *args]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    run = run_script("train.py", *args, "--registry-dir", str(tmp_path / "reg"), "--no-mlflow")
    assert run.returncode == 1
    assert run.stderr.strip().startswith(message.replace("{tmp}", str(tmp_path)))
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert not (tmp_path / "reg").exists() or not any((tmp_path / "reg").iterdir())


# ----- --register-mlflow: the MLflow model registry, as against an Azure ML workspace --------
@pytest.fixture(scope="module")
def mlflow_registered(tmp_path_factory):
    """Two trainings registered in a temporary sqlite MLflow store: champion, then challenger."""
    base = tmp_path_factory.mktemp("train-mlflow-registry")
    env = {
        "LOCAL_REGISTRY_DIR": str(base / "registry"),
        "ARTIFACTS_DIR": str(base / "artifacts"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}",
        "TRAINING_DATA": str(base / "absent.csv"),
    }
    runs = [
        run_script("train.py", "--register-mlflow", "risk-classifier", env=env),
        run_script("train.py", "--register-mlflow", "risk-classifier", "--mlflow-alias", "challenger",
                   "--random-state", "7", env=env),
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    return base, env, runs


def test_register_mlflow_registers_versions_with_aliases(mlflow_registered):
    import mlflow

    base, env, runs = mlflow_registered
    assert runs[0].stdout.splitlines()[-1] == "mlflow model risk-classifier version 1 alias champion"
    assert runs[1].stdout.splitlines()[-1] == "mlflow model risk-classifier version 2 alias challenger"
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    for number, alias in ((1, "champion"), (2, "challenger")):
        metadata = json.loads((base / f"registry/model_v00{number}/metadata.json").read_text())
        assert metadata["mlflow_registered_model"] == {
            "name": "risk-classifier", "version": str(number), "alias": alias,
            "model_uri": f"models:/risk-classifier@{alias}",
        }
        version = client.get_model_version_by_alias("risk-classifier", alias)
        assert str(version.version) == str(number)
        assert version.run_id == metadata["mlflow_run_id"]
        assert version.tags["registry_version"] == f"v00{number}"
    aliases = client.get_registered_model("risk-classifier").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1", "challenger": "2"}


@pytest.mark.filterwarnings("ignore:X has feature names")
def test_alias_loads_the_same_model_as_the_local_registry(mlflow_registered):
    import mlflow
    import numpy as np

    from score import ModelService

    base, env, _ = mlflow_registered
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    service = ModelService.from_registry(base / "registry", 1)
    frame = pd.DataFrame(np.random.default_rng(0).normal(10, 3, (6, len(service.features))), columns=service.features)
    champion = mlflow.pyfunc.load_model("models:/risk-classifier@champion")
    np.testing.assert_allclose(np.asarray(champion.predict(frame))[:, 1],
                               service.predict_proba(frame.to_numpy()), rtol=1e-12)


@pytest.mark.parametrize("args, message", [
    (["--register-mlflow", "risk-classifier", "--no-mlflow"], "error: --register-mlflow needs MLflow tracking: drop --no-mlflow"),
    (["--register-mlflow", " "], "error: --register-mlflow needs a model name"),
    (["--register-mlflow", "risk-classifier", "--mlflow-alias", ""], "error: --mlflow-alias must not be empty"),
])
def test_register_mlflow_bad_arguments_give_one_clear_line(tmp_path, args, message):
    run = run_script("train.py", *args, "--registry-dir", str(tmp_path / "reg"),
                     env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert run.returncode == 1
    assert run.stderr.strip() == message
    assert not (tmp_path / "reg").exists()


# ----- tables with categories, gaps and string targets ----------------------------------------
def test_credit_data_meets_the_quality_floor_with_its_schema(credit_registry):
    folder = credit_registry / "model_v001"
    metrics = json.loads((folder / "metrics.json").read_text())
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metrics["roc_auc"] >= 0.78 and metrics["train_size"] == 800 and metrics["test_size"] == 200
    assert metrics["gini"] == pytest.approx(2 * metrics["roc_auc"] - 1)
    assert 0 < metrics["ks"] < 1 and 0 < metrics["brier"] < 0.25 and 0.3 < metrics["average_precision"] < 1
    assert metadata["target"] == "creditability" and metadata["positive_class"] == "bad"
    assert metadata["class_labels"] == ["good", "bad"] and metadata["classes"] == [0, 1]
    schema = metadata["feature_schema"]
    assert [f["name"] for f in schema] == metadata["features"] and len(schema) == 20
    assert sum(f["type"] == "category" for f in schema) == 13 and sum(f["type"] == "number" for f in schema) == 7
    assert not any(f["nullable"] for f in schema)
    housing = next(f for f in schema if f["name"] == "housing")
    assert housing == {"name": "housing", "type": "category", "nullable": False, "categories": ["for free", "own", "rent"]}
    age = next(f for f in schema if f["name"] == "age_in_years")
    assert age == {"name": "age_in_years", "type": "number", "nullable": False, "min": 19.0, "max": 75.0}
    example = metadata["input_example"]
    assert list(example) == metadata["features"] and example["housing"] in housing["categories"]


def test_breast_cancer_schema_is_plain_numbers(trained_registry):
    metadata = json.loads((trained_registry / "model_v001/metadata.json").read_text())
    assert metadata["positive_class"] == 1 and metadata["class_labels"] == [0, 1]
    assert metadata["description"] == "StandardScaler -> LogisticRegression(max_iter=1000) risk classifier"
    assert {f["type"] for f in metadata["feature_schema"]} == {"number"}
    assert not any(f["nullable"] for f in metadata["feature_schema"])


def test_gappy_table_schema_records_nulls_and_forced_categories(gappy_registry):
    import joblib

    metadata = json.loads((gappy_registry / "model_v001/metadata.json").read_text())
    schema = {f["name"]: f for f in metadata["feature_schema"]}
    assert metadata["features"] == ["income", "region", "channel", "grade"]
    assert schema["income"]["type"] == "number" and schema["income"]["nullable"] is True
    assert schema["region"] == {"name": "region", "type": "category", "nullable": False,
                                "categories": ["east", "north", "south", "west"]}
    assert schema["channel"] == {"name": "channel", "type": "category", "nullable": True,
                                 "categories": ["branch", "phone", "web"]}
    assert schema["grade"] == {"name": "grade", "type": "category", "nullable": False, "categories": ["1", "2", "3"]}
    assert metadata["positive_class"] == "late" and metadata["class_labels"] == ["on_time", "late"]
    model = joblib.load(gappy_registry / "model_v001/model.joblib")
    onehot = model.named_steps["prepare"].named_transformers_["category"].named_steps["onehot"]
    assert [list(c) for c in onehot.categories_][1] == ["(missing)", "branch", "phone", "web"]


def test_train_cli_on_credit_data_with_mlflow(tmp_path):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run = run_script("train.py", "--data", "data/german_credit.csv", "--target", "creditability",
                     "--positive-class", "bad", "--registry-dir", str(tmp_path / "reg"),
                     "--artifacts-dir", str(tmp_path / "art"), env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1] == "accuracy 0.7800  roc_auc 0.8026  (train 800 rows, test 200 rows)"
    assert lines[3] == ("gini 0.6052  ks 0.5476  brier 0.1570  average_precision 0.6364  "
                        "(score: probability of creditability = 'bad')")
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run_id = json.loads((tmp_path / "reg/model_v001/metadata.json").read_text())["mlflow_run_id"]
    logged = mlflow.MlflowClient().get_run(run_id).data
    assert set(logged.metrics) == {"accuracy", "roc_auc", "gini", "ks", "brier", "average_precision"}
    assert logged.params["positive_class"] == "bad" and logged.params["target"] == "creditability"
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    record = json.loads((tmp_path / "reg/model_v001/metadata.json").read_text())["input_example"]
    proba = model.predict(pd.DataFrame([record]))  # predict_proba: [P(good), P(bad)]
    assert proba.shape == (1, 2) and 0 < proba[0, 1] < 1


def test_integer_id_column_is_a_warning(tmp_path):
    frame = _ids().drop(columns=["customer"]).assign(a=range(30))
    frame.to_csv(tmp_path / "d.csv", index=False)
    run = run_script("train.py", "--data", str(tmp_path / "d.csv"), "--registry-dir", str(tmp_path / "reg"), "--no-mlflow")
    assert run.returncode == 0, run.stderr
    assert (f"WARNING train: feature column 'a' in {tmp_path}/d.csv looks like an ID (a distinct whole number in "
            "each of its 30 rows); drop it unless it carries information") in run.stderr


def _one_typo(tmp_path):
    """The breast_cancer table (scikit-learn's copy: a fresh clone has no exported CSV) with 'n/a' in 'worst area' of data row 5."""
    frame = training_data.load_table(None)
    frame["worst area"] = frame["worst area"].astype(object)
    frame.loc[4, "worst area"] = "n/a"
    frame.to_csv(tmp_path / "typo.csv", index=False)
    return tmp_path / "typo.csv"


def test_a_few_text_cells_in_a_numeric_column_are_refused(tmp_path):
    run = run_script("train.py", "--data", str(_one_typo(tmp_path)), "--registry-dir", str(tmp_path / "reg"), "--no-mlflow")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        f"error: feature column 'worst area' in {tmp_path}/typo.csv holds numbers but 1 cell(s) are not "
        "(first at data row 5: 'n/a'); fix it, leave it empty for missing, or pass --categorical 'worst area'")
    assert not (tmp_path / "reg").exists() or not any((tmp_path / "reg").iterdir())


def test_check_stray_text_counts_cells_and_respects_categorical():
    import training_data

    frame = pd.DataFrame({"x": [str(i) for i in range(40)], "t": ["a"] * 40})
    frame.loc[[7, 30], "x"] = ["?", "unknown"]
    with pytest.raises(training_data.TrainingDataError, match=re.escape(
            "feature column 'x' in s.csv holds numbers but 2 cell(s) are not (first at data row 8: '?')")):
        training_data.check_stray_text(frame, "s.csv")
    training_data.check_stray_text(frame, "s.csv", ["x"])  # named in --categorical: a category, no error
    frame.loc[[1, 2], "x"] = ["n/a", "n/a"]  # 4 of 40 text cells: below 95% numbers, a category column
    training_data.check_stray_text(frame, "s.csv")
