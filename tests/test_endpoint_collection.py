"""The endpoint's data collection: --collect-data, x-request-id, rejected inputs, SIGTERM, failures that cost no request."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import app_score_api
from conftest import ApiServer
from scripts.azurite import Azurite

PREFIX = "modelDataCollector/local-endpoint/default"


def lines(root: Path, collection: str) -> list[dict]:
    found = []
    for path in sorted((root / PREFIX / collection).rglob("*.jsonl")):
        found += [json.loads(x) for x in path.read_text().splitlines()]
    return found


@pytest.fixture()
def collected(tmp_path, monkeypatch):
    root = tmp_path / "collected"
    monkeypatch.setenv("DATA_COLLECTOR_DIR", str(root))
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    monkeypatch.delenv("SCORING_COLLECT_DATA", raising=False)
    return root


def client(registry: Path, collect: bool = True) -> TestClient:
    return TestClient(app_score_api.create_app(registry_dir=registry, collect_data=collect))


def test_requests_are_collected_with_their_request_ids(trained_registry, collected, sample_records):
    with client(trained_registry) as api:
        given = api.post("/predict", json={"records": sample_records[:3]}, headers={"x-request-id": "caller-42"})
        fresh = api.post("/predict", json={"records": sample_records[3:4]})
    assert given.status_code == fresh.status_code == 200
    assert given.headers["x-request-id"] == "caller-42"
    uuid.UUID(fresh.headers["x-request-id"])  # a new id when the caller sent none
    inputs, outputs = lines(collected, "model_inputs"), lines(collected, "model_outputs")
    assert [e["xrequestid"] for e in inputs] == [e["xrequestid"] for e in outputs] == ["caller-42",
                                                                                     fresh.headers["x-request-id"]]
    assert inputs[0]["data"] == sample_records[:3]
    assert outputs[0]["data"] == [{"prediction": r["prediction"], "probability": r["probability"]}
                                  for r in given.json()["results"]]
    for i, o in zip(inputs, outputs):
        assert i["correlationid"] == o["correlationid"] and len(i["data"]) == len(o["data"])
        assert i["modelversion"] == o["modelversion"] == given.headers["x-model-version"]
        assert i["source"] == "/onlineEndpoints/local-endpoint/deployments/default"


def test_rejected_records_are_collected_as_inputs_only(trained_registry, collected, sample_records):
    bad = [dict(sample_records[0], **{"mean radius": "big"})]
    with client(trained_registry) as api:
        answer = api.post("/predict", json={"records": bad})
    assert answer.status_code == 422 and answer.headers["x-request-id"]
    assert [e["data"] for e in lines(collected, "model_inputs")] == [bad]
    assert lines(collected, "model_outputs") == []


def test_nothing_is_collected_without_the_flag(trained_registry, collected, sample_records):
    with client(trained_registry, collect=False) as api:
        answer = api.post("/predict", json={"records": sample_records[:1]}, headers={"x-request-id": "r1"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "r1"
    assert not collected.exists()


def test_an_unusable_request_id_is_replaced(trained_registry, collected, sample_records):
    with client(trained_registry) as api:
        answer = api.post("/predict", json={"records": sample_records[:1]}, headers={"x-request-id": "x" * 500})
    assert answer.status_code == 200
    uuid.UUID(answer.headers["x-request-id"])


def test_a_read_only_collection_folder_fails_no_request(trained_registry, read_only_dir, monkeypatch, sample_records):
    monkeypatch.setenv("DATA_COLLECTOR_DIR", str(read_only_dir))
    with client(trained_registry) as api:
        codes = [api.post("/predict", json={"records": sample_records[:2]}).status_code for _ in range(30)]
        collection = api.app.state.collection
    assert codes == [200] * 30
    stats = collection.collectors["default"].stats()
    assert stats["sampled"] == 30 and stats["lost_model_inputs"] == stats["lost_model_outputs"] == 30
    assert stats["write_failures"] >= 2


def test_azurite_stopped_mid_traffic_fails_no_request(trained_registry, tmp_path, monkeypatch, sample_records):
    azurite = Azurite(tmp_path / "azurite", in_memory=True, log=tmp_path / "azurite.log")
    azurite.start()
    monkeypatch.setenv("STORAGE_BACKEND", "blob")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    try:
        with client(trained_registry) as api:
            collection = api.app.state.collection.collectors["default"]
            first = [api.post("/predict", json={"records": sample_records[:1]}).status_code for _ in range(20)]
            assert collection.flush() == 40
            azurite.stop()
            second = [api.post("/predict", json={"records": sample_records[:1]}).status_code for _ in range(20)]
    finally:
        azurite.stop()
    assert first + second == [200] * 40
    stats = collection.stats()
    assert stats["written_model_inputs"] == 20 and stats["lost_model_inputs"] == 20
    assert stats["write_failures"] >= 2


def test_sigterm_writes_what_is_queued(trained_registry, tmp_path, sample_records):
    root = tmp_path / "collected"
    server = ApiServer(trained_registry, tmp_path / "server.log", {"DATA_COLLECTOR_DIR": str(root)}, "--collect-data")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            ids = [http.post("/predict", json={"records": sample_records[:2]}).headers["x-request-id"]
                   for _ in range(25)]
        server.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (lifespan included), then re-raises the signal it caught.
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    assert "Application shutdown complete." in (tmp_path / "server.log").read_text()
    assert [e["xrequestid"] for e in lines(root, "model_inputs")] == ids
    assert [e["xrequestid"] for e in lines(root, "model_outputs")] == ids


# ----- an endpoint served from its YAML: each deployment's data_collector decides ---------------------
COLLECTING = {"collections": {"model_inputs": {"enabled": "True"}, "model_outputs": {"enabled": "True"}},
              "sampling_rate": 1.0, "rolling_rate": "Hour"}


def test_the_deployment_yaml_turns_collection_on(trained_registry, tmp_path, monkeypatch, sample_records):
    from test_endpoint_routing import deployment_yaml, metric, write_endpoint

    root = tmp_path / "collected"
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100, "green": 0},
                              blue=deployment_yaml("blue", "azureml:risk-classifier:1", data_collector=COLLECTING),
                              green=deployment_yaml("green", "azureml:risk-classifier:2"))
    for key, value in {"DATA_COLLECTOR_DIR": str(root), "LOCAL_REGISTRY_DIR": str(trained_registry),
                       "LOCAL_ENDPOINTS_DIR": str(tmp_path / "state"), "SCORING_ENDPOINT": str(endpoint)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    with TestClient(app_score_api.create_app()) as api:
        answers = [api.post("/predict", json={"records": sample_records[:2]},
                            headers={"azureml-model-deployment": name, "x-request-id": f"{name}-{i}"})
                   for i, name in enumerate(["blue", "blue", "green", "blue"])]
        assert set(api.app.state.collection.collectors) == {"blue"}
        api.app.state.collection.collectors["blue"].flush()
        page = api.get("/metrics").text
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.headers["x-request-id"] for a in answers] == ["blue-0", "blue-1", "green-2", "blue-3"]
    assert metric(page, "data_collector_requests_total", endpoint="risk-endpoint", deployment="blue",
                  outcome="sampled") == 3
    assert metric(page, "data_collector_lines_total", endpoint="risk-endpoint", deployment="blue",
                  collection="model_outputs", outcome="written") == 3
    events = []
    for path in sorted((root / "modelDataCollector").rglob("*.jsonl")):
        events += [(path.relative_to(root).parts[1:4], json.loads(x)) for x in path.read_text().splitlines()]
    assert {parts for parts, _ in events} == {("risk-endpoint", "blue", "model_inputs"),
                                              ("risk-endpoint", "blue", "model_outputs")}
    inputs = [e for parts, e in events if parts[2] == "model_inputs"]
    assert [e["xrequestid"] for e in inputs] == ["blue-0", "blue-1", "blue-3"]
    assert {e["modelversion"] for e in inputs} == {"v001"}
    assert {e["source"] for e in inputs} == {"/onlineEndpoints/risk-endpoint/deployments/blue"}


def test_a_sampling_rate_of_half_keeps_about_half_of_2000_requests(trained_registry, tmp_path, monkeypatch):
    from test_endpoint_routing import BODY, deployment_yaml, write_endpoint

    root = tmp_path / "collected"
    half = dict(COLLECTING, sampling_rate=0.5)
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100},
                              blue=deployment_yaml("blue", "azureml:risk-classifier:1", data_collector=half))
    for key, value in {"DATA_COLLECTOR_DIR": str(root), "LOCAL_REGISTRY_DIR": str(trained_registry),
                       "LOCAL_ENDPOINTS_DIR": str(tmp_path / "state"), "SCORING_ENDPOINT": str(endpoint)}.items():
        monkeypatch.setenv(key, value)
    with TestClient(app_score_api.create_app()) as api:
        codes = [api.post("/predict", content=BODY, headers={"content-type": "application/json"}).status_code
                 for _ in range(2000)]
    assert codes == [200] * 2000
    count = {c: sum(len(p.read_text().splitlines()) for p in (root / "modelDataCollector").rglob(f"{c}/**/*.jsonl"))
             for c in ("model_inputs", "model_outputs")}
    assert count["model_inputs"] == count["model_outputs"]
    assert abs(count["model_inputs"] / 2000 - 0.5) <= 0.05, count


def test_mirrored_copies_are_collected_on_the_mirror_deployment(trained_registry, tmp_path, monkeypatch):
    from test_endpoint_routing import BODY, deployment_yaml, write_endpoint

    root = tmp_path / "collected"
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100, "green": 0}, {"green": 50},
                              blue=deployment_yaml("blue", "azureml:risk-classifier:1", data_collector=COLLECTING),
                              green=deployment_yaml("green", "azureml:risk-classifier:2", data_collector=COLLECTING))
    for key, value in {"DATA_COLLECTOR_DIR": str(root), "LOCAL_REGISTRY_DIR": str(trained_registry),
                       "LOCAL_ENDPOINTS_DIR": str(tmp_path / "state"), "SCORING_ENDPOINT": str(endpoint)}.items():
        monkeypatch.setenv(key, value)
    with TestClient(app_score_api.create_app()) as api:
        answers = [api.post("/predict", content=BODY, headers={"content-type": "application/json"})
                   for _ in range(60)]
    assert {a.headers["azureml-model-deployment"] for a in answers} == {"blue"}

    def ids(deployment: str, collection: str) -> list[str]:
        folder = root / "modelDataCollector" / "risk-endpoint" / deployment / collection
        return [json.loads(x)["xrequestid"] for p in sorted(folder.rglob("*.jsonl")) for x in p.read_text().splitlines()]

    assert sorted(ids("blue", "model_inputs")) == sorted(a.headers["x-request-id"] for a in answers)
    mirrored = ids("green", "model_inputs")
    assert 0 < len(mirrored) < 60 and set(mirrored) <= set(ids("blue", "model_inputs"))
    assert sorted(ids("green", "model_outputs")) == sorted(mirrored)
