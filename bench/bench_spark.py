"""Benchmark the Spark engine against the streaming engine and a naive pandas baseline, side by side.

For each size (default 1M and 4M rows, written by generate_raw_data into a scratch folder) it
runs, each as its own command and process tree:

  stream        `python batch_score.py --input F --output O` (the default engine)
  spark_local1  `python spark_engine.py --input F --output O --spark-master local[1]`
  spark_local2  the same on local[2]
  naive         pandas.read_csv of the whole file, predict_proba, DataFrame.to_csv (bench_batch.py's)

Every command includes its start-up (the JVM's and the session's for Spark) and the model load.
Memory is sampled every 0.2 s from /proc: the driver's own peak RSS (the Python process that
runs the command) and the peak RSS of its whole process tree (for Spark: the JVM and the
Python workers too, i.e. the whole local cluster). Scores: the Spark outputs must be
byte-identical to the streaming engine's, and the largest |score - naive score| is shown.

    .venv/bin/python bench/bench_spark.py                  # 1M and 4M rows
    .venv/bin/python bench/bench_spark.py --rows 200000    # a quick look
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_batch  # noqa: E402  (its child steps: generate, train, naive, diff)

METHODS = ("stream", "spark_local1", "spark_local2", "naive")
TARGET_VS_NAIVE = 1.5  # spark_local2 rows/s over naive's at the largest size


def _tree_rss(root: int) -> tuple[int, int]:
    """(RSS of `root`, RSS of `root` and all its descendants), in kB, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as handle:
                pages = int(handle.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return rss.get(root, 0), total


def measure(cmd: list[str]) -> dict:
    """Wall time, the driver's peak RSS and its process tree's peak RSS (sampled every 0.2 s)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    driver = tree = 0
    while proc.poll() is None:
        own, whole = _tree_rss(proc.pid)
        driver, tree = max(driver, own), max(tree, whole)
        time.sleep(0.2)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-800:]}")
    return {"seconds": wall, "driver_rss_mb": driver / 1024, "tree_rss_mb": tree / 1024, "stderr": err.strip()}


def run(sizes: list[int], workdir: Path, registry_dir: Path) -> dict:
    python = sys.executable
    results: dict = {"sizes": {}, "cores": os.cpu_count(), "load_before": os.getloadavg()[0]}
    for rows in sizes:
        data = workdir / f"new_data_{rows}.csv"
        print(f"generating {rows:,} rows ...", file=sys.stderr, flush=True)
        bench_batch.child("generate", str(data), str(rows))
        entry = {"file_mb": round(data.stat().st_size / 2**20, 1), "methods": {}}
        out = {m: workdir / f"out_{m}_{rows}.csv" for m in METHODS}
        spark = [python, "spark_engine.py", "--input", str(data), "--registry-dir", str(registry_dir)]
        commands = {
            "stream": [python, "batch_score.py", "--input", str(data), "--output", str(out["stream"]),
                       "--registry-dir", str(registry_dir)],
            "spark_local1": spark + ["--output", str(out["spark_local1"]), "--spark-master", "local[1]"],
            "spark_local2": spark + ["--output", str(out["spark_local2"]), "--spark-master", "local[2]"],
            "naive": [python, bench_batch.__file__, "--child", "naive", str(data), str(out["naive"]), str(registry_dir)],
        }
        os.sync()
        for method in METHODS:
            print(f"  {method} ... (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            m = measure(commands[method])
            m["rows_per_s"] = rows / m["seconds"]
            entry["methods"][method] = m
        entry["spark_bytes_equal_stream"] = all(
            filecmp.cmp(out[m], out["stream"], shallow=False) for m in ("spark_local1", "spark_local2"))
        diff, count = json.loads(bench_batch.child("diff", str(out["stream"]), str(out["naive"])))
        entry["max_abs_score_diff_vs_naive"], entry["rows_checked"] = diff, count
        methods = entry["methods"]
        entry["local2_vs_naive"] = methods["spark_local2"]["rows_per_s"] / methods["naive"]["rows_per_s"]
        entry["local2_vs_local1"] = methods["spark_local2"]["rows_per_s"] / methods["spark_local1"]["rows_per_s"]
        entry["stream_vs_local2"] = methods["stream"]["rows_per_s"] / methods["spark_local2"]["rows_per_s"]
        results["sizes"][rows] = entry
        for path in out.values():
            path.unlink(missing_ok=True)
        data.unlink()
    results["load_after"] = os.getloadavg()[0]
    return results


def report(results: dict) -> str:
    header = f"{'rows':>10} {'engine':<13} {'seconds':>8} {'rows/s':>10} {'driver RSS MB':>14} {'tree RSS MB':>12}"
    lines = [header, "-" * len(header)]
    for rows, entry in results["sizes"].items():
        for method, m in entry["methods"].items():
            lines.append(f"{rows:>10,} {method:<13} {m['seconds']:>8.1f} {m['rows_per_s']:>10,.0f} "
                         f"{m['driver_rss_mb']:>14.0f} {m['tree_rss_mb']:>12.0f}")
    lines.append("")
    for rows, entry in results["sizes"].items():
        lines.append(
            f"{rows:>10,} rows ({entry['file_mb']:.0f} MB): spark local[2] is {entry['local2_vs_naive']:.2f}x naive's rows/s "
            f"(target >= {TARGET_VS_NAIVE} at the largest size), {entry['local2_vs_local1']:.2f}x local[1]'s; "
            f"the streaming engine is {entry['stream_vs_local2']:.2f}x local[2]'s; Spark outputs byte-identical to "
            f"the streaming engine's: {entry['spark_bytes_equal_stream']}; max |score - naive| "
            f"{entry['max_abs_score_diff_vs_naive']:.1e} over {entry['rows_checked']:,} rows"
        )
    lines.append(f"{results['cores']} cores; load average {results['load_before']:.1f} before, "
                 f"{results['load_after']:.1f} after")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark the Spark engine against the streaming engine and naive pandas.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000], help="file sizes in rows")
    parser.add_argument("--registry-dir", type=Path, default=None,
                        help="registry to score with (default: train one version into the scratch folder)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-spark-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        registry_dir = args.registry_dir
        if registry_dir is None:
            registry_dir = workdir / "registry"
            bench_batch.child("train", str(registry_dir), str(workdir / "artifacts"))
        results = run(sorted(args.rows), workdir, registry_dir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
