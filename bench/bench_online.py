"""Benchmark the online endpoint against `mlflow models serve` of the same model version.

Reads the training data (as train.py does); writes only under a temporary folder (a fresh
registry, MLflow store and server logs), removed at the end, and prints the figures. With
--output it also writes them as JSON.

One run, one machine, one load generator (wrk, Debian's package), one worker per server, the
servers started one at a time on free loopback ports:

    endpoint   python app_score_api.py (this project)
    mlflow     mlflow models serve -m <the version's MLflow model> --env-manager local -w 1
    floor      bench/floor_app.py: FastAPI parsing the same body and answering a constant
               (the framework floor: no endpoint in this framework can be faster)
    in-process the scorer called directly (parse, validate, predict, encode; no HTTP)

for 1-record and 100-record requests at concurrency 1 and 8. Then the same comparison of the
endpoint and `mlflow models serve` for a model of data/german_credit.csv (13 category and 7
number features, one-hot encoded; --no-credit skips it) at concurrency 8. Before timing, it
checks that every server's probabilities equal the pipeline's own predict_proba to 1e-9.

    python bench/bench_online.py                 # or: make bench-online
    python bench/bench_online.py --rounds 5 --duration 5 --output bench/results.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_online")

# wrk runs this script; done() prints one machine-readable line.
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\"requests\": %%d, \"duration_us\": %%d, \"socket_errors\": %%d, \"non2xx\": %%d, \"p50_us\": %%d, \"p99_us\": %%d, \"max_us\": %%d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


class BenchError(Exception):
    """An expected failure (wrk missing, a server that does not start), with the line to print."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(url: str, payload: Any, timeout: float = 30) -> Any:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class Server:
    """A server process in its own process group, stopped by that group's id."""

    def __init__(self, name: str, command: list[str], port: int, ready_path: str, workdir: Path,
                 env: dict[str, str], ready_probe: Any = None):
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "w") as log_file:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{name} exited while starting: see {self.log_path}:\n"
                                 + self.log_path.read_text()[-2000:])
            try:
                if ready_probe is not None:
                    ready_probe(self.url)
                    break
                with urllib.request.urlopen(self.url + ready_path, timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"{name} not ready after 120 s: see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this run started (uvicorn under mlflow)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_wrk(url: str, body: bytes, connections: int, duration: int, workdir: Path) -> subprocess.Popen:
    script = workdir / f"post_{len(body)}.lua"
    script.write_text(WRK_SCRIPT % body.decode())
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(duration))}s", "--timeout", "10s", "-s", str(script), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_wrk(proc: subprocess.Popen, url: str) -> dict[str, float]:
    stdout, stderr = proc.communicate(timeout=120)
    line = next((l for l in stdout.splitlines() if l.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed against {url}: {stderr.strip() or stdout.strip()}")
    raw = json.loads(line[len("BENCH "):])
    seconds = raw["duration_us"] / 1e6
    return {
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "errors": raw["socket_errors"] + raw["non2xx"],
    }


def run_wrk(url: str, body: bytes, connections: int, duration: int, workdir: Path) -> dict[str, float]:
    return finish_wrk(start_wrk(url, body, connections, duration, workdir), url)


def served_version(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=2) as response:
            return json.loads(response.read()).get("model_version")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def switch_under_load(url: str, registry: Path, body: bytes, duration: int, workdir: Path) -> dict[str, Any]:
    """wrk at concurrency 8 while a new version is registered a third of the way in."""
    from registry import METADATA_FILE, Registry

    before = served_version(url)
    proc = start_wrk(url + "/predict", body, 8, duration, workdir)
    time.sleep(duration / 3)
    reg = Registry(registry)
    source = reg.get("latest")

    def write(staging: Path) -> None:  # the same files: a new version number, nothing else
        for item in source.path.iterdir():
            if item.is_file() and item.name != METADATA_FILE:
                shutil.copy(item, staging / item.name)

    metadata = {k: v for k, v in source.metadata.items() if k not in {"version", "registered_at", "model_sha256"}}
    new = reg.register(write, metadata)
    registered = time.monotonic()
    switched = None
    while time.monotonic() < registered + 10:
        if served_version(url) == new.label:
            switched = time.monotonic() - registered
            break
        time.sleep(0.02)
    figures = finish_wrk(proc, url)
    return {**figures, "from": before, "to": new.label, "switch_s": switched}


def in_process(service: Any, body: bytes, duration: float) -> dict[str, float]:
    """The scorer called directly on the raw body: what the endpoint does minus HTTP."""
    import endpoint_http
    from score import extract_records

    def once() -> bytes:
        return endpoint_http.score(service, extract_records(endpoint_http.parse(body)), body)

    for _ in range(50):
        once()
    times = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "rps": len(times) / sum(times),
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "requests": len(times),
        "errors": 0,
    }


CREDIT_CSV = ROOT / "data" / "german_credit.csv"


def prepare(workdir: Path, credit: bool = False) -> dict[str, Any]:
    """Train one version with MLflow into workdir; its registry folder, MLflow model and sample records.

    With `credit`, the version is trained on data/german_credit.csv (the probability of `bad`).
    """
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import mlflow
    import train
    from score import ModelService, sample_records

    name = "credit" if credit else "default"
    registry = workdir / f"registry_{name}"
    table = {"data": CREDIT_CSV, "target": "creditability", "positive_class": "bad"} if credit else {}
    result = train.train(registry_dir=registry, artifacts_dir=workdir / "artifacts", use_mlflow=True, **table)
    mlflow_model = Path(mlflow.artifacts.download_artifacts(
        f"runs:/{result.run_id}/model", dst_path=str(workdir / f"mlflow_model_{name}")))
    service = ModelService.from_registry(registry, result.version.version)
    records = sample_records(100, table.get("data"), service.features, service.schema)
    return {"registry": registry, "mlflow_model": mlflow_model, "service": service, "records": records,
            "version": result.version.label, "run_id": result.run_id}


def pipeline_scores(service: Any, records: list[dict]) -> Any:
    """The registered pipeline's own probabilities for the records (a DataFrame for a table model)."""
    import numpy as np

    if service.schema.plain_numbers:
        return service.model.predict_proba(np.array([[r[f] for f in service.features] for r in records]))[:, 1]
    return service.model.predict_proba(service.schema.frame(service.to_matrix(records)))[:, 1]


def check_scores(name: str, url: str, records: list[dict], expected: Any, mlflow_style: bool) -> float:
    """Largest difference between a server's probabilities and the pipeline's predict_proba."""
    import numpy as np

    if mlflow_style:
        answer = post_json(url + "/invocations", {"dataframe_records": records})
        got = np.asarray(answer["predictions"], dtype=float)
        got = got[:, 1] if got.ndim == 2 else got
    else:
        answer = post_json(url + "/predict", {"records": records})
        got = np.asarray([r["probability"] for r in answer["results"]], dtype=float)
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= 1e-9:
        raise BenchError(f"{name} scores differ from the pipeline's predict_proba by {diff:.3g}")
    return diff


def run_benchmark(duration: int, warmup: int, rounds: int, sizes: list[int], concurrency: list[int]) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="bench-online-"))
    servers: list[Server] = []
    try:
        log.info("training one version with MLflow in %s", workdir)
        ctx = prepare(workdir)
        records, service = ctx["records"], ctx["service"]
        expected = pipeline_scores(service, records)  # the pipeline's own answer
        bodies = {n: json.dumps({"records": records[:n]}).encode() for n in sizes}
        mlflow_bodies = {n: json.dumps({"dataframe_records": records[:n]}).encode() for n in sizes}
        env = {**os.environ, "PYTHONWARNINGS": "ignore",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("SCORING_API_KEY", None)
        py = sys.executable

        def floor_probe(url: str) -> None:
            post_json(url + "/predict", {"records": records[:1]}, timeout=1)

        plan = [
            ("endpoint", [py, "app_score_api.py", "--host", "127.0.0.1", "--port", "{port}",
                          "--registry-dir", str(ctx["registry"]), "--workers", "1"], "/ready", None, False),
            ("mlflow", [str(Path(py).parent / "mlflow"), "models", "serve", "-m", str(ctx["mlflow_model"]),
                        "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}", "-w", "1"], "/ping", None, True),
            ("floor", [py, "-m", "uvicorn", "floor_app:app", "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1",
                       "--port", "{port}", "--workers", "1", "--no-access-log", "--log-level", "warning"],
             None, floor_probe, False),
        ]
        results: dict[str, Any] = {"version": ctx["version"], "duration_s": duration, "rounds": rounds,
                                   "load_average": os.getloadavg(), "runs": {}, "score_diff": {}}
        started: dict[str, tuple[Server, bool]] = {}
        for name, command, ready_path, probe, mlflow_style in plan:
            port = free_port()
            log.info("starting %s on port %d", name, port)
            server = Server(name, [c.replace("{port}", str(port)) for c in command], port, ready_path or "/",
                            workdir, env, probe)
            servers.append(server)
            started[name] = (server, mlflow_style)
            if name != "floor":
                results["score_diff"][name] = check_scores(name, server.url, records, expected, mlflow_style)
        # Idle servers cost nothing, so all run at once and take turns: each round measures every
        # server on every case back to back, and the median round is reported. Load from other
        # work on the machine then falls on all of them alike.
        samples: dict[str, list[dict[str, float]]] = {}
        for round_number in range(1, rounds + 1):
            for n in sizes:
                for c in concurrency:
                    for name, (server, mlflow_style) in started.items():
                        url = server.url + ("/invocations" if mlflow_style else "/predict")
                        body = (mlflow_bodies if mlflow_style else bodies)[n]
                        run_wrk(url, body, c, warmup, workdir)
                        figures = run_wrk(url, body, c, duration, workdir)
                        if figures["errors"]:
                            raise BenchError(f"{name}: {figures['errors']} failed requests at {n} records, c={c}")
                        samples.setdefault(f"{name}/{n}/{c}", []).append(figures)
                        log.info("round %d %-9s %3d records c=%d: %8.0f req/s  p50 %.2f ms  p99 %.2f ms",
                                 round_number, name, n, c, figures["rps"], figures["p50_ms"], figures["p99_ms"])
            for n in sizes:
                samples.setdefault(f"in-process/{n}/1", []).append(in_process(service, bodies[n], duration))
        log.info("version switch under load")
        results["switch"] = switch_under_load(started["endpoint"][0].url, ctx["registry"], bodies[min(sizes)],
                                              max(3, duration * 2), workdir)
        for key, runs in samples.items():
            results["runs"][key] = {field: statistics.median(r[field] for r in runs) for field in runs[0]}
            results["runs"][key]["rounds"] = runs
        return results
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_credit(duration: int, warmup: int, rounds: int, sizes: list[int], env: dict[str, str]) -> dict[str, Any]:
    """The endpoint against mlflow models serve for the credit model, concurrency 8, in paired rounds."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-online-credit-"))
    servers: list[Server] = []
    try:
        log.info("training the credit model with MLflow in %s", workdir)
        ctx = prepare(workdir, credit=True)
        records, py = ctx["records"], sys.executable
        expected = pipeline_scores(ctx["service"], records)
        plan = [
            ("credit-endpoint", [py, "app_score_api.py", "--host", "127.0.0.1", "--port", "{port}",
                                 "--registry-dir", str(ctx["registry"]), "--workers", "1"], "/ready", False),
            ("credit-mlflow", [str(Path(py).parent / "mlflow"), "models", "serve", "-m", str(ctx["mlflow_model"]),
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}", "-w", "1"], "/ping", True),
        ]
        results: dict[str, Any] = {"version": ctx["version"], "runs": {}, "score_diff": {}}
        started = []
        for name, command, ready_path, mlflow_style in plan:
            port = free_port()
            server = Server(name, [c.replace("{port}", str(port)) for c in command], port, ready_path, workdir, env, None)
            servers.append(server)
            started.append((name, server, mlflow_style))
            results["score_diff"][name] = check_scores(name, server.url, records, expected, mlflow_style)
        samples: dict[str, list[dict[str, float]]] = {}
        for _ in range(rounds):
            for n in sizes:
                for name, server, mlflow_style in started:
                    key = "dataframe_records" if mlflow_style else "records"
                    body = json.dumps({key: records[:n]}).encode()
                    url = server.url + ("/invocations" if mlflow_style else "/predict")
                    run_wrk(url, body, 8, warmup, workdir)
                    figures = run_wrk(url, body, 8, duration, workdir)
                    if figures["errors"]:
                        raise BenchError(f"{name}: {figures['errors']} failed requests at {n} records")
                    samples.setdefault(f"{name}/{n}/8", []).append(figures)
                    log.info("%-15s %3d records c=8: %8.0f req/s  p99 %.2f ms", name, n, figures["rps"], figures["p99_ms"])
        for key, runs in samples.items():
            results["runs"][key] = {field: statistics.median(r[field] for r in runs) for field in runs[0]}
            results["runs"][key]["rounds"] = runs
        return results
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def credit_report(credit: dict[str, Any], sizes: list[int]) -> list[str]:
    """The credit model's lines of the report: its table, the ratios and the 20x target."""
    runs = credit["runs"]
    lines = ["", f"credit model {credit['version']} (data/german_credit.csv: 13 category and 7 number features), c=8",
             "", "| server | records | req/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in ("credit-endpoint", "credit-mlflow"):
        for n in sizes:
            r = runs[f"{name}/{n}/8"]
            lines.append(f"| {name.split('-')[1]} | {n} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    lines.append("")
    for n in sizes:
        x = ratio(runs, f"credit-endpoint/{n}/8", f"credit-mlflow/{n}/8")
        target = " (target >= 20x): " + ("met" if x >= 20 else "MISSED") if n == 1 else ""
        lines.append(f"- credit model, {n} record(s) c=8 vs mlflow {x:.1f}x{target}")
    lines.append("- credit model, largest |probability - pipeline predict_proba|: "
                 + ", ".join(f"{k.split('-')[1]} {v:.1e}" for k, v in credit["score_diff"].items()))
    return lines


def ratio(runs: dict[str, Any], a: str, b: str) -> float:
    """Median over rounds of a's req/s over b's, each pair measured back to back."""
    return statistics.median(x["rps"] / y["rps"] for x, y in zip(runs[a]["rounds"], runs[b]["rounds"]))


def report(results: dict[str, Any], sizes: list[int], concurrency: list[int]) -> str:
    runs = results["runs"]
    load = ", ".join(f"{v:.1f}" for v in results["load_average"])
    lines = [f"model {results['version']}; one worker per server; median of {results['rounds']} rounds of "
             f"{results['duration_s']} s per case; load average at start {load}"
             + (f"; all processes at niceness {results['nice']}" if results.get("nice") else ""),
             "", "| server | records | concurrency | req/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("endpoint", "mlflow", "floor", "in-process"):
        for n in sizes:
            for c in (concurrency if name != "in-process" else [1]):
                r = runs[f"{name}/{n}/{c}"]
                lines.append(f"| {name} | {n} | {c if name != 'in-process' else '-'} | {r['rps']:,.0f} | "
                             f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    lines += ["", "| ratio of req/s (median of the rounds' ratios) | " + " | ".join(f"{n} rec, c={c}" for n in sizes for c in concurrency) + " |",
              "| --- | " + " | ".join("---:" for _ in sizes for _ in concurrency) + " |"]
    for label, other in (("endpoint / mlflow", "mlflow"), ("endpoint / framework floor", "floor")):
        cells = [f"{ratio(runs, f'endpoint/{n}/{c}', f'{other}/{n}/{c}'):.2f}x"
                 for n in sizes for c in concurrency]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("- largest |probability - pipeline predict_proba| over 100 records: "
                 + ", ".join(f"{k} {v:.1e}" for k, v in results["score_diff"].items()))
    sw = results.get("switch")
    if sw:
        steady = runs.get(f"endpoint/{sizes[0]}/8") or {}
        switch_time = f"{sw['switch_s']:.2f} s" if sw["switch_s"] is not None else "not within 10 s"
        lines.append(f"- version switch under load ({sizes[0]} record(s), c=8): {sw['from']} -> {sw['to']} served "
                     f"{switch_time} after registration; {sw['requests']} requests, {sw['errors']} failed; "
                     f"p99 {sw['p99_ms']:.2f} ms, max {sw['max_ms']:.2f} ms (steady runs: p99 "
                     f"{steady.get('p99_ms', float('nan')):.2f} ms, max {steady.get('max_ms', float('nan')):.2f} ms)")
    checks = []
    if "endpoint/1/8" in runs and "mlflow/1/8" in runs:
        x = ratio(runs, "endpoint/1/8", "mlflow/1/8")
        checks.append(f"- 1 record c=8 vs mlflow {x:.1f}x (target >= 15x): {'met' if x >= 15 else 'MISSED'}")
    if "endpoint/100/8" in runs and "mlflow/100/8" in runs:
        x = ratio(runs, "endpoint/100/8", "mlflow/100/8")
        checks.append(f"- 100 records c=8 vs mlflow {x:.1f}x (target >= 8x): {'met' if x >= 8 else 'MISSED'}")
    if sw:
        ok = sw["errors"] == 0 and sw["switch_s"] is not None and sw["switch_s"] < 2
        checks.append(f"- new version served without a restart, within 2 s, no request failed: {'met' if ok else 'MISSED'}")
    if "endpoint/1/1" in runs:
        p99 = runs["endpoint/1/1"]["p99_ms"]
        checks.append(f"- p99 at c=1, 1 record {p99:.2f} ms (target < 2 ms): {'met' if p99 < 2 else 'MISSED'}")
    if results.get("credit"):
        checks += credit_report(results["credit"], sizes)
    return "\n".join(lines + checks)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark app_score_api.py against mlflow models serve, a framework floor and the "
                    "scorer in process, with wrk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per measured wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every case on every server; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run")
    parser.add_argument("--sizes", type=_int_list, default=[1, 100], help="records per request")
    parser.add_argument("--concurrency", type=_int_list, default=[1, 8], help="open connections")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures here as JSON")
    parser.add_argument("--no-credit", action="store_true",
                        help="skip the credit model (data/german_credit.csv) against mlflow models serve")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the benchmark and every process it starts at this niceness (negative, as "
                             "root, to measure the software rather than other work on a shared machine)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sys.path.insert(0, str(ROOT))
    try:
        if args.nice:
            try:
                os.nice(args.nice)  # the servers and wrk inherit it
            except OSError as exc:
                raise BenchError(f"cannot set niceness {args.nice}: {exc.strerror} (negative values need root)") from None
        results = run_benchmark(args.duration, args.warmup, args.rounds, args.sizes, args.concurrency)
        results["nice"] = args.nice
        if not args.no_credit:
            env = {**os.environ, "PYTHONWARNINGS": "ignore",
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
            env.pop("SCORING_API_KEY", None)
            results["credit"] = run_credit(args.duration, args.warmup, args.rounds, args.sizes, env)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(results, args.sizes, args.concurrency))
    if args.output is not None:
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
