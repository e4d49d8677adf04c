"""Benchmark the cost of data collection: the endpoint with --collect-data against the same endpoint without.

Trains one version (no MLflow) into a temporary folder, starts `python app_score_api.py` three
times (one worker each, request log on as in production, on free loopback ports): plain, with
--collect-data (sampling 1.0, files under the temporary folder), and plain again as a control
(how far two identical servers measure apart on this machine). Then wrk POSTs one
real record per request at concurrency 8, the two servers taking turns round by round (warm-up,
then a measured run each, the order rotating); the ratio is the median of the rounds' ratios,
so load from anything else on the machine falls on both alike. Checks that every request answered 200 and that every
request of the collecting server was collected (one input and one output line each).

    python bench/bench_collect.py                  # or: make bench-collect
    python bench/bench_collect.py --rounds 7 --duration 5 --output bench/collect.json

The target (issue: data collection): collecting >= 0.85x the requests per second of not collecting.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_online import BenchError, Server, free_port, run_wrk  # noqa: E402

TARGET = 0.85


def start(name: str, registry: Path, workdir: Path, collected: Path, *flags: str) -> Server:
    port = free_port()
    env = {**os.environ, "DATA_COLLECTOR_DIR": str(collected), "PYTHONUNBUFFERED": "1"}
    env.pop("STORAGE_BACKEND", None)
    command = [sys.executable, "app_score_api.py", "--host", "127.0.0.1", "--port", str(port),
               "--registry-dir", str(registry), *flags]
    return Server(name, command, port, "/ready", workdir, env)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc), threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_lines(root: Path, collection: str) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in root.rglob(f"{collection}/**/*.jsonl"))


def run_benchmark(duration: int, warmup: int, rounds: int, connections: int) -> dict[str, Any]:
    import train
    from score import ModelService, sample_records

    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        workdir = Path(tmp)
        registry = workdir / "registry"
        train.train(registry_dir=registry, artifacts_dir=workdir / "artifacts", use_mlflow=False)
        service = ModelService.from_registry(registry)
        body = json.dumps({"records": sample_records(1, features=service.features)}).encode()
        collected = workdir / "collected"
        # "control" is a second plain server: how far two identical servers differ here is the noise.
        servers = {"plain": start("plain", registry, workdir, workdir / "unused"),
                   "collecting": start("collecting", registry, workdir, collected, "--collect-data"),
                   "control": start("control", registry, workdir, workdir / "unused")}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        try:
            for round_index in range(rounds):
                order = list(servers.items())
                shift = round_index % len(order)  # each server takes each place in the order in turn
                order = order[shift:] + order[:shift]
                for name, server in order:
                    run_wrk(server.url + "/predict", body, connections, warmup, workdir)
                    before = cpu_seconds(server.proc.pid)
                    run = run_wrk(server.url + "/predict", body, connections, duration, workdir)
                    run["cpu_ms_per_request"] = (cpu_seconds(server.proc.pid) - before) * 1000 / run["requests"]
                    runs[name].append(run)
        finally:
            for server in servers.values():
                server.stop()  # SIGTERM: the collecting server writes what is still queued
        errors = sum(r["errors"] for rs in runs.values() for r in rs)
        if errors:
            raise BenchError(f"{errors} requests failed; see the server logs")
        sent = sum(r["requests"] for r in runs["collecting"])  # measured runs; warm-ups add more
        lines = {c: count_lines(collected, c) for c in ("model_inputs", "model_outputs")}
        ratios = [c["rps"] / p["rps"] for c, p in zip(runs["collecting"], runs["plain"])]
        control = [c["rps"] / p["rps"] for c, p in zip(runs["control"], runs["plain"])]
        return {
            "connections": connections, "rounds": rounds, "duration_s": duration,
            "plain_rps": statistics.median(r["rps"] for r in runs["plain"]),
            "collecting_rps": statistics.median(r["rps"] for r in runs["collecting"]),
            "plain_p99_ms": statistics.median(r["p99_ms"] for r in runs["plain"]),
            "collecting_p99_ms": statistics.median(r["p99_ms"] for r in runs["collecting"]),
            "ratio": statistics.median(ratios), "ratios": ratios,
            "control_ratio": statistics.median(control), "control_ratios": control,
            # CPU per request is steadier than requests per second on a shared machine: the
            # server's own cost, whatever else runs beside it.
            "plain_cpu_ms": statistics.median(r["cpu_ms_per_request"] for r in runs["plain"]),
            "control_cpu_ms": statistics.median(r["cpu_ms_per_request"] for r in runs["control"]),
            "collecting_cpu_ms": statistics.median(r["cpu_ms_per_request"] for r in runs["collecting"]),
            "measured_requests_collecting": sent, "collected_lines": lines,
            "all_collected": lines["model_inputs"] == lines["model_outputs"] >= sent,
        }


def report(results: dict[str, Any]) -> str:
    met = "met" if results["ratio"] >= TARGET else "NOT met"
    return "\n".join([
        f"1 record per request, concurrency {results['connections']}, {results['rounds']} rounds of "
        f"{results['duration_s']} s, one worker each",
        f"  without collection  {results['plain_rps']:8.0f} req/s   p99 {results['plain_p99_ms']:.2f} ms",
        f"  with collection     {results['collecting_rps']:8.0f} req/s   p99 {results['collecting_p99_ms']:.2f} ms",
        f"  CPU per request     {results['plain_cpu_ms']:.3f} ms without, {results['collecting_cpu_ms']:.3f} ms with "
        f"(ratio {results['plain_cpu_ms'] / results['collecting_cpu_ms']:.3f}); control "
        f"{results['control_cpu_ms']:.3f} ms (ratio {results['plain_cpu_ms'] / results['control_cpu_ms']:.3f})",
        f"  ratio (median of rounds) {results['ratio']:.3f}  (target >= {TARGET}: {met}); "
        f"rounds {', '.join(f'{r:.3f}' for r in results['ratios'])}",
        f"  control: a second server without collection against the first, the noise of this machine: "
        f"{results['control_ratio']:.3f} (rounds {', '.join(f'{r:.3f}' for r in results['control_ratios'])})",
        f"  collected lines: {results['collected_lines']['model_inputs']} inputs, "
        f"{results['collected_lines']['model_outputs']} outputs for {results['measured_requests_collecting']} "
        f"measured requests (plus warm-ups); every request collected: {results['all_collected']}",
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The endpoint's throughput with and without data collection.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=int, default=3, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median ratio is reported")
    parser.add_argument("--concurrency", type=int, default=8, help="open connections")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures here as JSON")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness for the benchmark and every process it starts (negative needs root)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        if args.nice:
            try:
                os.nice(args.nice)  # the servers and wrk inherit it
            except OSError as exc:
                raise BenchError(f"cannot set niceness {args.nice}: {exc.strerror} (negative values need root)") from None
        results = run_benchmark(args.duration, args.warmup, args.rounds, args.concurrency)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(results))
    if args.output is not None:
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, args.output)
    return 0 if results["ratio"] >= TARGET and results["all_collected"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
