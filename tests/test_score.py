"""score.py: the scorer object, record validation, Azure's init()/run(), and the CLI."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import score
from conftest import run_script
from registry import RegistryError
from score import ModelService, RecordError, ScoringError


def test_scores_equal_the_pipeline(service, sample_records):
    results = service.score_records(sample_records)
    matrix = np.array([[r[f] for f in service.features] for r in sample_records])
    assert [r["prediction"] for r in results] == service.model.predict(matrix).tolist()
    np.testing.assert_allclose([r["probability"] for r in results], service.model.predict_proba(matrix)[:, 1], rtol=0, atol=1e-12)
    assert [r["input"] for r in results] == sample_records
    assert service.version == "v002"


def test_extra_fields_are_kept_and_ignored(service, sample_records):
    record = {"account_id": "A-17", **sample_records[0], "note": None}
    [result] = service.score_records([record])
    assert result["input"] is record
    assert result["probability"] == service.score_records([sample_records[0]])[0]["probability"]


def _bad(sample, **changes):
    record = dict(sample)
    for key, value in changes.items():
        key = key.replace("_", " ")
        if value is KeyError:
            del record[key]
        else:
            record[key] = value
    return record


@pytest.mark.parametrize("change, message", [
    ({"mean_radius": KeyError}, "record 1, feature 'mean radius': missing feature"),
    ({"mean_texture": None}, "record 1, feature 'mean texture': expected a number, got null"),
    ({"mean_texture": "12.5"}, 'record 1, feature \'mean texture\': expected a number, got string "12.5"'),
    ({"mean_texture": True}, "record 1, feature 'mean texture': expected a number, got boolean true"),
    ({"mean_texture": [1.0]}, "record 1, feature 'mean texture': expected a number, got list"),
    ({"worst_area": math.nan}, "record 1, feature 'worst area': expected a finite number, got NaN"),
    ({"worst_area": math.inf}, "record 1, feature 'worst area': expected a finite number, got Infinity"),
    ({"worst_area": -math.inf}, "record 1, feature 'worst area': expected a finite number, got -Infinity"),
    ({"worst_area": 10**400}, "record 1, feature 'worst area': expected a finite number, got an integer too large for a float"),
])
def test_bad_records_name_index_and_feature(service, sample_records, change, message):
    records = [sample_records[0], _bad(sample_records[1], **change), sample_records[2]]
    with pytest.raises(RecordError) as info:
        service.score_records(records)
    assert str(info.value) == message
    assert info.value.index == 1


def test_record_that_is_not_an_object(service, sample_records):
    with pytest.raises(RecordError, match=r"^record 1: expected a JSON object, got list$"):
        service.score_records([sample_records[0], [1, 2]])


@pytest.mark.parametrize("payload, message", [
    ([], "no records to score: the list is empty"),
    ({"records": []}, "no records to score: the list is empty"),
    ({"records": {"a": 1}}, '"records" must be a list of records, got dict'),
    ({"rows": []}, 'request body must have "records"'),
    ("text", "request body must be a JSON object, got str"),
])
def test_bad_payloads(service, payload, message):
    with pytest.raises(ScoringError, match=message):
        service.score_payload(payload)


def test_data_shape_as_lists_and_objects(service, sample_records):
    expected = service.score_payload({"records": sample_records[:3]})
    as_objects = service.score_payload({"data": sample_records[:3]})
    as_lists = service.score_payload({"data": [[r[f] for f in service.features] for r in sample_records[:3]]})
    assert expected == as_objects == as_lists
    assert expected["model_version"] == "v002"
    with pytest.raises(RecordError, match="record 0: expected 30 values in feature order, got 2"):
        service.score_payload({"data": [[1.0, 2.0]]})


def test_init_and_run_with_azureml_model_dir(trained_registry, tmp_path, monkeypatch, sample_records):
    # Azure mounts a registered folder under its own name inside AZUREML_MODEL_DIR.
    shutil.copytree(trained_registry / "model_v001", tmp_path / "model_v001")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(score, "_service", None)
    score.init()
    out = score.run(json.dumps({"data": sample_records[:2]}))
    assert isinstance(out, dict) and out["model_version"] == "v001"
    reference = ModelService.from_registry(trained_registry, "v001").score_records(sample_records[:2])
    assert out["results"] == reference
    assert score.run(json.dumps({"records": sample_records[:2]}))["results"] == reference
    body = json.dumps({"records": [{**sample_records[0], "mean radius": math.nan}]})
    assert "NaN" in body  # the token Python's parsers accept: it must reach validation
    with pytest.raises(RecordError, match="record 0, feature 'mean radius': expected a finite number, got NaN"):
        score.run(body)
    with pytest.raises(ScoringError, match="request body is not valid JSON"):
        score.run("{not json")


def test_init_refuses_tampered_model_in_model_dir(trained_registry, tmp_path, monkeypatch):
    shutil.copytree(trained_registry / "model_v001", tmp_path / "model_v001")
    (tmp_path / "model_v001" / "model.joblib").write_bytes(b"not the model")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    with pytest.raises(RegistryError, match="has been modified"):
        score.init()


def test_init_without_model_dir_uses_latest(trained_registry, monkeypatch):
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(trained_registry))
    monkeypatch.setattr(score, "_service", None)
    score.init()
    assert score._service.version == "v002"


def test_cli_sample_and_input(trained_registry, tmp_path, sample_records):
    sampled = run_script("score.py", "--registry-dir", str(trained_registry), "--sample", "2")
    assert sampled.returncode == 0, sampled.stderr
    out = json.loads(sampled.stdout)
    assert len(out["results"]) == 2 and out["model_version"] == "v002"
    (tmp_path / "records.json").write_text(json.dumps(sample_records[:3]))
    from_file = run_script("score.py", "--registry-dir", str(trained_registry), "--input", str(tmp_path / "records.json"),
                           "--model-version", "v001")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["model_version"] == "v001"
    assert len(json.loads(from_file.stdout)["results"]) == 3


@pytest.mark.parametrize("content, message", [
    ("[{\"mean radius\": 1}]", "error: record 0, feature 'mean texture': missing feature"),
    ("{oops", "error: {path} is not valid JSON"),
    (None, "error: cannot read {path}"),
])
def test_cli_errors_are_one_line(trained_registry, tmp_path, content, message):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    run = run_script("score.py", "--registry-dir", str(trained_registry), "--input", str(path))
    assert run.returncode == 1
    assert run.stderr.startswith(message.replace("{path}", str(path)))
    assert len(run.stderr.strip().splitlines()) == 1


def test_cli_empty_registry(tmp_path):
    run = run_script("score.py", "--registry-dir", str(tmp_path))
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: no model registered in {tmp_path}: run python train.py"


@pytest.mark.parametrize("direct", [True, False], ids=["direct path", "pipeline path"])
def test_values_too_large_for_the_model_are_a_record_error(service, sample_records, direct):
    """Finite inputs can overflow inside the model (1e306 / a small scale): a RecordError, never NaN."""
    from score import ModelService, RecordError

    scorer = ModelService(service.model, service.version, service.features, service.metadata, service.metrics)
    if not direct:
        scorer._direct = scorer._one = None  # the pipeline itself, for a batch and for one record
    # Two features whose scaled values overflow to +inf and -inf in the logit: inf - inf.
    scaler, classifier = service.model.steps[0][1], service.model.steps[1][1]
    small = [i for i in range(len(service.features)) if scaler.scale_[i] < 1][:2]
    records = [dict(r) for r in sample_records[:3]]
    for i, sign in zip(small, (1, -1)):
        records[1][service.features[i]] = sign * float(np.sign(classifier.coef_[0, i])) * 1.7e308
    with pytest.raises(RecordError, match=r"record 1: values too large for the model to score"):
        scorer.score_records(records)
    assert scorer.score_records(records[:1])[0]["probability"] == service.score_records(records[:1])[0]["probability"]


def test_cli_table_format(trained_registry):
    run = run_script("score.py", "--registry-dir", str(trained_registry), "--sample", "2", "--format", "table")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:2] == ["model v002: 2 record(s)", "record  prediction  probability"]
    assert [line.split()[0] for line in lines[2:]] == ["0", "1"]
    assert all(0.0 <= float(line.split()[2]) <= 1.0 for line in lines[2:])


# ----- the version's schema: categories, nulls, legacy versions -------------------------------
@pytest.fixture(scope="module")
def credit(credit_registry):
    return ModelService.from_registry(credit_registry)


@pytest.fixture(scope="module")
def gappy(gappy_registry):
    return ModelService.from_registry(gappy_registry)


def _pipeline_proba(service, records):
    import pandas as pd

    frame = pd.DataFrame(records, columns=service.features).astype(
        {f.name: object for f in service.schema.categorical})
    return service.model.predict_proba(frame.fillna(np.nan))[:, 1]


def test_credit_records_score_as_the_pipeline(credit, credit_registry):
    records = score.sample_records(50, score.training_data_path(credit), credit.features, credit.schema)
    assert records[0]["purpose"] == "radio/television" and records[0]["credit_amount"] == 1169.0
    out = credit.score_payload({"records": records})
    assert out["model_version"] == "v001" and credit.positive_class == "bad"
    got = np.array([r["probability"] for r in out["results"]])
    np.testing.assert_allclose(got, _pipeline_proba(credit, records), rtol=0, atol=1e-12)
    assert [r["prediction"] for r in out["results"]] == [int(p > 0.5) for p in got]
    assert credit._direct is not None  # the table model scores without building a DataFrame
    as_lists = credit.score_payload({"data": [[r[f] for f in credit.features] for r in records[:3]]})
    assert [r["probability"] for r in as_lists["results"]] == got[:3].tolist()


@pytest.mark.parametrize("change, message", [
    ({"purpose": "boat"}, 'record 1, feature \'purpose\': unknown category string "boat"; expected one of "business", '
     '"car (new)", "car (used)", "domestic appliances", "education", "furniture/equipment", "others", '
     '"radio/television", "repairs", "retraining"'),
    ({"housing": 2}, 'record 1, feature \'housing\': expected a category (a string), got number 2; '
     'expected one of "for free", "own", "rent"'),
    ({"housing": None}, "record 1, feature 'housing': expected a category, got null "
     "(this feature had no empty values in training)"),
    ({"age_in_years": None}, "record 1, feature 'age_in_years': expected a number, got null "
     "(this feature had no empty values in training)"),
    ({"age_in_years": "47"}, "record 1, feature 'age_in_years': expected a number, got string \"47\""),
    ({"age_in_years": True}, "record 1, feature 'age_in_years': expected a number, got boolean true"),
    ({"housing": "Own"}, 'record 1, feature \'housing\': unknown category string "Own"; expected one of "for free", "own", "rent"'),
])
def test_credit_bad_values_name_record_feature_and_value(credit, change, message):
    good = credit.metadata["input_example"]
    with pytest.raises(RecordError) as err:
        credit.score_payload({"records": [good, {**good, **change}]})
    assert str(err.value) == message


def test_credit_missing_feature_is_an_error(credit):
    record = dict(credit.metadata["input_example"])
    del record["job"]
    with pytest.raises(RecordError, match="^record 0, feature 'job': missing feature$"):
        credit.score_payload({"records": [record]})


def test_nullable_features_take_null(gappy):
    assert [f.name for f in gappy.schema.features if f.nullable] == ["income", "channel"]
    records = [{"income": None, "region": "west", "channel": None, "grade": "3"},
               {"income": 61.5, "region": "north", "channel": "web", "grade": "1"}]
    out = gappy.score_payload({"records": records})
    got = [r["probability"] for r in out["results"]]
    np.testing.assert_allclose(got, _pipeline_proba(gappy, records), rtol=0, atol=1e-12)
    assert out["results"][0]["input"] == records[0] and gappy.positive_class == "late"
    with pytest.raises(RecordError, match=r"^record 0, feature 'grade': expected a category \(a string\), got number 3; "
                                          r'expected one of "1", "2", "3"$'):
        gappy.score_payload({"records": [{**records[0], "grade": 3}]})
    with pytest.raises(RecordError, match="^record 0, feature 'region': expected a category, got null"):
        gappy.score_payload({"records": [{**records[0], "region": None}]})


def test_up_to_20_allowed_values_are_listed():
    from feature_schema import Feature

    feature = Feature("branch", "category", categories=tuple(f"b{i:02d}" for i in range(25)))
    with pytest.raises(ValueError) as err:
        feature.encode("zz")
    listed = ", ".join(f'"b{i:02d}"' for i in range(20))
    assert str(err.value) == f'unknown category string "zz"; expected one of {listed} and 5 more'


def test_version_without_feature_schema_serves_as_plain_numbers(trained_registry, tmp_path, sample_records):
    from registry import Registry

    source = Registry(trained_registry).get(1)
    metadata = {k: v for k, v in source.metadata.items()
                if k not in {"version", "registered_at", "model_sha256", "feature_schema", "positive_class",
                             "class_labels", "input_example"}}

    def write(staging):
        for name in ("model.joblib", "metrics.json"):
            shutil.copy(source.path / name, staging / name)

    Registry(tmp_path).register(write, metadata)
    old = ModelService.from_registry(tmp_path)
    assert old.schema.plain_numbers and old.schema.names == old.features and old.positive_class == 1
    assert old._direct is not None
    assert old.score_records(sample_records[:3]) == ModelService.from_registry(trained_registry, 1).score_records(sample_records[:3])
    with pytest.raises(RecordError, match="record 0, feature 'mean radius': expected a number, got null"):
        old.score_payload({"records": [{**sample_records[0], "mean radius": None}]})


def test_init_and_run_take_credit_records(credit_registry, tmp_path, monkeypatch):
    shutil.copytree(credit_registry / "model_v001", tmp_path / "model_v001")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(score, "_service", None)
    score.init()
    example = score._service.metadata["input_example"]
    out = score.run(json.dumps({"data": [example]}))
    assert out["model_version"] == "v001" and out["results"][0]["input"] == example
    with pytest.raises(RecordError, match="record 0, feature 'purpose': unknown category"):
        score.run(json.dumps({"data": [{**example, "purpose": "yacht"}]}))


def test_cli_sample_reads_the_versions_own_training_file(credit_registry):
    run = run_script("score.py", "--sample", "2", "--registry-dir", str(credit_registry), "--format", "table")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "model v001: 2 record(s)"


def test_nullable_number_still_refuses_nan_and_earliest_record_wins(gappy):
    good = {"income": None, "region": "west", "channel": None, "grade": "3"}
    with pytest.raises(RecordError, match="^record 1, feature 'income': expected a finite number, got NaN$"):
        gappy.score_payload({"records": [good, {**good, "income": math.nan}]})
    # a bad value in record 0 is reported before a malformed record 1, and a bad record 0 before record 2's
    with pytest.raises(RecordError, match="^record 0, feature 'grade': "):
        gappy.score_payload({"records": [{**good, "grade": 3}, "not an object"]})
    with pytest.raises(RecordError, match="^record 1: expected a JSON object, got str$"):
        gappy.score_payload({"records": [good, "not an object", {**good, "grade": 3}]})
    with pytest.raises(RecordError, match="^record 1, feature 'region': missing feature$"):
        gappy.score_payload({"records": [good, {"income": 1.0}]})


def test_one_record_in_python_floats_gives_the_matrix_paths_bits(service):
    """A single record is scored in Python floats (direct_scoring.LinearForm.one): the same
    prediction and the same probability bits as the numpy matrix path, from ordinary values to
    logits far in both tails (expit's underflow included) and integers."""
    scaler = service.model.steps[0][1]
    rng = np.random.default_rng(3)
    rows = scaler.mean_ + scaler.scale_ * rng.normal(0.0, 1.0, size=(3000, len(service.features))) * \
        rng.choice([0.1, 1.0, 10.0, 1e3, 1e6], size=(3000, 1))
    records = [dict(zip(service.features, row)) for row in rows.tolist()]
    records += [dict(zip(service.features, [int(round(v)) for v in row])) for row in rows[:200].tolist()]
    fast = 0
    for record in records:
        fast += service._score_one(record) is not None
        inputs, predictions, probabilities = service.predict_records([record])
        matrix_predictions, matrix_probabilities = service.predict(service.to_matrix([record]))
        assert inputs == [record]
        assert predictions == matrix_predictions.tolist()
        assert np.float64(probabilities[0]).tobytes() == matrix_probabilities[0].tobytes()
    assert fast == len(records)
    probabilities = [service.predict_records([r])[2][0] for r in records]
    assert min(probabilities) == 0.0 and max(probabilities) == 1.0  # both tails were reached


@pytest.mark.parametrize("change, message", [
    ({"mean_radius": KeyError}, "record 0, feature 'mean radius': missing feature"),
    ({"mean_texture": True}, "record 0, feature 'mean texture': expected a number, got boolean true"),
    ({"worst_area": math.nan}, "record 0, feature 'worst area': expected a finite number, got NaN"),
    ({"worst_area": math.inf}, "record 0, feature 'worst area': expected a finite number, got Infinity"),
    ({"worst_area": 10**400}, "record 0, feature 'worst area': expected a finite number, got an integer too large for a float"),
])
def test_one_bad_record_gets_the_same_error_as_in_a_batch(service, sample_records, change, message):
    with pytest.raises(RecordError) as info:
        service.predict_records([_bad(sample_records[0], **change)])
    assert str(info.value) == message


def test_one_record_that_overflows_inside_the_model_is_a_record_error(service, sample_records):
    scaler, classifier = service.model.steps[0][1], service.model.steps[1][1]
    small = [i for i in range(len(service.features)) if scaler.scale_[i] < 1][:2]
    record = dict(sample_records[0])
    for i, sign in zip(small, (1, -1)):
        record[service.features[i]] = sign * float(np.sign(classifier.coef_[0, i])) * 1.7e308
    with pytest.raises(RecordError, match=r"record 0: values too large for the model to score"):
        service.predict_records([record])


@pytest.mark.parametrize("table", ["credit", "gappy"])
def test_one_table_record_in_python_floats_gives_the_matrix_paths_bits(table, request):
    """Table models (categories, gaps) score one record in Python floats too (TableForm.one):
    the same prediction and probability bits as the matrix path, nulls and every category included."""
    service = request.getfixturevalue(table)
    rng = np.random.default_rng(5)
    base = score.sample_records(40, score.training_data_path(service), service.features, service.schema)
    records = []
    for record in base * 5:
        record = dict(record)
        for feature in service.schema.features:
            if feature.is_category and rng.random() < 0.3:
                record[feature.name] = str(rng.choice(feature.categories))
            elif not feature.is_category and rng.random() < 0.3 and record[feature.name] is not None:
                record[feature.name] = record[feature.name] * float(rng.choice([0.5, 2.0, 100.0, -3.0]))
            if feature.nullable and rng.random() < 0.2:
                record[feature.name] = None
        records.append(record)
    for record in records:
        assert service._score_one(record) is not None
        _, predictions, probabilities = service.predict_records([record])
        matrix_predictions, matrix_probabilities = service.predict(service.to_matrix([record]))
        assert predictions == matrix_predictions.tolist()
        assert np.float64(probabilities[0]).tobytes() == matrix_probabilities[0].tobytes()


def test_one_bad_table_record_gets_the_same_error_as_in_a_batch(credit):
    good = credit.metadata["input_example"]
    for change in ({"purpose": "boat"}, {"housing": 2}, {"age_in_years": None}, {"age_in_years": True}):
        with pytest.raises(RecordError) as one:
            credit.predict_records([{**good, **change}])
        with pytest.raises(RecordError) as batch:
            credit.score_payload({"records": [good, {**good, **change}]})
        assert str(one.value) == str(batch.value).replace("record 1,", "record 0,", 1)
