"""score.py, unmodified, under Azure ML's own inference server (azureml-inference-server-http).

The server lives in its own virtual environment, .venv-azureml (`make install-azureml`,
which `make test` runs first), because it pins older pydantic and opentelemetry releases
than the project's. A registered version is laid out as Azure mounts it
($AZUREML_MODEL_DIR/model_v002/...), the server runs score.py as its entry script on a
free loopback port, and its answers are compared with ModelService's own for the same
records.
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, free_port, stop_process, wait_until

AZUREML_PYTHON = Path(os.environ.get("AZUREML_SERVER_PYTHON", ROOT / ".venv-azureml" / "bin" / "python"))
LAUNCHER = ROOT / "scripts" / "azmlinfsrv_local.py"
READY_TIMEOUT = 90.0


def _log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def _serve(model_dir: Path, log_path: Path):
    """azmlinfsrv running score.py for `model_dir` on 127.0.0.1:<free port>; yields its base URL."""
    assert AZUREML_PYTHON.is_file(), (
        f"{AZUREML_PYTHON} is missing: run `make install-azureml` (make test does it)"
    )
    port = free_port()
    env = {
        **os.environ,
        "AZUREML_MODEL_DIR": str(model_dir),
        # score.py imports settings and registry from the project root, as Azure's code folder.
        "PYTHONPATH": str(ROOT),
        "AML_APP_ROOT": str(ROOT),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(AZUREML_PYTHON), str(LAUNCHER), "--host", "127.0.0.1",
             "--entry_script", "score.py", "--model_dir", str(model_dir), "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"azmlinfsrv exited with {proc.returncode}:\n{_log_tail(log_path)}")
        try:
            return httpx.get(url + "/", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, READY_TIMEOUT, f"azmlinfsrv to answer 200 on {url}/", detail=lambda: _log_tail(log_path),
                   interval=0.1)
        yield {"url": url, "proc": proc, "log": log_path, "port": port}
    finally:
        stop_process(proc, timeout=20)


@pytest.fixture(scope="module")
def server(azureml_model_dir, tmp_path_factory):
    yield from _serve(azureml_model_dir, tmp_path_factory.mktemp("azmlinfsrv") / "server.log")


def _score(server, body) -> httpx.Response:
    return httpx.post(server["url"] + "/score", json=body, timeout=30.0)


def test_health_probe_answers_healthy(server):
    answer = httpx.get(server["url"] + "/", timeout=5.0)
    assert answer.status_code == 200
    assert answer.text.strip() == "Healthy"
    assert answer.headers["x-ms-server-version"].startswith("azmlinfsrv/1.5.1")


def test_server_is_bound_to_loopback_only(server):
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    port_hex = f"{server['port']:04X}"
    local = {line.split()[1] for line in listening if line.split()[3] == "0A"}  # 0A = LISTEN
    assert f"0100007F:{port_hex}" in local  # 127.0.0.1
    assert f"00000000:{port_hex}" not in local  # not 0.0.0.0


def test_records_payload_matches_model_service(server, service, sample_records):
    records = sample_records[:8]
    answer = _score(server, {"records": records})
    assert answer.status_code == 200, answer.text
    assert answer.json() == service.score_payload({"records": records})
    assert answer.json()["model_version"] == service.version


def test_data_payload_of_records_matches(server, service, sample_records):
    records = sample_records[:5]
    answer = _score(server, {"data": records})
    assert answer.status_code == 200, answer.text
    assert answer.json() == service.score_payload({"records": records})


def test_data_payload_of_value_lists_matches(server, service, sample_records):
    records = sample_records[:5]
    rows = [[record[name] for name in service.features] for record in records]
    answer = _score(server, {"data": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == service.score_payload({"data": rows})
    # The same numbers as scoring the records by name.
    assert body == service.score_payload({"records": records})


def test_bad_record_is_a_400_naming_record_and_feature(server, service, sample_records):
    records = copy.deepcopy(sample_records[:3])
    feature = service.features[4]
    records[1][feature] = "abc"
    answer = _score(server, {"records": records})
    assert answer.status_code == 400
    assert answer.json() == {"message": f"record 1, feature {feature!r}: expected a number, got string \"abc\""}
    assert answer.headers["x-ms-run-function-failed"] == "False"


def test_missing_feature_and_bad_bodies_get_clear_messages(server, service, sample_records):
    record = dict(sample_records[0])
    missing = service.features[-1]
    del record[missing]
    answer = _score(server, {"data": [record]})
    assert answer.status_code == 400
    assert answer.json()["message"] == f"record 0, feature {missing!r}: missing feature"

    short = _score(server, {"data": [[1.0, 2.0]]})
    assert short.status_code == 400
    assert short.json()["message"] == f"record 0: expected {len(service.features)} values in feature order, got 2"

    empty = _score(server, {"records": []})
    assert empty.status_code == 400
    assert empty.json()["message"] == "no records to score: the list is empty"

    not_json = httpx.post(server["url"] + "/score", content=b"{not json", timeout=10.0,
                          headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["message"].startswith("request body is not valid JSON")


def test_server_keeps_serving_after_errors(server, service, sample_records):
    assert _score(server, {"records": [{"x": 1}]}).status_code == 400
    answer = _score(server, {"records": sample_records[:1]})
    assert answer.status_code == 200
    assert answer.json() == service.score_payload({"records": sample_records[:1]})


def test_readme_sample_request_scores(server, service):
    """azureml/sample-request.json, the body the README's `az ml online-endpoint invoke` sends."""
    import json

    body = json.loads((ROOT / "azureml" / "sample-request.json").read_text())
    answer = _score(server, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == service.score_payload(body)
    assert len(answer.json()["results"]) == len(body["data"]) == 2


# ----- the same answers as the project's own endpoint (app_score_api.py) ------------------
@pytest.fixture(scope="module")
def fastapi_client(trained_registry, service):
    """app_score_api serving the same version, in process (lifespan runs)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note about its httpx client
        from fastapi.testclient import TestClient

    import app_score_api

    app = app_score_api.create_app(registry_dir=trained_registry, model_version=service.version)
    with TestClient(app) as client:
        yield client


def test_same_results_as_the_fastapi_endpoint(server, fastapi_client, service, sample_records):
    records = sample_records[:10]
    rows = [[record[name] for name in service.features] for record in records]
    api = fastapi_client.post("/predict", json={"records": records})
    assert api.status_code == 200, api.text
    assert api.json()["model_version"] == service.version
    for body in ({"records": records}, {"data": records}, {"data": rows}):
        azure = _score(server, body)
        assert azure.status_code == 200, azure.text
        assert azure.json() == api.json(), f"body shape {list(body)} differs"


def test_bad_record_same_message_as_the_fastapi_endpoint(server, fastapi_client, service, sample_records):
    records = copy.deepcopy(sample_records[:4])
    records[2][service.features[7]] = None
    api = fastapi_client.post("/predict", json={"records": records})
    azure = _score(server, {"records": records})
    assert (api.status_code, azure.status_code) == (422, 400)
    assert azure.json()["message"] == api.json()["detail"] == (
        f"record 2, feature {service.features[7]!r}: expected a number, got null")
    assert (api.json()["record"], api.json()["feature"]) == (2, service.features[7])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the scorer computes the overflow before refusing it
def test_overflowing_record_same_message_as_the_fastapi_endpoint(server, fastapi_client, service, sample_records):
    """Finite values that overflow inside the model are the caller's error on both servers."""
    records = copy.deepcopy(sample_records[:3])
    records[1] = {name: 1e306 for name in service.features}
    api = fastapi_client.post("/predict", json={"records": records})
    azure = _score(server, {"records": records})
    assert (api.status_code, azure.status_code) == (422, 400)
    assert azure.json()["message"] == api.json()["detail"]
    assert azure.json()["message"].startswith("record 1: values too large for the model to score")


def test_isolated_venv_holds_exactly_the_pinned_versions():
    """.venv-azureml is what azureml/environments/score-conda.yml asks Azure to build."""
    import json

    pins = dict(line.split("==") for line in (ROOT / "requirements-azureml.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    probe = ("import importlib.metadata as m, json, sys; "
             "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    run = subprocess.run([str(AZUREML_PYTHON), "-c", probe, *pins], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == pins


# ----- a table model: categories as text, the same records as the API ----------------------------
@pytest.fixture(scope="module")
def credit_server(credit_registry, tmp_path_factory):
    import shutil

    model_dir = tmp_path_factory.mktemp("credit-model-dir")
    shutil.copytree(credit_registry / "model_v001", model_dir / "model_v001")
    yield from _serve(model_dir, tmp_path_factory.mktemp("azmlinfsrv-credit") / "server.log")


def test_credit_records_score_as_model_service_and_bad_categories_are_400(credit_server, credit_registry):
    from score import ModelService

    service = ModelService.from_registry(credit_registry)
    example = service.metadata["input_example"]
    records = [example, {**example, "housing": "rent", "age_in_years": 30}]
    answer = _score(credit_server, {"data": records})
    assert answer.status_code == 200, answer.text
    assert answer.json() == service.score_payload({"data": records})
    bad = _score(credit_server, {"data": [example, {**example, "purpose": "yacht"}]})
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("record 1, feature 'purpose': unknown category string \"yacht\"; expected one of")
