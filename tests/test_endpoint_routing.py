"""app_score_api.py --endpoint: deployments from the endpoint's YAML, Azure's routing rules, the
mirror, the status codes from each deployment's request settings, /metrics, and traffic changed
by endpoint.py while a live server answers.

Every endpoint is written under tmp_path, over a private copy of the two-version registry
(v001 and v002), with its traffic state in tmp_path (LOCAL_ENDPOINTS_DIR).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

import app_score_api
import endpoint_spec
from conftest import ROOT, ApiServer, register_copy, register_tampered, run_script, wait_until
from endpoint_router import Mirror, Traffic
from registry import Registry

HEADER = "azureml-model-deployment"
RECORD = app_score_api.EXAMPLE_RECORD
BODY = json.dumps({"records": [RECORD]})


def deployment_yaml(name: str, model: str, timeout_ms: int = 5000, concurrent: int = 16, **extra) -> dict:
    return {"$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
            "name": name, "endpoint_name": "risk-endpoint", "model": model, "instance_count": 1,
            "request_settings": {"request_timeout_ms": timeout_ms, "max_concurrent_requests_per_instance": concurrent},
            **extra}


def write_endpoint(folder: Path, traffic: dict, mirror: dict | None = None, **deployments: dict) -> Path:
    """folder/endpoint.yml and one YAML per deployment (blue v001 and green v002 unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    deployments = deployments or {"blue": deployment_yaml("blue", "azureml:risk-classifier:1"),
                                  "green": deployment_yaml("green", "azureml:risk-classifier:2")}
    for name, data in deployments.items():
        (folder / f"{name}-deployment.yml").write_text(yaml.safe_dump(data))
    endpoint = {"name": "risk-endpoint", "auth_mode": "key", "traffic": traffic, "mirror_traffic": mirror or {}}
    path = folder / "endpoint.yml"
    path.write_text(yaml.safe_dump(endpoint))
    return path


@pytest.fixture
def registry(tmp_path, trained_registry) -> Path:
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    return root


@pytest.fixture
def serve(monkeypatch, tmp_path, registry):
    """serve(endpoint_yml, **env) -> TestClient context for the app serving that endpoint."""
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(registry))
    monkeypatch.setenv("LOCAL_ENDPOINTS_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SCORING_RELOAD_SECONDS", "0.05")

    def start(endpoint: Path, **env: str):
        monkeypatch.setenv("SCORING_ENDPOINT", str(endpoint))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return TestClient(app_score_api.create_app())

    return start


def predict(client, **headers):
    return client.post("/predict", content=BODY, headers={"content-type": "application/json", **headers})


def update(endpoint: Path, *args: str, registry: Path | None = None) -> None:
    """python endpoint.py update, as a user runs it (a separate process)."""
    where = ["--registry-dir", str(registry)] if registry else []
    done = run_script("endpoint.py", "update", "--endpoint", str(endpoint), *where, *args)
    assert done.returncode == 0, done.stderr


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page (0 when absent)."""
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted or (labels and key.startswith(name + "{") and
                             all(f'{k}="{v}"' in key for k, v in labels.items()) and
                             key.count("=") == len(labels)):
            return float(value)
    return 0.0


# ----- routing ---------------------------------------------------------------------------
def test_split_over_10000_requests_is_90_10(monkeypatch, tmp_path, registry):
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(registry))
    monkeypatch.setenv("LOCAL_ENDPOINTS_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SCORING_ENDPOINT", str(write_endpoint(tmp_path / "online", {"blue": 90, "green": 10})))
    app = app_score_api.create_app()
    counts = {"blue": 0, "green": 0}
    versions = {"blue": set(), "green": set()}

    async def send_all() -> None:  # in process, one event loop (TestClient's thread hop per request is slower)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://endpoint") as client:
                for _ in range(10_000):
                    response = await client.post("/predict", content=BODY)
                    assert response.status_code == 200
                    name = response.headers[HEADER]
                    counts[name] += 1
                    versions[name].add(response.headers["x-model-version"])

    random.seed(13)
    asyncio.run(send_all())
    assert sum(counts.values()) == 10_000
    assert abs(counts["green"] / 10_000 - 0.10) <= 0.01, counts
    assert versions == {"blue": {"v001"}, "green": {"v002"}}


def test_the_header_reaches_a_deployment_at_0_percent(serve, tmp_path):
    with serve(write_endpoint(tmp_path / "online", {"blue": 100, "green": 0})) as client:
        plain = [predict(client).headers[HEADER] for _ in range(50)]
        green = predict(client, **{HEADER: "green"})
        blue = predict(client, **{HEADER: "blue"})
    assert set(plain) == {"blue"}
    assert (green.status_code, green.headers[HEADER], green.headers["x-model-version"]) == (200, "green", "v002")
    assert green.json()["model_version"] == "v002" and set(green.json()) == {"results", "model_version"}
    assert (blue.headers[HEADER], blue.headers["x-model-version"]) == ("blue", "v001")


def test_404_for_an_unknown_deployment_and_for_no_live_traffic(serve, tmp_path):
    endpoint = write_endpoint(tmp_path / "online", {"blue": 90, "green": 10})
    with serve(endpoint) as client:
        unknown = predict(client, **{HEADER: "red"})
        assert unknown.status_code == 404
        assert unknown.json() == {"detail": "endpoint risk-endpoint has no deployment named 'red' "
                                            "(azureml-model-deployment); its deployments: blue, green"}
        update(endpoint, "--traffic", "blue=0 green=0")
        client.app.state.serving.check_traffic()  # what the poller does within a second
        none = predict(client)
        assert none.status_code == 404
        assert none.json()["detail"].startswith("endpoint risk-endpoint has no deployment with traffic above 0: "
                                                "send the azureml-model-deployment header (deployments: blue, green)")
        assert predict(client, **{HEADER: "blue"}).status_code == 200
        ready = client.get("/ready")
        page = client.get("/metrics").text
    assert ready.status_code == 200  # no deployment has traffic: none needs to be loaded
    assert metric(page, "scoring_requests_total", deployment="none", code="404", mirror="false") == 2


def test_ready_and_model_describe_every_deployment(serve, tmp_path):
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100, "green": 0}, {"green": 10})
    with serve(endpoint) as client:
        ready = client.get("/ready")
        info = client.get("/model").json()
    assert ready.status_code == 200
    body = ready.json()
    assert (body["status"], body["endpoint"]) == ("ready", "risk-endpoint")
    assert [(d["name"], d["version"], d["traffic"], d["mirror_traffic"], d["ready"]) for d in body["deployments"]] == [
        ("blue", "v001", 100, 0, True), ("green", "v002", 0, 10, True)]
    assert body["deployments"][0]["max_in_flight"] == 32 and body["deployments"][0]["request_timeout_ms"] == 5000
    assert (info["traffic"], info["mirror_traffic"]) == ({"blue": 100, "green": 0}, {"green": 10})
    assert [(d["name"], d["model"], d["model_version"]) for d in info["deployments"]] == [
        ("blue", "azureml:risk-classifier:1", "v001"), ("green", "azureml:risk-classifier:2", "v002")]


def test_a_deployment_that_cannot_load_is_503_and_not_ready(serve, tmp_path, registry):
    bad = register_tampered(registry)
    deployments = {"blue": deployment_yaml("blue", "azureml:risk-classifier:1"),
                   "green": deployment_yaml("green", f"azureml:risk-classifier:{bad}")}
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100, "green": 0}, **deployments)
    with serve(endpoint) as client:
        assert client.get("/ready").status_code == 200  # green has no traffic: readiness does not need it
        answer = predict(client, **{HEADER: "green"})
        assert answer.status_code == 503
        assert answer.json()["deployment"] == "green"
        assert answer.json()["detail"].startswith(f"deployment green is not ready: v{bad:03d}: ")
        assert "has been modified" in answer.json()["detail"]
        update(endpoint, "--traffic", "blue=50 green=50")
        client.app.state.serving.check_traffic()
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["detail"].startswith("deployment green is not ready: ")
    assert [d["ready"] for d in ready.json()["deployments"]] == [True, False]


def test_plain_endpoint_ignores_the_header_and_names_its_deployment(monkeypatch, registry):
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(registry))
    monkeypatch.delenv("SCORING_ENDPOINT", raising=False)
    with TestClient(app_score_api.create_app()) as client:
        answer = predict(client, **{HEADER: "green"})
    assert (answer.status_code, answer.headers[HEADER], answer.headers["x-model-version"]) == (200, "default", "v002")


# ----- mirror ----------------------------------------------------------------------------
def test_mirrored_copies_are_counted_and_never_answer_the_caller(serve, tmp_path):
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100, "green": 0}, {"green": 50})
    random.seed(7)
    expected = sum(random.random() < 0.5 for _ in range(200))  # the draws the router makes, one per request
    random.seed(7)
    with serve(endpoint) as client:
        answers = [predict(client) for _ in range(200)]
        answers.append(predict(client, **{HEADER: "blue"}))  # with the header: never mirrored
        state = client.app.state
        wait_until(lambda: state.mirror.queued == 0, 30, "the mirror queue to drain")
        page = client.get("/metrics").text
    assert {(a.status_code, a.headers[HEADER], a.headers["x-model-version"]) for a in answers} == {(200, "blue", "v001")}
    mirrored = metric(page, "scoring_requests_total", deployment="green", code="200", mirror="true")
    dropped = metric(page, "scoring_mirror_dropped_total", deployment="green")
    assert mirrored + dropped == expected and mirrored > 0
    assert metric(page, "scoring_requests_total", deployment="green", code="200", mirror="false") == 0
    assert metric(page, "scoring_requests_total", deployment="blue", code="200", mirror="false") == 201
    assert metric(page, "scoring_records_total", deployment="green", mirror="true") == mirrored


def test_a_full_mirror_queue_drops_and_counts():
    scored, dropped = [], []

    async def score(name, body, rid):
        scored.append(rid)
        return 200

    async def run():
        mirror = Mirror(score, dropped.append, size=2)
        mirror.start()
        offered = [mirror.offer("green", b"{}", str(i)) for i in range(3)]  # no await: the queue fills
        while mirror.queued:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        await mirror.stop()
        return offered

    assert asyncio.run(run()) == [True, True, False]
    assert scored == ["0", "1"] and dropped == ["green"]


def test_traffic_picks_by_weight():
    traffic = Traffic.of({"blue": 90, "green": 10, "red": 0}, {"red": 20})
    assert [traffic.pick(lambda: x) for x in (0.0, 0.899, 0.9, 0.999)] == ["blue", "blue", "green", "green"]
    assert (traffic.mirrored(lambda: 0.19), traffic.mirrored(lambda: 0.2)) == ("red", None)
    assert Traffic.of({"blue": 0, "green": 0}).pick() is None


# ----- metrics and the key ---------------------------------------------------------------
def test_metrics_need_the_key_and_count_by_deployment_and_code(serve, tmp_path):
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100, "green": 0})
    with serve(endpoint, SCORING_API_KEY="s3cret") as client:
        assert client.get("/metrics").status_code == 401
        key = {"authorization": "Bearer s3cret"}
        assert predict(client, **key).status_code == 200
        bad = client.post("/predict", content=b"{bad", headers={**key, HEADER: "green"})
        assert bad.status_code == 400
        page = client.get("/metrics", headers=key)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    text = page.text
    assert metric(text, "scoring_requests_total", deployment="blue", code="200", mirror="false") == 1
    assert metric(text, "scoring_requests_total", deployment="green", code="400", mirror="false") == 1
    assert metric(text, "scoring_records_total", deployment="blue", mirror="false") == 1
    assert metric(text, "scoring_request_duration_seconds_count", deployment="blue") == 1
    assert "scoring_requests_in_flight" in text


# ----- 408 and 429 on a live server ------------------------------------------------------
def _partial_request(port: int, deployment: str, body: bytes, sent: int) -> socket.socket:
    """A request whose body is only partly sent: the server holds it in flight until the rest comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"{HEADER}: {deployment}\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[:sent])
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one HTTP/1.1 answer read from the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(rest[:length])


@pytest.fixture
def live(tmp_path, registry):
    servers = []

    def start(endpoint: Path, *args: str) -> ApiServer:
        env = {"LOCAL_ENDPOINTS_DIR": str(tmp_path / "state"), "SCORING_RELOAD_SECONDS": "0.2"}
        server = ApiServer(registry, tmp_path / f"server{len(servers)}.log", env, "--endpoint", str(endpoint), *args)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


def test_408_past_the_request_timeout_and_429_past_the_requests_in_flight(live, tmp_path):
    deployments = {"slow": deployment_yaml("slow", "azureml:risk-classifier:1", timeout_ms=300),
                   "tight": deployment_yaml("tight", "azureml:risk-classifier:2", timeout_ms=60_000, concurrent=1)}
    server = live(write_endpoint(tmp_path / "online", {"slow": 50, "tight": 50}, **deployments))
    body = BODY.encode()

    # 408: the body never finishes arriving; the caller is answered at the deadline.
    sock = _partial_request(server.port, "slow", body, 10)
    status, headers, answer = _answer(sock)
    sock.close()
    assert (status, headers[HEADER]) == (408, "slow")
    assert answer == {"detail": "request timed out: deployment slow did not answer within request_timeout_ms=300",
                      "deployment": "slow"}

    # 429: tight allows 2 x 1 x 1 requests in flight; two are held open, the third is refused.
    held = [_partial_request(server.port, "tight", body, 10) for _ in range(2)]
    wait_until(lambda: metric(httpx.get(server.url + "/metrics").text, "scoring_requests_in_flight",
                              deployment="tight") == 2, 30, "two requests in flight on tight")
    refused = httpx.post(server.url + "/predict", content=body, headers={HEADER: "tight"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["detail"].startswith("too many pending requests: deployment tight already has 2 requests")
    for sock in held:
        sock.sendall(body[10:])
        status, headers, answer = _answer(sock)
        sock.close()
        assert (status, headers["x-model-version"], answer["model_version"]) == (200, "v002", "v002")
    page = httpx.get(server.url + "/metrics").text
    assert metric(page, "scoring_requests_total", deployment="slow", code="408", mirror="false") == 1
    assert metric(page, "scoring_requests_total", deployment="tight", code="429", mirror="false") == 1
    assert metric(page, "scoring_requests_total", deployment="tight", code="200", mirror="false") == 2
    # The request log (written by its own thread, in batches) names status, deployment and version.
    wait_until(lambda: len([l for l in server.log_path.read_text().splitlines() if "POST /predict" in l]) == 4, 10,
               "four request lines")
    lines = [l.split("app_score_api: ", 1)[1] for l in server.log_path.read_text().splitlines() if "POST /predict" in l]
    assert [l.rsplit(" ", 1)[0] for l in lines] == [
        "POST /predict 408 records=- model=slow/v001", "POST /predict 429 records=- model=-",
        "POST /predict 200 records=1 model=tight/v002", "POST /predict 200 records=1 model=tight/v002"]


# ----- traffic changed under load --------------------------------------------------------
def test_traffic_changes_under_load_fail_no_request(live, tmp_path, registry):
    deployments = {"blue": deployment_yaml("blue", "azureml:risk-classifier:1"),
                   "green": deployment_yaml("green", "azureml:risk-classifier@latest")}
    endpoint = write_endpoint(tmp_path / "online", {"blue": 100, "green": 0}, **deployments)
    server = live(endpoint)
    answers: list[tuple[float, float, int, str, str]] = []  # (sent, received, status, deployment, version)
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.post(server.url + "/predict", content=BODY)
                    answers.append((sent, time.monotonic(), r.status_code, r.headers.get(HEADER, "-"),
                                    r.headers.get("x-model-version", "-")))
                except httpx.HTTPError as exc:
                    answers.append((sent, time.monotonic(), 0, type(exc).__name__, "-"))

    def in_effect(traffic: dict) -> bool:
        return {d["name"]: d["traffic"] for d in httpx.get(server.url + "/ready").json()["deployments"]} == traffic

    # stages: (written at, applied at, live deployments)
    stages = [(0.0, time.monotonic(), {"blue"})]
    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(answers) > 50, 60, "answers before the first change")
        for split, live_names in (("blue=50 green=50", {"blue", "green"}), ("blue=0 green=100", {"green"}),
                                  ("blue=100 green=0", {"blue"})):
            written = time.monotonic()
            update(endpoint, "--traffic", split, "--state-dir", str(tmp_path / "state"), registry=registry)
            traffic = {p.split("=")[0]: int(p.split("=")[1]) for p in split.split()}
            wait_until(lambda: in_effect(traffic), 10, f"{split} in effect")
            stages.append((written, time.monotonic(), live_names))
            count = len(answers)
            wait_until(lambda: len(answers) > count + 50, 60, f"answers under {split}")
            if split == "blue=0 green=100":  # a new version behind green's @latest, while it has all the traffic
                new = f"v{register_copy(registry):03d}"
                wait_until(lambda: any(d["version"] == new for d in httpx.get(server.url + "/ready").json()["deployments"]),
                           10, f"{new} served by green")
                count = len(answers)
                wait_until(lambda: len(answers) > count + 50, 60, f"answers from {new}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert [a for a in answers if a[2] != 200] == []  # 0 failed requests
    assert {a[4] for a in answers if a[3] == "green"} == {"v002", new} and {a[4] for a in answers if a[3] == "blue"} == {"v001"}
    # A split may be in effect from the moment it is written until the next one is seen applied:
    # an answer may come from any deployment live in a split whose window overlaps its request.
    ends = [applied for _, applied, _ in stages[1:]] + [float("inf")]
    windows = [(written, end, names) for (written, _, names), end in zip(stages, ends)]
    single = 0
    for sent, received, _, name, _ in answers:
        allowed = set().union(*(names for start, end, names in windows if start <= received and sent <= end))
        assert name in allowed, (sent, received, name, windows)
        single += len(allowed) == 1
    assert single > 200  # most answers fell inside one split's window, where only its deployments may answer


# ----- a bad endpoint does not start -----------------------------------------------------
BAD = {
    "invalid YAML": ("endpoint.yml", "name: risk-endpoint\ntraffic: {blue: 90, green: 10\n",
                     "endpoint.yml: invalid YAML at line 3, column 1: "),
    "traffic sum": ("endpoint.yml", "name: risk-endpoint\ntraffic: {blue: 80, green: 10}\n",
                    "endpoint.yml: traffic: the weights sum to 90; they must sum to 100 (or 0 for no live traffic)"),
    "unknown version": ("green-deployment.yml", None, "green-deployment.yml: model: azureml:risk-classifier:9: "
                                                      "version v009 is not in the registry"),
    "named twice": ("red-deployment.yml", None, "name: deployment 'blue' is also defined in "),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_endpoint_is_refused_at_start_in_one_line(tmp_path, registry, case):
    endpoint = write_endpoint(tmp_path / "online", {"blue": 90, "green": 10})
    name, text, message = BAD[case]
    if case == "unknown version":
        text = yaml.safe_dump(deployment_yaml("green", "azureml:risk-classifier:9"))
    if case == "named twice":
        text = yaml.safe_dump(deployment_yaml("blue", "azureml:risk-classifier:2"))
    (endpoint.parent / name).write_text(text)
    done = run_script(str(ROOT / "app_score_api.py"), "--endpoint", str(endpoint), "--registry-dir", str(registry),
                      "--port", "1", env={"LOCAL_ENDPOINTS_DIR": str(tmp_path / "state")}, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


def test_a_bad_traffic_state_is_refused_at_start_and_kept_out_while_serving(serve, tmp_path, caplog):
    endpoint = write_endpoint(tmp_path / "online", {"blue": 90, "green": 10})
    spec = endpoint_spec.load_endpoint(endpoint)
    with serve(endpoint) as client:
        state = endpoint_spec.state_path(spec)
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text('{"revision": 1, "traffic": {"blue": 70}}')
        assert client.app.state.serving.check_traffic() is False
        assert client.app.state.serving.traffic.weights == {"blue": 90, "green": 10}
    assert "traffic change not applied, still traffic blue=90 green=10" in caplog.text
    done = run_script("app_score_api.py", "--endpoint", str(endpoint), "--port", "1",
                      env={"LOCAL_ENDPOINTS_DIR": str(tmp_path / "state")})
    assert done.returncode == 2
    assert "traffic: the weights sum to 70" in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_endpoint_setting_travels_to_workers_and_the_flag_is_documented(monkeypatch, tmp_path):
    import endpoint_settings

    endpoint = write_endpoint(tmp_path / "online", {"blue": 90, "green": 10})
    config = endpoint_settings.load(endpoint=endpoint)
    assert config.to_env()["SCORING_ENDPOINT"] == str(endpoint)
    monkeypatch.setenv("SCORING_ENDPOINT", str(endpoint))
    assert endpoint_settings.load().endpoint == endpoint
    assert app_score_api.build_parser(endpoint_settings.load()).parse_args([]).endpoint == endpoint
    monkeypatch.delenv("SCORING_ENDPOINT")
    assert endpoint_settings.load().endpoint is None and "SCORING_ENDPOINT" not in endpoint_settings.load().to_env()
