"""Security of the online endpoint: the API key guards every route but health, and is never logged.

Every route the app has (read from the app itself, so a new route is covered the day it is
added) is called with no key, a wrong key and malformed Authorization headers: all 401, except
the liveness and readiness routes. Static files cannot be reached outside their folder, and a
version name given to the server cannot point outside the registry.
"""

from __future__ import annotations

import logging
import shutil

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

import reliability_figures as figures
from app_score_api import EXAMPLE_RECORD, create_app
from conftest import run_script, wait_until

KEY = "sec-key-91c4e07a55"
OPEN_ROUTES = {"/health", "/ready"}
BAD_HEADERS: dict[str, dict] = {
    "missing": {},
    "wrong key": {"authorization": "Bearer not-the-key"},
    "key with a suffix": {"authorization": f"Bearer {KEY}x"},
    "key prefix only": {"authorization": f"Bearer {KEY[:-1]}"},
    "no scheme": {"authorization": KEY},
    "Basic scheme": {"authorization": f"Basic {KEY}"},
    "scheme only": {"authorization": "Bearer"},
    "empty": {"authorization": ""},
    "two keys": {"authorization": f"Bearer {KEY} {KEY}"},
    "latin-1 bytes": {"authorization": "Bearer cl\u00e9".encode("latin-1")},
    "other header": {"x-api-key": KEY},
    "key in the query": {},
}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, trained_registry):
    root = tmp_path_factory.mktemp("security") / "registry"
    shutil.copytree(trained_registry, root)
    mp = pytest.MonkeyPatch()
    mp.setenv("SCORING_API_KEY", KEY)
    try:
        app = create_app(registry_dir=root, reload_seconds=60)
        with TestClient(app) as client:
            yield client
    finally:
        mp.undo()


def _routes(app) -> list[tuple[str, str]]:
    """(method, path) for every route of the app, mounts included (with a real file under them)."""
    found = []
    for route in app.routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path + "/swagger-ui.css"))
        elif isinstance(route, (APIRoute, Route)):
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    found.append((method, route.path))
    return found


def _call(client, method: str, path: str, headers: dict[str, str], query: str = ""):
    body = {"records": [EXAMPLE_RECORD]} if method == "POST" else None
    return client.request(method, path + query, json=body, headers=headers)


def test_the_app_has_the_routes_we_expect_to_guard(keyed):
    paths = {path for _, path in _routes(keyed.app)}
    assert {"/predict", "/model", "/health", "/ready", "/openapi.json", "/docs"} <= paths


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_no_route_but_health_answers_without_the_right_key(keyed, case):
    checks = failed = 0
    for method, path in _routes(keyed.app):
        query = f"?key={KEY}&api_key={KEY}" if case == "key in the query" else ""
        response = _call(keyed, method, path, BAD_HEADERS[case], query)
        checks += 1
        if path in OPEN_ROUTES:
            ok = response.status_code == 200
        else:
            ok = (response.status_code == 401 and response.headers.get("www-authenticate") == "Bearer"
                  and "API key" in response.json()["detail"] and KEY not in response.text)
        if not ok:
            failed += 1
            print(f"{case}: {method} {path} -> {response.status_code} {response.text[:120]}")
    figures.add("security", checks=checks, failed=failed)
    assert failed == 0


def test_the_right_key_opens_every_route(keyed):
    good = {"authorization": f"Bearer {KEY}"}
    for method, path in _routes(keyed.app):
        response = _call(keyed, method, path, good)
        assert response.status_code == 200, (method, path, response.text[:200])
        assert KEY not in response.text
    # The scheme is case-insensitive (RFC 9110); surrounding blanks are tolerated.
    for header in (f"bearer {KEY}", f"BEARER {KEY}", f"Bearer  {KEY} "):
        assert _call(keyed, "POST", "/predict", {"authorization": header}).status_code == 200
    figures.add("security", checks=1, failed=0)


def test_the_key_is_never_logged(tmp_path, trained_registry, caplog, monkeypatch):
    """Every logger at DEBUG, good and bad requests, startup and shutdown: the key appears nowhere."""
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    monkeypatch.setenv("SCORING_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(registry_dir=root, reload_seconds=60)) as client:
        for headers in BAD_HEADERS.values():
            _call(client, "POST", "/predict", headers)
        assert _call(client, "POST", "/predict", {"authorization": f"Bearer {KEY}"}).status_code == 200
        _call(client, "POST", "/predict", {"authorization": f"Bearer {KEY}"}, f"?key={KEY}")
        bad = {"records": [{**EXAMPLE_RECORD, "mean radius": "oops"}]}
        assert client.post("/predict", json=bad, headers={"authorization": f"Bearer {KEY}"}).status_code == 422
    text = caplog.text
    assert "POST /predict 401" in text and "POST /predict 200" in text and "POST /predict 422" in text
    # The server's records only: httpx's are the test client's own, which does know the key.
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    leaked = [r.getMessage() for r in server if KEY in r.getMessage()]
    assert not leaked
    figures.add("security", checks=1, failed=len(leaked))


@pytest.mark.parametrize("path", [
    "/docs-assets/../app_score_api.py", "/docs-assets/%2e%2e/app_score_api.py",
    "/docs-assets/..%2fapp_score_api.py", "/docs-assets/%2e%2e/%2e%2e/etc/passwd",
    "/docs-assets//etc/passwd", "/docs-assets/%2Fetc%2Fpasswd",
])
def test_static_files_stay_in_their_folder(keyed, path):
    response = keyed.get(path, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code in (401, 404), (path, response.status_code)
    assert b"def create_app" not in response.content and b"root:" not in response.content
    figures.add("security", checks=1, failed=0)


@pytest.mark.parametrize("version", ["../model_v001", "/etc/passwd", "v1/../2", "v\u0661"])
def test_server_refuses_a_version_name_outside_the_registry(trained_registry, version):
    run = run_script("app_score_api.py", "--registry-dir", str(trained_registry), "--model-version", version,
                     "--port", "1")
    assert run.returncode == 2
    assert run.stderr.startswith("error: invalid model version") and "Traceback" not in run.stderr
    figures.add("security", checks=1, failed=0)


# ----- the API never unpickles a file that fails its checksum ------------------------------------
class _Payload:
    """A pickle that creates a file when it is loaded: what a malicious model.joblib does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_api_with_only_a_tampered_version_is_not_ready_and_never_runs_it(tmp_path, trained_registry, monkeypatch):
    import pickle

    monkeypatch.delenv("SCORING_API_KEY", raising=False)

    root = tmp_path / "registry"
    root.mkdir()
    shutil.copytree(trained_registry / "model_v001", root / "model_v001")
    marker = tmp_path / "code-ran"
    with open(root / "model_v001" / "model.joblib", "wb") as handle:
        pickle.dump(_Payload(marker), handle)
    with TestClient(create_app(registry_dir=root, reload_seconds=0.05)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert "v001" in ready.json()["detail"] and "has been modified" in ready.json()["detail"]
        response = client.post("/predict", json={"records": [EXAMPLE_RECORD]})
        assert response.status_code == 503 and "has been modified" in response.json()["detail"]
        # A good version registered later is picked up; the tampered one never ran.
        shutil.copytree(trained_registry / "model_v002", root / "model_v002")
        wait_until(lambda: client.get("/ready").status_code == 200, 20, "/ready to answer 200 with v002",
                   detail=lambda: str(client.get("/ready").json()), interval=0.02)
        answer = client.post("/predict", json={"records": [EXAMPLE_RECORD]})
        assert answer.status_code == 200 and answer.json()["model_version"] == "v002"
    assert not marker.exists(), "the tampered model.joblib was unpickled"
    figures.add("faults", injected=1, data_lost=0)
    figures.add("faults_by_kind", **{"newest model.joblib tampered": 1})
