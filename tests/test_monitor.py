"""monitor.py: signals over collected traffic, the same numbers as the batch drift, exit codes."""

from __future__ import annotations

import csv
import datetime as dt
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import collector
import generate_raw_data
import monitor
import monitoring
import online_traffic
import pipeline_run_batch
import storage
from conftest import CREDIT_CSV
from registry import Registry

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
WINDOW = ["--start", "2026-11-30T00:00:00Z", "--end", "2026-12-01T00:00:00Z"]
DRIFTED = ("mean radius", "mean texture", "worst area")


@pytest.fixture()
def collected(tmp_path, monkeypatch, trained_registry):
    root = tmp_path / "collected"
    monkeypatch.setenv("DATA_COLLECTOR_DIR", str(root))
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(trained_registry))
    for var in monitoring.Thresholds.ENV.values():
        monkeypatch.delenv(var, raising=False)
    return root


def in_bounds_records(service, n: int) -> list[dict]:
    """Real rows of the training data inside the reference profile's bounds (clean traffic)."""
    from sklearn.datasets import load_breast_cancer

    profile = monitoring.load_profile(Registry().get(service.version).path)
    frame = load_breast_cancer(as_frame=True).frame[service.features]
    low = np.array([profile["columns"][f]["min"] for f in service.features])
    high = np.array([profile["columns"][f]["max"] for f in service.features])
    values = frame.to_numpy()
    keep = values[((values >= low) & (values <= high)).all(axis=1)]
    assert len(keep) >= n
    picked = keep[np.random.default_rng(3).choice(len(keep), n, replace=False)]
    return [dict(zip(service.features, map(float, row))) for row in picked]


def send(root: Path, service, records: list[dict], per_request: int = 1, deployment: str = "blue",
         when: datetime = NOW) -> None:
    """Collect records as the endpoint does: inputs as sent, outputs scored by the model."""
    c = collector.DataCollector(collector.LocalSink(root), "risk-endpoint", deployment, instance="test")
    for i in range(0, len(records), per_request):
        batch = records[i:i + per_request]
        outputs = [{"prediction": r["prediction"], "probability": r["probability"]} for r in service.score_records(batch)]
        c.collect(batch, outputs, request_id=f"r{i}", model_version=service.version,
                  when=when + timedelta(seconds=i))
    c.flush()


def drifted(records: list[dict], factor: float = 1.5) -> list[dict]:
    return [{k: v * factor if k in DRIFTED else v for k, v in r.items()} for r in records]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = monitor.main(["--endpoint", "azureml/online/endpoint.yml", "--deployment", "blue", *WINDOW, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def overall(rows: list[dict]) -> dict[str, str]:
    return {r["signal"]: r["status"] for r in rows if r["feature"] is None}


def test_clean_traffic_raises_no_alert(collected, service, capsys):
    send(collected, service, in_bounds_records(service, 200))
    code, out, err = run(capsys, "--json", "--fail-on-alert")
    assert code == 0, err
    rows = json.loads(out)
    assert overall(rows) == {"data_drift": "ok", "prediction_drift": "ok", "data_quality": "ok"}
    assert all(set(r) == {"signal", "feature", "metric", "value", "threshold", "status", "model_version"} for r in rows)
    nwd = [r for r in rows if r["signal"] == "data_drift" and r["metric"] == "normalized_wasserstein_distance"]
    assert [r["feature"] for r in nwd] == service.features
    assert all(r["threshold"] == 0.1 and r["model_version"] == service.version for r in nwd)
    quality = {(r["feature"], r["metric"]): r for r in rows if r["signal"] == "data_quality" and r["feature"]}
    assert len(quality) == 3 * len(service.features)
    assert all(r["value"] == 0.0 and r["threshold"] == 0.0 for r in quality.values())


def test_drifted_traffic_alerts_and_fail_on_alert_exits_1(collected, service, capsys):
    send(collected, service, drifted(in_bounds_records(service, 200)), per_request=4)
    code, out, err = run(capsys, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert overall(rows)["data_drift"] == "alert"
    alerting = {r["feature"] for r in rows if r["signal"] == "data_drift" and r["status"] == "alert" and r["feature"]}
    assert alerting == set(DRIFTED)
    assert {r["feature"] for r in rows if r["signal"] == "data_quality" and r["metric"] == "out_of_bounds_rate"
            and r["status"] == "alert"} <= set(DRIFTED)
    assert run(capsys, "--fail-on-alert")[0] == 1


def test_table_and_summary_lines(collected, service, capsys):
    send(collected, service, drifted(in_bounds_records(service, 200)))
    code, out, err = run(capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["signal", "feature", "metric", "value", "threshold", "status", "model"]
    assert ("risk-endpoint/blue, 2026-11-30T00:00:00Z to 2026-12-01T00:00:00Z: 200 requests, 200 records; "
            f"result kept as {collected}/modelMonitoring/risk-endpoint/blue/") in out
    summary = lines[-3:]
    assert summary[0].startswith("data_drift: alert (3 of 30 features alert: ")
    assert summary[1].startswith("prediction_drift: ")
    assert summary[2].startswith("data_quality: ")
    kept = online_traffic.latest_result(collector.LocalSink(collected), "risk-endpoint", "blue")
    assert kept["requests"] == 200 and kept["status"]["data_drift"] == "alert"
    assert kept["model_versions"] == [{"model_version": service.version, "requests": 200, "records": 200}]


def test_no_data_is_one_line_exit_0_or_1(collected, capsys):
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    assert out == (f"no collected data for risk-endpoint/blue from 2026-11-30T00:00:00Z to 2026-12-01T00:00:00Z "
                   f"in {collected}: nothing to monitor\n")
    assert run(capsys, "--fail-on-alert")[0] == 1


def test_the_window_excludes_other_hours_and_deployments(collected, service, capsys):
    records = drifted(in_bounds_records(service, 50))
    send(collected, service, records, deployment="green")
    send(collected, service, records, when=NOW - timedelta(days=2))
    code, out, err = run(capsys)
    assert code == 0 and out.startswith("no collected data for risk-endpoint/blue")


@pytest.mark.parametrize("argv, message", [
    (["--window", "1D"], "error: invalid window '1D': use an ISO 8601 duration such as P1D, P7D or PT6H"),
    (["--start", "yesterday"], "error: invalid --start 'yesterday': use an ISO 8601 time such as 2026-11-30T00:00Z"),
    (["--start", "2026-12-01T00:00Z", "--end", "2026-11-30T00:00Z"],
     "error: the window is empty: --start 2026-12-01T00:00:00Z is not before --end 2026-11-30T00:00:00Z"),
])
def test_bad_windows_are_one_line(collected, capsys, argv, message):
    code = monitor.main(["--deployment", "blue", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err == message + "\n"


def test_unknown_model_version_is_one_line(collected, service, capsys):
    c = collector.DataCollector(collector.LocalSink(collected), "risk-endpoint", "blue")
    c.collect([{"mean radius": 1.0}], [{"prediction": 0, "probability": 0.1}], request_id="x", model_version="v099",
              when=NOW)
    c.flush()
    code, out, err = run(capsys)
    assert code == 2 and err.splitlines()[-1] == ("error: cannot monitor model version v099: it has no usable reference profile (see the warning above)")


def test_nulls_and_type_errors(collected, service, capsys):
    records = in_bounds_records(service, 100)
    records[0]["mean radius"] = None
    records[1]["mean radius"] = "big"
    del records[2]["worst area"]
    send(collected, service, records[3:])
    c = collector.DataCollector(collector.LocalSink(collected), "risk-endpoint", "blue", instance="bad")
    c.collect(records[:3], None, request_id="bad", model_version=service.version, when=NOW)
    c.flush()
    code, out, err = run(capsys, "--json")
    quality = {(r["feature"], r["metric"]): r for r in json.loads(out) if r["signal"] == "data_quality"}
    assert quality[("mean radius", "null_value_rate")]["value"] == pytest.approx(1 / 100)
    assert quality[("mean radius", "data_type_error_rate")]["value"] == pytest.approx(1 / 100)
    assert quality[("worst area", "null_value_rate")]["value"] == pytest.approx(1 / 100)
    assert quality[("mean radius", "null_value_rate")]["status"] == "alert"
    assert quality[("mean texture", "null_value_rate")]["status"] == "ok"


@pytest.mark.parametrize("text, expected", [("P1D", timedelta(days=1)), ("P7D", timedelta(days=7)),
                                            ("PT6H", timedelta(hours=6)), ("P1W", timedelta(weeks=1)),
                                            ("P1DT12H30M", timedelta(days=1, hours=12, minutes=30))])
def test_durations(text, expected):
    assert monitor.parse_duration(text) == expected


def test_the_numbers_equal_the_batch_drift(collected, service, capsys, tmp_path, monkeypatch):
    """The same rows through the nightly batch and through collection give the same metrics."""
    for key in ("RAW_DIR", "CURATED_DIR", "LOGS_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    day = dt.date(2026, 11, 26)
    generate_raw_data.generate([day], rows=300, seed=5, drift=0.5, store=storage.LocalStorage())
    assert pipeline_run_batch.main(["--date", "2026-11-26"]) == 0
    capsys.readouterr()
    batch = {(r["signal"], r["feature"]): r for r in
             monitoring.read_drift_table(monitoring.drift_table_path(tmp_path / "logs_dir", "20261126"))}
    with open(tmp_path / "raw_dir" / "new_data_20261126.csv", newline="") as handle:
        records = [{f: float(row[f]) for f in service.features} for row in csv.DictReader(handle)]
    send(collected, service, records, per_request=7)
    code, out, err = run(capsys, "--json")
    assert code == 0, err
    online = {(r["signal"], r["feature"], r["metric"]): r["value"] for r in json.loads(out)}
    compared = 0
    for (signal, feature), row in batch.items():
        metrics = ["normalized_wasserstein_distance", "jensen_shannon_distance", "population_stability_index"]
        if signal == "data_drift":
            metrics += ["null_value_rate", "out_of_bounds_rate"]
        for metric in metrics:
            key = ("data_quality" if metric.endswith("_rate") else signal, feature, metric)
            assert online[key] == pytest.approx(row[metric], rel=1e-5, abs=1e-9), key
            compared += 1
    assert compared == 30 * 5 + 3


# ----- category features (a model trained on data/german_credit.csv) ------------------------------
@pytest.fixture()
def credit(tmp_path, monkeypatch, credit_registry):
    import pandas as pd
    from score import ModelService

    root = tmp_path / "collected"
    monkeypatch.setenv("DATA_COLLECTOR_DIR", str(root))
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(credit_registry))
    for var in monitoring.Thresholds.ENV.values():
        monkeypatch.delenv(var, raising=False)
    service = ModelService.from_registry(credit_registry)
    frame = pd.read_csv(CREDIT_CSV).drop(columns="creditability")
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
               for row in frame.sample(300, random_state=1).to_dict("records")]
    return root, service, records


def test_category_drift_alerts_by_jensen_shannon(credit, capsys):
    root, service, records = credit
    shifted = [dict(r, purpose="business") for r in records]
    send(root, service, shifted, per_request=5)
    code, out, err = run(capsys, "--json")
    assert code == 0, err
    rows = {(r["signal"], r["feature"], r["metric"]): r for r in json.loads(out)}
    purpose = rows[("data_drift", "purpose", "jensen_shannon_distance")]
    assert purpose["threshold"] == 0.1 and purpose["value"] > 0.1 and purpose["status"] == "alert"
    assert rows[("data_drift", "purpose", "pearsons_chi_squared_test")]["value"] < 1e-6
    assert ("data_drift", "purpose", "normalized_wasserstein_distance") not in rows
    housing = rows[("data_drift", "housing", "jensen_shannon_distance")]
    assert housing["status"] == "ok"
    number = rows[("data_drift", "age_in_years", "normalized_wasserstein_distance")]
    assert number["threshold"] == 0.1 and number["status"] == "ok"


def test_unknown_categories_and_wrong_types_are_data_quality(credit, capsys):
    root, service, records = credit
    send(root, service, records[:100])
    c = collector.DataCollector(collector.LocalSink(root), "risk-endpoint", "blue", instance="rejected")
    bad = [dict(records[0], purpose="spaceship"), dict(records[1], housing=3), dict(records[2], age_in_years="old")]
    c.collect(bad, None, request_id="rejected", model_version=service.version, when=NOW)
    c.flush()
    code, out, err = run(capsys, "--json")
    quality = {(r["feature"], r["metric"]): r for r in json.loads(out) if r["signal"] == "data_quality"}
    assert quality[("purpose", "out_of_bounds_rate")]["value"] == pytest.approx(1 / 103)
    assert quality[("purpose", "out_of_bounds_rate")]["status"] == "alert"
    assert quality[("housing", "data_type_error_rate")]["value"] == pytest.approx(1 / 103)
    assert quality[("housing", "null_value_rate")]["value"] == 0.0
    assert quality[("age_in_years", "data_type_error_rate")]["status"] == "alert"
    assert quality[("job", "out_of_bounds_rate")] == {**quality[("job", "out_of_bounds_rate")], "value": 0.0,
                                                      "status": "ok"}


def test_category_numbers_equal_the_batch_drift(credit, capsys, tmp_path, monkeypatch):
    import pandas as pd

    root, service, records = credit
    for key in ("RAW_DIR", "CURATED_DIR", "LOGS_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    (tmp_path / "raw_dir").mkdir()
    shifted = [dict(r, purpose="business") if i % 3 == 0 else r for i, r in enumerate(records)]
    pd.DataFrame(shifted).to_csv(tmp_path / "raw_dir" / "new_data_20261126.csv", index=False)
    assert pipeline_run_batch.main(["--date", "2026-11-26"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    batch = {(r["signal"], r["feature"]): r for r in
             monitoring.read_drift_table(monitoring.drift_table_path(tmp_path / "logs_dir", "20261126"))}
    send(root, service, shifted, per_request=9)
    code, out, err = run(capsys, "--json")
    assert code == 0, err
    online = {(r["signal"], r["feature"], r["metric"]): r["value"] for r in json.loads(out)}
    compared = 0
    for (signal, feature), row in batch.items():
        kind = row.get("type")
        metrics = (["jensen_shannon_distance", "population_stability_index", "pearsons_chi_squared_test"]
                   if kind == "category" else ["normalized_wasserstein_distance", "jensen_shannon_distance",
                                               "population_stability_index"])
        if signal == "data_drift":
            metrics += ["null_value_rate", "out_of_bounds_rate"]
        for metric in metrics:
            key = ("data_quality" if metric.endswith("_rate") else signal, feature, metric)
            assert online[key] == pytest.approx(row[metric], rel=1e-5, abs=1e-9), key
            compared += 1
    assert compared == len(service.features) * 5 + 3
    assert any(r.get("type") == "category" for r in batch.values())


def test_a_bad_endpoint_yaml_is_one_line(collected, tmp_path, capsys):
    missing = tmp_path / "nope.yml"
    assert monitor.main(["--endpoint", str(missing), "--deployment", "blue"]) == 2
    assert capsys.readouterr().err == f"error: {missing}: file not found\n"
    unnamed = tmp_path / "endpoint.yml"
    unnamed.write_text("auth_mode: key\n")
    assert monitor.main(["--endpoint", str(unnamed), "--deployment", "blue"]) == 2
    assert capsys.readouterr().err == f"error: {unnamed}: no endpoint `name:`\n"


def test_blob_storage_round_trip(collected, service, capsys, monkeypatch, blob_connection):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", blob_connection)
    sink = collector.BlobSink(blob_connection)
    c = collector.DataCollector(sink, "risk-endpoint", "blue", instance="test")
    records = drifted(in_bounds_records(service, 200))
    for i in range(0, 200, 10):
        batch = records[i:i + 10]
        outputs = [{"prediction": r["prediction"], "probability": r["probability"]} for r in service.score_records(batch)]
        c.collect(batch, outputs, request_id=f"r{i}", model_version=service.version, when=NOW + timedelta(seconds=i))
    assert c.flush() == 40
    code, out, err = run(capsys, "--storage", "blob", "--json", "--fail-on-alert")
    assert code == 1, err
    assert overall(json.loads(out))["data_drift"] == "alert"
    kept = online_traffic.latest_result(sink, "risk-endpoint", "blue")
    assert kept["requests"] == 20 and kept["records"] == 200 and kept["status"]["data_drift"] == "alert"
    assert not collected.exists()  # nothing on the local disk


@pytest.mark.parametrize("argv, message", [
    (["--endpoint", "azureml/online/endpoint.yml", "--deployment", "purple"],
     "error: --deployment 'purple' is not a deployment of endpoint risk-endpoint; its deployments: blue, green"),
    (["--deployment", "blue"], "error: --deployment 'blue' is not a deployment of the plain endpoint local-endpoint "
                               "(no --endpoint); its deployments: default"),
])
def test_an_unknown_deployment_is_a_usage_error(collected, capsys, argv, message):
    code = monitor.main([*argv, *WINDOW])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", message + "\n")
    assert not collected.exists() or not any(collected.rglob("*.json"))


def test_each_model_version_is_compared_with_its_own_profile(collected, service, trained_registry, capsys):
    from score import ModelService

    older = ModelService.from_registry(trained_registry, "v001")
    records = in_bounds_records(service, 120)
    send(collected, older, records[:60])
    send(collected, service, drifted(records[60:]), when=NOW + timedelta(hours=1))
    code, out, err = run(capsys, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert {(r["signal"], r["model_version"], r["status"]) for r in rows if r["feature"] is None} >= {
        ("data_drift", "v001", "ok"), ("data_drift", "v002", "alert")}
    kept = online_traffic.latest_result(collector.LocalSink(collected), "risk-endpoint", "blue")
    assert kept["model_versions"] == [{"model_version": "v001", "requests": 60, "records": 60},
                                      {"model_version": "v002", "requests": 60, "records": 60}]
    assert kept["status"]["data_drift"] == "alert"
