"""The walkthrough behind `make demo-rollout`: a safe rollout on the local managed online endpoint.

Serves azureml/online/endpoint.yml (blue v001, green v002 at 90/10, as the project would deploy
them) from a registry, traffic state, collected data and logs of its own (a temporary folder,
or $DEMO_ROLLOUT_DIR; never make demo's), and walks through the rollout: the split over 1,000
requests, green reached by its header, a 10% mirror to green counted in /metrics, then all the
traffic to green while a client keeps sending, with 0 failed requests. Each step prints the
`az ml` command it stands for. Reads the training data (train.py's default); writes only there.

    python scripts/demo_rollout.py            # or: make demo-rollout
    DEMO_ROLLOUT_DIR=demo_rollout python scripts/demo_rollout.py    # keep the folder afterwards
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = ROOT / "azureml" / "online" / "endpoint.yml"
PY = sys.executable
HEADER = "azureml-model-deployment"
START = time.monotonic()


def stage(title: str, azure: str) -> None:
    print(f"\n\033[1m== {title}\033[0m  [{time.monotonic() - START:.0f}s]\n   az ml: {azure}", flush=True)


def run(*args: str, env: dict[str, str]) -> str:
    """Run one of the project's scripts, show its output, stop the demo if it fails."""
    print(f"$ python {shlex.join(args)}", flush=True)
    done = subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    print(done.stdout.rstrip(), flush=True)
    if done.returncode != 0:
        raise SystemExit(f"error: python {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(url: str, server: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"error: the endpoint exited:\n{log.read_text()[-2000:]}")
        try:
            status, body = get(url + "/ready")
            if status == 200:
                return json.loads(body)
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"error: the endpoint was not ready within 120 s: see {log}")
        time.sleep(0.1)


def traffic_in_effect(url: str) -> dict[str, int]:
    return {d["name"]: d["traffic"] for d in json.loads(get(url + "/ready")[1])["deployments"]}


def metric_lines(url: str, *names: str) -> list[str]:
    text = get(url + "/metrics")[1].decode()
    return [line for line in text.splitlines() if line.startswith(names)]


class Load:
    """Client threads sending one record at a time until stopped; answers counted by deployment."""

    def __init__(self, url: str, body: bytes, threads: int = 4):
        self.url, self.body = url + "/predict", body
        self.answers: Counter = Counter()
        self.failures: Counter = Counter()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def _send(self) -> None:
        while not self.stopping.is_set():
            request = urllib.request.Request(self.url, data=self.body, headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    answer.read()
                    self.answers[answer.headers.get(HEADER, "-")] += 1
            except urllib.error.HTTPError as exc:
                self.failures[str(exc.code)] += 1
            except OSError as exc:
                self.failures[type(exc).__name__] += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()


def rollout(base: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LOCAL_REGISTRY_DIR": str(base / "local_registry"),
           "LOCAL_ENDPOINTS_DIR": str(base / "local_endpoints"), "LOGS_DIR": str(base / "logs"),
           "ARTIFACTS_DIR": str(base / "artifacts"), "DATA_COLLECTOR_DIR": str(base / "collected"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}"}
    env.pop("SCORING_API_KEY", None)
    env.pop("SCORING_ENDPOINT", None)
    env.pop("STORAGE_BACKEND", None)  # collected data stays in the demo's folder
    endpoint = str(ENDPOINT.relative_to(ROOT))

    stage("1. Two versions in a registry of the demo's own", "az ml job create -f ... ; az ml model create (v1, v2)")
    run("train.py", "--no-mlflow", env=env)
    run("train.py", "--no-mlflow", "--random-state", "7", env=env)

    stage("2. Serve the endpoint from its YAML: blue v001 90%, green v002 10%",
          "az ml online-endpoint create -f endpoint.yml; az ml online-deployment create -f blue-deployment.yml; "
          "... -f green-deployment.yml; az ml online-endpoint update --traffic \"blue=90 green=10\"")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = base / "logs" / "rollout_api.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ python app_score_api.py --endpoint {endpoint} --port {port}   (log: {log})")
    with open(log, "w") as out:
        server = subprocess.Popen([PY, "app_score_api.py", "--endpoint", endpoint, "--port", str(port)], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        ready = wait_ready(url, server, log)
        for d in ready["deployments"]:
            print(f"   {d['name']:5s} {d['version']}  traffic {d['traffic']}%  ready {d['ready']}")
        run("endpoint.py", "show", "--endpoint", endpoint, env=env)
        steps(url, endpoint, env)
    finally:
        server.terminate()
        server.wait(timeout=30)
        print(f"endpoint stopped (pid {server.pid})")


def steps(url: str, endpoint: str, env: dict[str, str]) -> None:
    stage("3. 1,000 requests: the split", "az ml online-endpoint invoke --name risk-endpoint (x1000)")
    run("client.py", "--url", url, "--n", "1", "--repeat", "1000", env=env)

    stage("4. Green at its header, whatever its share",
          "az ml online-endpoint invoke --name risk-endpoint --deployment-name green")
    run("client.py", "--url", url, "--n", "1", "--deployment-name", "green", env=env)

    stage("5. All live traffic on blue, 10% mirrored to green (answers discarded, counted)",
          "az ml online-endpoint update --name risk-endpoint --traffic \"blue=100 green=0\" --mirror-traffic \"green=10\"")
    run("endpoint.py", "update", "--endpoint", endpoint, "--traffic", "blue=100 green=0", "--mirror-traffic", "green=10",
        env=env)
    wait_for(url, {"blue": 100, "green": 0})
    run("client.py", "--url", url, "--n", "1", "--repeat", "1000", env=env)
    time.sleep(0.5)  # the mirror scores its copies in the background
    print("GET /metrics (green's mirrored copies, drops):")
    lines = metric_lines(url, 'scoring_requests_total{code="200",deployment="green",mirror="true"}',
                         "scoring_mirror_dropped_total{")
    for line in lines:
        print("   " + line)
    if not any(line.startswith("scoring_mirror_dropped_total") for line in lines):
        print('   scoring_mirror_dropped_total{deployment="green"}: none dropped')

    stage("6. All traffic to green while a client keeps sending",
          "az ml online-endpoint update --name risk-endpoint --traffic \"blue=0 green=100\" --mirror-traffic \"green=0\"")
    record = json.loads(subprocess.run([PY, "-c", "import json, app_score_api; "
                                        "print(json.dumps({'records': [app_score_api.EXAMPLE_RECORD]}))"],
                                       cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    with Load(url, json.dumps(record).encode()) as load:
        time.sleep(1.5)
        before = dict(load.answers)
        run("endpoint.py", "update", "--endpoint", endpoint, "--traffic", "blue=0 green=100", "--mirror-traffic",
            "green=0", env=env)
        wait_for(url, {"blue": 0, "green": 100})
        switched = dict(load.answers)
        time.sleep(1.5)
    after = {name: load.answers[name] - switched.get(name, 0) for name in load.answers}
    total = sum(load.answers.values()) + sum(load.failures.values())
    print(f"   before the change: {before}")
    print(f"   after it was applied: {after}")
    print(f"   {total} requests, {sum(load.failures.values())} failed {dict(load.failures) or ''}")
    if load.failures or after.get("blue"):
        raise SystemExit("error: the switch to green failed requests or left blue answering")

    stage("7. The way back, and what is kept", "az ml online-endpoint update --traffic \"blue=100 green=0\" "
          "(then az ml online-deployment delete --name blue once green has proved itself)")
    print(f"$ python endpoint.py update --endpoint {endpoint} --traffic \"blue=100 green=0\"   (not run: green stays)")
    print("GET /metrics (answers by deployment):")
    for line in metric_lines(url, "scoring_requests_total{"):
        print("   " + line)


def wait_for(url: str, traffic: dict[str, int]) -> None:
    """Until the endpoint applies the traffic `endpoint.py update` has just recorded (it looks every second)."""
    recorded = time.monotonic()
    deadline = recorded + 10
    while traffic_in_effect(url) != traffic:
        if time.monotonic() > deadline:
            raise SystemExit(f"error: the endpoint did not apply {traffic} within 10 s")
        time.sleep(0.1)
    print(f"   in effect {time.monotonic() - recorded:.1f}s after the update was recorded: {traffic}")


def main() -> int:
    given = os.environ.get("DEMO_ROLLOUT_DIR")
    base = Path(given).resolve() if given else Path(tempfile.mkdtemp(prefix="demo-rollout-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"demo folder: {base}" + ("" if given else " (removed at the end)"))
    try:
        rollout(base)
    finally:
        if not given:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
