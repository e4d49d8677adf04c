"""client.py against a real uvicorn server on a free loopback port, and a version switch
under load: every request answered, the new version served without a restart."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import threading
import time

import httpx
import pytest

import client
from app_score_api import EXAMPLE_RECORD
from conftest import ROOT, ApiServer, free_port, run_script, wait_until
from registry import Registry

API_KEY = "live-test-key-5d1c9e"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, trained_registry):
    """`python app_score_api.py` with key auth on a free port; stopped by its PID."""
    base = tmp_path_factory.mktemp("live")
    registry = base / "registry"
    registry.mkdir()
    shutil.copytree(trained_registry / "model_v001", registry / "model_v001")
    server = ApiServer(registry, base / "server.log", {"SCORING_API_KEY": API_KEY})
    try:
        server.wait_ready("/ready")
        yield {"url": server.url, "registry": registry, "log": server.log_path}
    finally:
        server.stop()


def one_line_error(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_client_prints_a_table(live_server):
    result = run_script("client.py", "--url", live_server["url"], "--n", "4", env={"SCORING_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model v001: 4 prediction(s) in ")
    assert lines[1].split() == ["record", "prediction", "probability", "mean", "radius", "mean", "texture"]
    assert [line.split()[0] for line in lines[2:]] == ["0", "1", "2", "3"]
    assert all(line.split()[1] in {"0", "1"} for line in lines[2:])


def test_client_takes_a_predict_url_a_file_and_a_key_flag(live_server, tmp_path):
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"records": [EXAMPLE_RECORD]}))
    result = run_script("client.py", "--url", live_server["url"] + "/predict/", "--file", str(payload),
                        "--api-key", API_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2].split()[:2] == ["0", "0"]
    assert "17.99" in result.stdout


def test_client_errors_are_one_line(live_server, tmp_path):
    url = live_server["url"]
    assert "answered 401 Unauthorized: missing or invalid API key" in one_line_error(
        run_script("client.py", "--url", url))
    assert "answered 404 Not Found" in one_line_error(
        run_script("client.py", "--url", url + "/v2", "--api-key", API_KEY))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"records": [{**EXAMPLE_RECORD, "mean area": None}]}))
    assert one_line_error(run_script("client.py", "--url", url, "--file", str(bad), "--api-key", API_KEY)).endswith(
        "answered 422 Unprocessable Entity: record 0, feature 'mean area': expected a number, got null")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "is not valid JSON" in one_line_error(run_script("client.py", "--url", url, "--file", str(broken)))
    assert "cannot reach" in one_line_error(run_script("client.py", "--url", f"http://127.0.0.1:{free_port()}"))
    assert "--url must look like" in one_line_error(run_script("client.py", "--url", "localhost"))


def test_client_imports_nothing_from_the_project():
    source = (ROOT / "client.py").read_text()
    ours = {p.stem for p in ROOT.glob("*.py")} - {"client"}
    imported = {line.split()[1].split(".")[0] for line in source.splitlines()
                if line.startswith(("import ", "from "))}
    assert not imported & ours


def test_new_version_is_served_while_clients_keep_sending(live_server):
    """Requests keep flowing from two clients while a new version is trained and registered."""
    import train

    url, seen, latencies, stop = live_server["url"], [], [], threading.Event()
    headers = {"authorization": f"Bearer {API_KEY}"}

    def send_one(client: httpx.Client) -> tuple[int | str, str | None]:
        """(status, model version) of one request; anything but a JSON answer is recorded, never raised."""
        try:
            response = client.post("/predict", json={"records": [EXAMPLE_RECORD] * 3})
        except httpx.HTTPError as exc:
            return repr(exc), None
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} with a non-JSON body {response.text[:80]!r}", None
        if not isinstance(body, dict):
            return f"{response.status_code} with a JSON {type(body).__name__}, not an object", None
        return response.status_code, body.get("model_version")

    def keep_sending(name: str) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            while not stop.is_set():
                start = time.monotonic()
                status, version = send_one(client)
                latencies.append(time.monotonic() - start)
                seen.append((name, time.monotonic(), status, version))

    def answers(count: int):
        def enough() -> bool:
            assert all(thread.is_alive() for thread in threads), "a sender thread died"
            return len(seen) >= count
        return enough

    threads = [threading.Thread(target=keep_sending, args=(f"client-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_until(answers(20), 60, "20 answers from the first version")
        result = train.train(registry_dir=live_server["registry"], artifacts_dir=live_server["registry"].parent / "a",
                             random_state=11, use_mlflow=False)
        registered = time.monotonic()
        assert result.version.label == "v002"
        wait_until(lambda: any(v == "v002" for *_, v in seen[-5:]), 60, "v002 to be served after its registration",
                   detail=lambda: f"last answers: {seen[-5:]}")
        wait_until(answers(len(seen) + 20), 60, "20 more answers after the switch")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a sender thread did not stop"

    assert all(status == 200 for _, _, status, _ in seen), [s for s in seen if s[2] != 200][:3]
    for name in ("client-0", "client-1"):
        versions = [v for n, _, _, v in seen if n == name]
        switch = versions.index("v002")  # each client moved from v001 to v002 once, for good
        assert set(versions[:switch]) == {"v001"} and set(versions[switch:]) == {"v002"}
    first_new = min(t for _, t, _, v in seen if v == "v002")
    latencies.sort()
    print(f"\n{len(seen)} requests, all 200; v002 served {first_new - registered:.2f} s after registration; "
          f"latency median {latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert "serving model v002 (was v001)" in live_server["log"].read_text()


def test_server_log_has_one_line_per_request_and_never_the_key(live_server):
    url = live_server["url"]
    assert httpx.post(f"{url}/predict", json={"records": [EXAMPLE_RECORD] * 7},
                      headers={"authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert httpx.post(f"{url}/predict", json={"records": []},
                      headers={"authorization": f"Bearer {API_KEY}x"}).status_code == 401
    assert httpx.get(f"{url}/health").status_code == 200
    # The line is written just after the answer is sent.
    wait_until(lambda: "GET /health 200" in live_server["log"].read_text(), 30, "the server's GET /health log line",
               detail=live_server["log"].read_text)
    lines = live_server["log"].read_text().splitlines()
    predict_7 = [line for line in lines if re.search(r"POST /predict 200 records=7 model=v00\d [\d.]+ms$", line)]
    assert len(predict_7) == 1
    assert any("POST /predict 401 records=- model=-" in line for line in lines)
    assert any("GET /health 200 records=- model=-" in line for line in lines)
    assert not any(API_KEY in line for line in lines)


# ----- deployments: the routing header, --repeat's tally (against a stand-in endpoint) -----------------------
class FakeEndpoint(http.server.BaseHTTPRequestHandler):
    """Answers like a two-deployment endpoint: the header picks blue or green; without it every 10th
    request goes to green, and every 50th gets a 429. Records the deployment header it was sent."""

    versions = {"blue": "v001", "green": "v002"}

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["content-length"]))
        wanted = self.headers.get("azureml-model-deployment")
        with self.server.lock:
            number = self.server.count
            self.server.count += 1
            self.server.sent.append(wanted)
        if self.path == "/plain/predict":
            self.answer(200, {"model_version": "v001", "results": [{"prediction": 0, "probability": 0.25}]})
        elif wanted is not None and wanted not in self.versions:
            self.answer(404, {"message": f"no deployment named {wanted!r}; deployments: blue, green"})
        elif wanted is None and number % 50 == 49:
            self.answer(429, {"message": "too many pending requests"}, {"retry-after": "1"})
        else:
            name = wanted or ("green" if number % 10 == 9 else "blue")
            self.answer(200, {"model_version": self.versions[name],
                              "results": [{"prediction": 1, "probability": 0.75}]},
                        {"azureml-model-deployment": name})

    def answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"content-type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def fake_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    server.lock, server.count, server.sent = threading.Lock(), 0, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture()
def one_record(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"records": [EXAMPLE_RECORD]}))
    return str(path)


def client_run(capsys, *args: str) -> tuple[int, str, str]:
    code = client.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_deployment_name_sends_the_header_and_the_answer_names_its_deployment(fake_endpoint, one_record, capsys):
    url = f"http://127.0.0.1:{fake_endpoint.server_port}"
    code, out, err = client_run(capsys, "--url", url, "--file", one_record, "--deployment-name", "green")
    assert (code, err) == (0, "")
    assert re.fullmatch(r"model v002: 1 prediction\(s\) in [\d.]+ ms \(deployment green\)", out.splitlines()[0])
    assert fake_endpoint.sent == ["green"]
    code, out, err = client_run(capsys, "--url", url, "--file", one_record, "--deployment-name", "red")
    assert (code, out) == (1, "")
    assert err == (f"error: {url}/predict answered 404 Not Found: no deployment named 'red'; "
                   "deployments: blue, green\n")


def test_repeat_counts_answers_per_deployment_and_failures_by_status(fake_endpoint, one_record, capsys):
    url = f"http://127.0.0.1:{fake_endpoint.server_port}"
    code, out, err = client_run(capsys, "--url", url, "--file", one_record, "--repeat", "200", "--threads", "4")
    lines = out.splitlines()
    assert re.fullmatch(r"200 request\(s\) in [\d.]+ s from 4 thread\(s\): 196 answered, 4 failed", lines[0])
    assert [line.split() for line in lines[1:4]] == [["deployment", "answers", "share", "versions"],
                                                     ["blue", "180", "90.0%", "v001"],
                                                     ["green", "16", "8.0%", "v002"]]
    assert lines[4:] == [f"failed (429): 4, the first: {url}/predict answered 429 Too Many Requests: "
                         "too many pending requests"]
    assert (code, err) == (1, "error: 4 of 200 request(s) failed (see the table above)\n")
    assert fake_endpoint.sent == [None] * 200


def test_repeat_with_a_deployment_name_and_answers_without_the_header(fake_endpoint, one_record, capsys):
    url = f"http://127.0.0.1:{fake_endpoint.server_port}"
    code, out, err = client_run(capsys, "--url", url, "--file", one_record, "--repeat", "30",
                                "--deployment-name", "green")
    assert (code, err) == (0, "")
    assert [line.split() for line in out.splitlines()[2:]] == [["green", "30", "100.0%", "v002"]]
    assert fake_endpoint.sent == ["green"] * 30
    code, out, err = client_run(capsys, "--url", f"{url}/plain/predict", "--file", one_record, "--repeat", "3",
                                "--threads", "8")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert re.fullmatch(r"3 request\(s\) in [\d.]+ s from 3 thread\(s\): 3 answered, 0 failed", lines[0])
    assert lines[2].split() == ["-", "3", "100.0%", "v001"]  # "-": the answer named no deployment


def test_repeat_counts_unreachable_endpoints_and_checks_its_numbers(one_record, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = client_run(capsys, "--url", url, "--file", one_record, "--repeat", "5", "--threads", "2")
    assert code == 1 and err == "error: 5 of 5 request(s) failed (see the table above)\n"
    assert out.splitlines()[-1].startswith(f"failed (unreachable): 5, the first: cannot reach {url}/predict: ")
    for flag in ("--repeat", "--threads"):
        assert client_run(capsys, "--url", url, flag, "0") == (1, "", f"error: {flag} must be at least 1, got 0\n")


def test_repeat_against_the_real_endpoint(live_server, one_record, capsys):
    code, out, err = client_run(capsys, "--url", live_server["url"], "--file", one_record, "--repeat", "20",
                                "--api-key", API_KEY)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith(": 20 answered, 0 failed")
    # One deployment row (its name is whatever the endpoint's single deployment answers as), serving
    # the newest version (an earlier test in this module registers v002 on this server).
    newest = f"v{max(Registry(live_server['registry']).versions()):03d}"
    assert len(lines) == 3 and lines[2].split()[1:] == ["20", "100.0%", newest]


def test_a_closed_stdout_reader_is_no_traceback(fake_endpoint, one_record):
    """`client.py --repeat 200 | head -0`: the tally goes nowhere, the failures line and exit code stay."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "client.py", "--url", f"http://127.0.0.1:{fake_endpoint.server_port}",
                               "--file", one_record, "--repeat", "200", "--threads", "2"],
                              cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (1, "error: 4 of 200 request(s) failed (see the table above)\n")
    assert fake_endpoint.count == 200


def test_asking_for_more_rows_than_the_data_has_says_so(live_server):
    run = run_script("client.py", "--url", live_server["url"], "--n", "1000", env={"SCORING_API_KEY": API_KEY})
    assert run.returncode == 0, run.stderr
    assert "note: the data has 569 rows; sending those (--repeat N sends the request N times)" in run.stderr
