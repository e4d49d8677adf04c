"""Benchmark the endpoint served from its YAML (two deployments, traffic split, /metrics) and with
two workers, against the plain endpoint and the framework floor, with wrk.

Trains two versions (without MLflow) into a temporary registry and writes a two-deployment
endpoint there (blue v001 90%, green v002 10%, request_timeout_ms 5000, 16 concurrent requests
per instance, no data collection: the plain endpoint does not collect either); everything is
removed at the end. Servers, started one at a time on free loopback ports, all stay up and take
turns, case by case, so load from other work falls on all of them alike:

    floor      bench/floor_app.py (FastAPI parsing the body, answering a constant), one worker
    plain      python app_score_api.py, one worker
    endpoint   python app_score_api.py --endpoint <the two-deployment YAML>, one worker
    workers-2  python app_score_api.py --workers 2

One-record requests at concurrency 8. Besides req/s it reports the servers' CPU time per request
(user + system, from /proc, workers included): on a shared machine it varies less than req/s.

    python bench/bench_rollout.py                     # or: make bench-rollout
    python bench/bench_rollout.py --rounds 7 --duration 5 --output bench/rollout.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import shutil
from pathlib import Path
from typing import Any

from bench_online import ROOT, BenchError, Server, free_port, post_json, run_wrk

log = logging.getLogger("bench_rollout")
TICKS = os.sysconf("SC_CLK_TCK")

DEPLOYMENT = """name: {name}
endpoint_name: bench-endpoint
model: azureml:risk-classifier:{version}
instance_count: 1
request_settings:
  request_timeout_ms: 5000
  max_concurrent_requests_per_instance: 16
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (uvicorn's workers), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    family = {pid}
    changed = True
    while changed:
        found = {child for child, parent in parents.items() if parent in family} - family
        changed = bool(found)
        family |= found
    return sum(times.get(p, 0.0) for p in family)


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's children that have ended (each finished wrk run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare(workdir: Path) -> tuple[Path, Path, bytes]:
    """(registry with v001 and v002, endpoint YAML, one-record body)."""
    import train
    from score import ModelService, sample_records

    registry = workdir / "registry"
    train.train(registry_dir=registry, artifacts_dir=workdir / "artifacts", use_mlflow=False)
    train.train(registry_dir=registry, artifacts_dir=workdir / "artifacts", random_state=7, use_mlflow=False)
    online = workdir / "online"
    online.mkdir()
    for name, version in (("blue", 1), ("green", 2)):
        (online / f"{name}.yml").write_text(DEPLOYMENT.format(name=name, version=version))
    endpoint = online / "endpoint.yml"
    endpoint.write_text("name: bench-endpoint\ntraffic: {blue: 90, green: 10}\n")
    service = ModelService.from_registry(registry)
    body = json.dumps({"records": sample_records(1, None, service.features, service.schema)}).encode()
    return registry, endpoint, body


def run(duration: int, warmup: int, rounds: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    servers: dict[str, Server] = {}
    try:
        registry, endpoint, body = prepare(workdir)
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "LOCAL_ENDPOINTS_DIR": str(workdir / "state")}
        env.pop("SCORING_API_KEY", None)
        py = sys.executable
        app = [py, "app_score_api.py", "--host", "127.0.0.1", "--port", "{port}", "--registry-dir", str(registry)]
        plan = {
            "floor": [py, "-m", "uvicorn", "floor_app:app", "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1",
                      "--port", "{port}", "--workers", "1", "--no-access-log", "--log-level", "warning"],
            "plain": app + ["--workers", "1"],
            "endpoint": app + ["--workers", "1", "--endpoint", str(endpoint)],
            "workers-2": app + ["--workers", "2"],
        }
        for name, command in plan.items():
            port = free_port()
            probe = (lambda url: post_json(url + "/predict", json.loads(body), timeout=1)) if name == "floor" else None
            servers[name] = Server(name, [c.replace("{port}", str(port)) for c in command], port, "/ready",
                                   workdir, env, probe)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for round_number in range(1, rounds + 1):
            for name, server in servers.items():
                url = server.url + "/predict"
                run_wrk(url, body, 8, warmup, workdir)
                before, wrk_before = cpu_seconds(server.proc.pid), children_cpu_seconds()
                figures = run_wrk(url, body, 8, duration, workdir)
                done = max(1, figures["requests"])
                figures["cpu_us"] = (cpu_seconds(server.proc.pid) - before) / done * 1e6
                figures["wrk_cpu_us"] = (children_cpu_seconds() - wrk_before) / done * 1e6  # the load generator's share
                if figures["errors"]:
                    raise BenchError(f"{name}: {figures['errors']} failed requests")
                samples[name].append(figures)
                log.info("round %d %-9s %8.0f req/s  %6.1f us CPU/request  p99 %.2f ms", round_number, name,
                         figures["rps"], figures["cpu_us"], figures["p99_ms"])
        metrics = urllib_get(servers["endpoint"].url + "/metrics")
        return {"rounds": rounds, "duration_s": duration, "load_average": os.getloadavg(), "cores": os.cpu_count(),
                "samples": samples,
                "endpoint_metrics": [line for line in metrics.splitlines() if line.startswith("scoring_requests_total")]}
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def report(results: dict[str, Any]) -> str:
    samples = results["samples"]

    def ratio(a: str, b: str, field: str = "rps", invert: bool = False) -> float:
        pairs = zip(samples[a], samples[b])
        return statistics.median((y[field] / x[field]) if invert else (x[field] / y[field]) for x, y in pairs)

    load = ", ".join(f"{v:.1f}" for v in results["load_average"])
    lines = [f"1 record, concurrency 8; median of {results['rounds']} rounds of {results['duration_s']} s; "
             f"load average at start {load}", "",
             "| server | req/s | CPU us/request | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, runs in samples.items():
        med = {f: statistics.median(r[f] for r in runs) for f in ("rps", "cpu_us", "p50_ms", "p99_ms")}
        lines.append(f"| {name} | {med['rps']:,.0f} | {med['cpu_us']:.0f} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} |")
    lines += ["", "| ratio (median of the rounds' ratios) | by req/s | by CPU per request |", "| --- | ---: | ---: |"]
    checks = [("plain / floor", "plain", "floor", 0.6), ("endpoint (90/10, /metrics) / plain", "endpoint", "plain", 0.9),
              ("workers-2 / plain", "workers-2", "plain", 1.5)]
    for label, a, b, _ in checks:
        cpu = "-" if a == "workers-2" else f"{ratio(a, b, 'cpu_us', invert=True):.2f}x"
        lines.append(f"| {label} | {ratio(a, b):.2f}x | {cpu} |")
    lines.append("")
    for label, a, b, target in checks:
        x = ratio(a, b)
        lines.append(f"- {label} {x:.2f}x by req/s (target >= {target}x): {'met' if x >= target else 'MISSED'}")
    lines.append(workers_ceiling(samples, results.get("cores") or os.cpu_count() or 1))
    lines.append("- the endpoint's answers: " + "; ".join(results["endpoint_metrics"]))
    return "\n".join(lines)


def workers_ceiling(samples: dict[str, list[dict[str, float]]], cores: int) -> str:
    """How far two workers can scale here: wrk shares the cores, so at most `cores` CPU-seconds per
    second go to the servers' and wrk's CPU per request together; the ceiling's ratio to the plain
    endpoint's req/s, and the share of it that two workers reach (medians of the rounds)."""
    ceilings, reached = [], []
    for two, one in zip(samples["workers-2"], samples["plain"]):
        ceiling = cores / ((two["cpu_us"] + two["wrk_cpu_us"]) / 1e6)
        ceilings.append(ceiling / one["rps"])
        reached.append(two["rps"] / ceiling)
    wrk = statistics.median(r["wrk_cpu_us"] for r in samples["workers-2"])
    return (f"- the ceiling for workers-2 / plain on {cores} cores shared with wrk ({wrk:.0f} us of CPU per request "
            f"for wrk): {statistics.median(ceilings):.2f}x; two workers reach {statistics.median(reached):.0%} of it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark the endpoint from its YAML and with two workers "
                                                 "against the plain endpoint and the framework floor, with wrk.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=int, default=3, help="seconds per measured wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every server; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures here as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sys.path.insert(0, str(ROOT))
    if shutil.which("wrk") is None:
        print("error: wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 1
    try:
        results = run(args.duration, args.warmup, args.rounds)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(results))
    if args.output is not None:
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
