"""The online endpoint in process (TestClient runs the lifespan): contract, bad input, auth,
empty registry, pinning, hot reload and the request log."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app_score_api
from app_score_api import EXAMPLE_RECORD, NO_MODEL, app
from conftest import register_copy, register_tampered, run_script, wait_until
from registry import Registry
from score import ModelService


@pytest.fixture
def registry(tmp_path, trained_registry) -> Path:
    """A private copy of the two-version registry, free to add versions to."""
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    return root


@pytest.fixture
def serve(monkeypatch, registry):
    """serve(**env) -> TestClient context for `app` with these settings (registry copy by default)."""
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(registry))
    monkeypatch.setenv("SCORING_RELOAD_SECONDS", "0.05")

    def start(**env: str):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return TestClient(app)

    return start




def predict(client, payload, **headers):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload, allow_nan=True)
    return client.post("/predict", content=body, headers={"content-type": "application/json", **headers})


def body_with(record: dict, feature: str, token: str) -> str:
    """A one-record body whose `feature` is written as the raw JSON token `token`."""
    parts = [f"{json.dumps(k)}: {token if k == feature else json.dumps(v)}" for k, v in record.items()]
    return '{"records": [' + json.dumps(EXAMPLE_RECORD) + ", {" + ", ".join(parts) + "}]}"


# ----- the contract ----------------------------------------------------------------------
def test_predict_answers_results_and_version(serve, sample_records, registry):
    with serve() as client:
        response = predict(client, {"records": sample_records[:5]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-model-version"] == "v002"
    body = response.json()
    assert set(body) == {"results", "model_version"}
    assert body["model_version"] == "v002"
    assert [r["input"] for r in body["results"]] == sample_records[:5]
    assert all(set(r) == {"input", "prediction", "probability"} for r in body["results"])

    # Same numbers as the registered pipeline itself.
    pipeline = ModelService.from_registry(registry, 2).model
    features = list(sample_records[0])
    matrix = np.array([[r[f] for f in features] for r in sample_records[:5]])
    expected = pipeline.predict_proba(matrix)[:, 1]
    assert np.allclose([r["probability"] for r in body["results"]], expected, rtol=0, atol=1e-9)
    assert [r["prediction"] for r in body["results"]] == pipeline.predict(matrix).tolist()


def test_azure_data_form_is_accepted(serve, sample_records):
    with serve() as client:
        features = list(sample_records[0])
        response = predict(client, {"data": [[r[f] for f in features] for r in sample_records[:2]]})
    assert response.status_code == 200
    assert [r["input"] for r in response.json()["results"]] == sample_records[:2]


def test_extra_fields_are_echoed(serve):
    record = {**EXAMPLE_RECORD, "id": "patient-7", "big": 2**70}
    with serve() as client:
        response = predict(client, {"records": [record]})
    assert response.status_code == 200
    assert response.json()["results"][0]["input"] == record


def test_records_are_echoed_as_sent(serve):
    record = json.dumps({**EXAMPLE_RECORD, "note": "café"}).replace('"mean area": 1001.0', '"mean area" : 1.001e3')
    second = json.dumps(EXAMPLE_RECORD)
    body = '{"records": [' + record + ", " + second + "]}"
    with serve() as client:
        response = predict(client, body)
        assert response.status_code == 200
        assert record.encode() in response.content  # the record's own text, not re-encoded
        inputs = [r["input"] for r in response.json()["results"]]
        assert inputs == [json.loads(record), EXAMPLE_RECORD]
        # Duplicate keys: the last "records" wins for scoring and for the echo alike.
        twice = '{"records": [' + second + '], "records": [' + record + "]}"
        assert [r["input"] for r in predict(client, twice).json()["results"]] == [json.loads(record)]
        # A NaN in an extra field is no feature: the record scores, the echo says null.
        odd = predict(client, '{"records": [' + record[:-1] + ', "extra": NaN}]}')
        assert odd.status_code == 200
        assert odd.json()["results"][0]["input"]["extra"] is None


def test_health_ready_model(serve, registry):
    with serve() as client:
        assert client.get("/health").json() == {"status": "alive"}
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "model_version": "v002"}
        info = client.get("/model").json()
    assert info["model_version"] == "v002"
    assert info["pinned"] is False
    assert info["metadata"]["features"] == list(EXAMPLE_RECORD)
    assert info["metrics"] == Registry(registry).get(2).metrics


def test_docs_are_served_offline_with_real_example(serve):
    with serve() as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert "http://" not in page.text and "https://" not in page.text
        for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css",
                      "/docs-assets/favicon-32x32.png"):
            assert asset in page.text
            assert client.get(asset).status_code == 200
        schema = client.get("/openapi.json").json()
        served_features = client.get("/model").json()["metadata"]["features"]
        example = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
        # The documented example is a real record of the served model, and it scores.
        assert list(example["records"][0]) == served_features
        assert predict(client, example).status_code == 200
    components = schema["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "PredictResult", "ErrorResponse"} <= set(components)
    post = schema["paths"]["/predict"]["post"]
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictResponse")
    assert {"400", "401", "413", "422", "503"} <= set(post["responses"])


# ----- bad input -------------------------------------------------------------------------
MALFORMED = [b"{bad", b"", b'{"records": [', b"\xff\xfe"]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_json_is_400(serve, body):
    with serve() as client:
        response = predict(client, body)
        assert response.status_code == 400
        assert response.json()["detail"].startswith("request body is not valid JSON")
        assert predict(client, {"records": [EXAMPLE_RECORD]}).status_code == 200


@pytest.mark.parametrize("body, detail", [
    (b"[1, 2]", "request body must be a JSON object"),
    (b'"text"', "request body must be a JSON object"),
    (b"{}", 'request body must have "records"'),
    (b'{"records": []}', "no records to score: the list is empty"),
    (b'{"records": {"a": 1}}', '"records" must be a list of records, got dict'),
    (b'{"records": null}', '"records" must be a list of records, got NoneType'),
])
def test_bad_body_is_422(serve, body, detail):
    with serve() as client:
        response = predict(client, body)
        assert response.status_code == 422
        assert detail in response.json()["detail"]
        assert predict(client, {"records": [EXAMPLE_RECORD]}).status_code == 200


def test_record_not_an_object_is_422_with_index(serve):
    with serve() as client:
        response = predict(client, {"records": [EXAMPLE_RECORD, 5]})
    assert response.status_code == 422
    assert response.json() == {"detail": "record 1: expected a JSON object, got int", "record": 1, "feature": None}


def test_missing_feature_is_422_naming_record_and_feature(serve):
    record = {k: v for k, v in EXAMPLE_RECORD.items() if k != "mean area"}
    with serve() as client:
        response = predict(client, {"records": [EXAMPLE_RECORD, record]})
    assert response.status_code == 422
    assert response.json() == {"detail": "record 1, feature 'mean area': missing feature",
                               "record": 1, "feature": "mean area"}


@pytest.mark.parametrize("token, shown", [
    ("null", "null"),
    ('"12.5"', 'string "12.5"'),
    ("true", "boolean true"),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-Infinity", "-Infinity"),
    ("1e999", "Infinity"),
])
def test_bad_value_is_422_naming_record_and_feature(serve, token, shown):
    with serve() as client:
        response = predict(client, body_with(EXAMPLE_RECORD, "worst area", token))
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["record"] == 1 and body["feature"] == "worst area"
        assert body["detail"].startswith("record 1, feature 'worst area': expected a")
        assert shown in body["detail"]
        assert predict(client, {"records": [EXAMPLE_RECORD]}).status_code == 200


def test_record_limit_default_accepts_10000_and_rejects_10001(serve):
    with serve() as client:
        ok = predict(client, {"records": [EXAMPLE_RECORD] * 10_000})
        assert ok.status_code == 200
        assert len(ok.json()["results"]) == 10_000
        over = predict(client, {"records": [EXAMPLE_RECORD] * 10_001})
        assert over.status_code == 413
        assert over.json()["detail"] == "too many records: 10001 (at most 10000 per request; split the batch)"


def test_record_limit_is_configurable(serve):
    with serve(SCORING_MAX_RECORDS="3") as client:
        assert predict(client, {"records": [EXAMPLE_RECORD] * 3}).status_code == 200
        assert predict(client, {"records": [EXAMPLE_RECORD] * 4}).status_code == 413
        # A body far larger than the limit allows is refused before it is parsed.
        huge = b'{"records": [' + b" " * (2 << 20) + b"]}"
        response = predict(client, huge)
        assert response.status_code == 413
        assert response.json()["detail"].startswith("request body too large")


def test_wrong_method_and_route(serve):
    with serve() as client:
        assert client.get("/predict").status_code == 405
        assert client.post("/score", json={}).status_code == 404


# ----- auth ------------------------------------------------------------------------------
def test_key_auth(serve, caplog):
    key = "k-7f3a-secret-value"
    caplog.set_level(logging.INFO, logger="app_score_api")
    with serve(SCORING_API_KEY=key) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {key}"},
                        {"authorization": key}):
            response = predict(client, {"records": [EXAMPLE_RECORD]}, **headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in response.json()["detail"]
        assert client.get("/model").status_code == 401
        good = {"authorization": f"Bearer {key}"}
        assert predict(client, {"records": [EXAMPLE_RECORD]}, **good).status_code == 200
        assert client.get("/model", headers=good).status_code == 200
        # Only the health routes stay open; the docs and the schema need the key too.
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        for path in ("/docs", "/openapi.json", "/docs-assets/swagger-ui.css"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers=good).status_code == 200
    assert "POST /predict 401" in caplog.text and "POST /predict 200" in caplog.text
    assert key not in caplog.text


# ----- empty registry, pinning, reload ---------------------------------------------------
def test_empty_registry_starts_and_answers_503_until_a_model_arrives(serve, tmp_path, registry):
    empty = tmp_path / "empty"
    with serve(LOCAL_REGISTRY_DIR=str(empty)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "detail": NO_MODEL}
        response = predict(client, {"records": [EXAMPLE_RECORD]})
        assert response.status_code == 503
        assert response.json() == {"detail": "no model registered: run python train.py"}
        assert client.get("/model").status_code == 503
        # The first registered version is picked up without a restart.
        shutil.copytree(registry / "model_v001", empty / "model_v001")
        wait_until(lambda: client.get("/ready").status_code == 200, 20, "/ready to answer 200")
        assert predict(client, {"records": [EXAMPLE_RECORD]}).json()["model_version"] == "v001"


def test_pinned_version_is_served_and_kept(serve, registry):
    with serve(MODEL_VERSION="1") as client:
        assert predict(client, {"records": [EXAMPLE_RECORD]}).json()["model_version"] == "v001"
        assert client.get("/model").json()["pinned"] is True
        register_copy(registry, source=2)
        client.app.state.serving.refresh()
        assert predict(client, {"records": [EXAMPLE_RECORD]}).headers["x-model-version"] == "v001"


def test_pinned_version_missing_is_503(serve):
    with serve(MODEL_VERSION="v009") as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith("model version v009 not found")
        assert predict(client, {"records": [EXAMPLE_RECORD]}).status_code == 503


def test_pinned_version_failing_its_checksum_is_503(serve, registry):
    number = register_tampered(registry)
    with serve(MODEL_VERSION=str(number)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "has been modified" in ready.json()["detail"]
        assert "refusing to load it" in predict(client, {"records": [EXAMPLE_RECORD]}).json()["detail"]
        assert client.app.state.serving.deployments["default"].rejected == {number}


def test_new_version_is_served_without_restart(serve, registry):
    with serve() as client:
        assert client.get("/ready").json()["model_version"] == "v002"
        register_copy(registry)
        wait_until(lambda: client.get("/ready").json()["model_version"] == "v003", 20, "v003 to be served")
        response = predict(client, {"records": [EXAMPLE_RECORD]})
        assert response.json()["model_version"] == "v003"
        assert response.headers["x-model-version"] == "v003"


def test_version_failing_its_checksum_is_not_served(serve, registry, caplog):
    caplog.set_level(logging.INFO, logger="app_score_api")
    with serve() as client:
        register_tampered(registry)
        deployment = client.app.state.serving.deployments["default"]
        wait_until(lambda: 3 in deployment.rejected, 20, "v003 to be rejected")
        assert client.get("/ready").json() == {"status": "ready", "model_version": "v002"}
        assert predict(client, {"records": [EXAMPLE_RECORD]}).json()["model_version"] == "v002"
        # A later good version is still picked up.
        register_copy(registry)
        wait_until(lambda: client.get("/ready").json()["model_version"] == "v004", 20, "v004 to be served")
    assert "not serving v003" in caplog.text and "has been modified" in caplog.text


def test_one_log_line_per_request(serve, caplog):
    caplog.set_level(logging.INFO, logger="app_score_api")
    with serve() as client:
        caplog.clear()
        predict(client, {"records": [EXAMPLE_RECORD] * 2})
        predict(client, b"{bad")
        client.get("/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "app_score_api"]
    assert len(lines) == 3
    assert lines[0].startswith("POST /predict 200 records=2 model=v002 ")
    assert lines[1].startswith("POST /predict 400 records=- model=v002 ")
    assert lines[2].startswith("GET /health 200 records=- model=- ")
    assert all(line.endswith("ms") for line in lines)


# ----- the command line ------------------------------------------------------------------
def test_help_and_bad_flags():
    result = run_script("app_score_api.py", "--help")
    assert result.returncode == 0 and "--model-version" in result.stdout
    bad = run_script("app_score_api.py", "--model-version", "newest")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: invalid model version 'newest': use 'latest', a number like 2, or v002"]


def test_cli_passes_its_settings_to_the_workers(serve, monkeypatch, registry):
    import endpoint_workers

    calls = []
    monkeypatch.setattr(endpoint_workers, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    for name in ("MODEL_VERSION", "SCORING_MAX_RECORDS", "SCORING_RELOAD_SECONDS"):
        monkeypatch.setenv(name, "")  # main() sets these; monkeypatch restores them afterwards
    assert app_score_api.main(["--port", "8765", "--workers", "3", "--model-version", "v001",
                               "--max-records", "2", "--registry-dir", str(registry)]) == 0
    (target, kwargs), = calls
    assert target == "app_score_api:app"
    assert (kwargs["host"], kwargs["port"], kwargs["workers"], kwargs["access_log"]) == ("127.0.0.1", 8765, 3, False)
    # Each worker builds its app from the environment the CLI set.
    with TestClient(app) as client:
        response = predict(client, {"records": [EXAMPLE_RECORD] * 2})
        assert response.json()["model_version"] == "v001"
        assert client.get("/model").json()["pinned"] is True
        assert predict(client, {"records": [EXAMPLE_RECORD] * 3}).status_code == 413


def test_env_settings_are_checked(serve, monkeypatch):
    monkeypatch.setenv("SCORING_MAX_RECORDS", "lots")
    with pytest.raises(RuntimeError, match="SCORING_MAX_RECORDS must be a whole number"):
        with serve():
            pass


def test_import_touches_nothing():
    # The module-level app has no state until its lifespan runs.
    assert not hasattr(app_score_api.create_app().state, "serving")


# ----- the layout's contracts: one guard, one settings object, the serving state ------------
def test_with_a_key_every_path_but_health_and_ready_needs_it(serve):
    """The guard fails closed: a route added later needs the key without anyone remembering to ask."""
    key = "k-91d0-secret"
    with serve(SCORING_API_KEY=key) as client:
        good = {"authorization": f"Bearer {key}"}
        for method, path in (("GET", "/score"), ("GET", "/predict"), ("POST", "/model"), ("GET", "/")):
            response = client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/score", headers=good).status_code == 404
        assert client.get("/predict", headers=good).status_code == 405
    with serve(SCORING_API_KEY="") as client:  # no key (empty is unset): FastAPI's own 404 and 405
        assert client.get("/score").status_code == 404
        assert client.get("/predict").status_code == 405


def test_settings_travel_to_workers_through_their_environment_names(monkeypatch, tmp_path):
    import endpoint_settings

    for name in ("SCORING_API_KEY", "MODEL_VERSION", "SCORING_MAX_RECORDS", "SCORING_RELOAD_SECONDS",
                 "SCORING_COLLECT_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(tmp_path / "reg"))
    defaults = endpoint_settings.load()
    assert (defaults.api_key, defaults.model_version, defaults.max_records, defaults.reload_seconds,
            defaults.registry_dir) == (None, "latest", 10_000, 1.0, tmp_path / "reg")
    chosen = endpoint_settings.load(model_version="v001", max_records=7, reload_seconds=0.5,
                                    registry_dir=tmp_path / "other")
    env = chosen.to_env()
    assert env == {"MODEL_VERSION": "v001", "SCORING_MAX_RECORDS": "7", "SCORING_RELOAD_SECONDS": "0.5",
                   "LOCAL_REGISTRY_DIR": str(tmp_path / "other"), "SCORING_COLLECT_DATA": "false"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert endpoint_settings.load() == chosen  # what a worker reads back is what the CLI chose
    monkeypatch.setenv("SCORING_API_KEY", "k-secret-77")
    keyed = endpoint_settings.load()
    assert "k-secret-77" not in repr(keyed) and "k-secret-77" not in str(keyed)
    assert keyed.to_env()["SCORING_API_KEY"] == "k-secret-77"
    monkeypatch.setenv("SCORING_RELOAD_SECONDS", "0")
    with pytest.raises(RuntimeError, match=r"^SCORING_RELOAD_SECONDS must be a positive number of seconds, got '0'$"):
        endpoint_settings.load()


def test_cli_flags_default_to_the_environment(monkeypatch):
    import endpoint_settings

    monkeypatch.setenv("SCORING_MAX_RECORDS", "12")
    monkeypatch.setenv("SCORING_RELOAD_SECONDS", "")  # empty counts as unset
    args = app_score_api.build_parser(endpoint_settings.load()).parse_args([])
    assert (args.max_records, args.reload_seconds) == (12, 1.0)
    assert app_score_api.build_parser(endpoint_settings.load()).parse_args(["--max-records", "3"]).max_records == 3


def test_a_request_keeps_the_service_it_was_given(registry):
    from serving import Deployment, Endpoint

    endpoint = Endpoint([Deployment("default", Registry(registry), "latest")], max_records=10, reload_seconds=60)
    endpoint.start()
    deployment, service = endpoint.service_for(None)
    assert (deployment.name, service.version) == ("default", "v002")
    register_copy(registry)
    endpoint.refresh()
    assert service.version == "v002"  # the request that took it finishes on it
    assert endpoint.service_for(None)[1].version == "v003"
    assert endpoint.deployments["default"] is deployment


# ----- the served version's schema: categories, nulls, hot swap ---------------------------------
def _register_from(root: Path, source_registry: Path, source: int = 1) -> int:
    """Register into `root` a copy of a version of another registry (fast: no training)."""
    src = Registry(source_registry).get(source)

    def write(staging: Path) -> None:
        for name in ("model.joblib", "metrics.json", "reference_profile.json"):
            shutil.copy(src.path / name, staging / name)

    metadata = {k: v for k, v in src.metadata.items() if k not in {"version", "registered_at", "model_sha256"}}
    return Registry(root).register(write, metadata).version


def _predict_schema(client) -> tuple[dict, dict]:
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["PredictRequest"]
    example = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    return request, example


def test_openapi_and_model_follow_the_credit_schema(serve, monkeypatch, credit_registry):
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(credit_registry))
    with serve() as client:
        request, example = _predict_schema(client)
        record = request["properties"]["records"]["items"]
        assert record["required"] == client.get("/model").json()["metadata"]["features"]
        assert record["properties"]["housing"] == {"type": "string", "enum": ["for free", "own", "rent"]}
        assert record["properties"]["age_in_years"] == {"type": "number"}
        assert example == request["examples"][0]
        assert example["records"][0]["housing"] in ("for free", "own", "rent")
        scored = predict(client, example)
        assert scored.status_code == 200 and 0 < scored.json()["results"][0]["probability"] < 1
        info = client.get("/model").json()
        assert info["positive_class"] == "bad" and len(info["feature_schema"]) == 20
        assert info["feature_schema"][0]["type"] == "category"
        bad = predict(client, {"records": [{**example["records"][0], "housing": "boat"}]})
        assert bad.status_code == 422 and bad.json() == {
            "detail": "record 0, feature 'housing': unknown category string \"boat\"; expected one of "
                      "\"for free\", \"own\", \"rent\"", "record": 0, "feature": "housing"}
        null = predict(client, {"records": [{**example["records"][0], "age_in_years": None}]})
        assert null.status_code == 422 and null.json()["feature"] == "age_in_years"


def test_nullable_features_accept_null_in_schema_and_scoring(serve, monkeypatch, gappy_registry):
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(gappy_registry))
    with serve() as client:
        request, _ = _predict_schema(client)
        props = request["properties"]["records"]["items"]["properties"]
        assert props["income"] == {"type": ["number", "null"]}
        assert props["channel"] == {"type": ["string", "null"], "enum": ["branch", "phone", "web", None]}
        assert props["grade"] == {"type": "string", "enum": ["1", "2", "3"]}
        answer = predict(client, {"records": [{"income": None, "region": "west", "channel": None, "grade": "2"}]})
        assert answer.status_code == 200 and answer.json()["model_version"] == "v001"


def test_hot_swap_to_another_schema_updates_openapi(serve, registry, credit_registry):
    with serve() as client:
        request, example = _predict_schema(client)
        assert request["properties"]["records"]["items"]["properties"]["mean radius"] == {"type": "number"}
        assert "purpose" not in example["records"][0]
        _register_from(registry, credit_registry)
        wait_until(lambda: client.get("/ready").json().get("model_version") == "v003", 30, "v003 to be served")
        request, example = _predict_schema(client)
        props = request["properties"]["records"]["items"]["properties"]
        assert props["purpose"]["type"] == "string" and "radio/television" in props["purpose"]["enum"]
        assert "mean radius" not in props and predict(client, example).status_code == 200
        assert request["properties"]["records"]["items"]["title"] == "Record (v003)"


def test_predict_is_answered_ahead_of_the_router_and_still_documented(serve, monkeypatch, caplog):
    """POST /predict is served by endpoint_http.DirectRoutes: the route keeps its OpenAPI entry,
    other methods still get the router's 405, the key is still checked first, and a failure inside
    the handler is a logged 500 whose body shows no traceback."""
    import endpoint_predict

    with serve() as client:
        assert "post" in client.get("/openapi.json").json()["paths"]["/predict"]
        assert client.get("/predict").status_code == 405
        assert predict(client, {"records": [EXAMPLE_RECORD]}).status_code == 200
    with serve(SCORING_API_KEY="k-2f4") as client:
        assert predict(client, {"records": [EXAMPLE_RECORD]}).status_code == 401
        assert predict(client, {"records": [EXAMPLE_RECORD]}, authorization="Bearer k-2f4").status_code == 200

    def broken(*args, **kwargs):
        raise RuntimeError("scorer blew up")

    monkeypatch.setattr(endpoint_predict, "score", broken)
    monkeypatch.delenv("SCORING_API_KEY")
    caplog.set_level(logging.INFO, logger="app_score_api")
    with TestClient(app, raise_server_exceptions=False) as client:  # the registry and settings of serve()
        response = predict(client, {"records": [EXAMPLE_RECORD]})
    assert response.status_code == 500 and "Traceback" not in response.text and "blew up" not in response.text
    assert "POST /predict 500 records=- model=v002" in caplog.text
