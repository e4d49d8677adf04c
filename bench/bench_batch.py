"""Benchmark batch_score.py against a naive pandas baseline and an I/O floor, side by side.

For each size (default 1M and 4M rows of 30 features plus account_id, written by
generate_raw_data into a scratch folder) it runs, each in its own process so that peak RSS
is its own:

  batch_score   `python batch_score.py --input F --output O` (the real command, model load included)
  naive         pandas.read_csv of the whole file, predict_proba, DataFrame.to_csv
  io_floor      pyarrow streaming read and write of the same file with two constant columns
                added and no model (pyarrow's own reading: numbers are parsed, then written)
  copy_floor    the same without parsing numbers (every cell passed through as text): a
                lower bound no scorer can reach, since scoring needs the numbers

and prints wall time, rows/s and peak RSS (from wait4, per process), the ratios the targets
are stated in, and the largest score difference between batch_score and the baseline.
Writes nothing outside the scratch folder (removed at the end unless --keep).

    .venv/bin/python bench/bench_batch.py                  # 1M and 4M rows
    .venv/bin/python bench/bench_batch.py --rows 200000    # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("batch_score", "naive", "io_floor", "copy_floor")
TARGETS = {"speedup_vs_naive": 4.0, "time_vs_floor": 1.3, "peak_rss_mb": 400.0, "rss_4m_vs_1m": 1.2}


# ----- the two comparison passes (run in a child process) ----------------------------------
def naive(input_path: str, output_path: str, registry_dir: str) -> None:
    import pandas as pd

    from score import ModelService

    service = ModelService.from_registry(registry_dir)
    frame = pd.read_csv(input_path)
    proba = service.model.predict_proba(frame[service.features])
    frame["prediction"] = service.model.classes_[proba.argmax(axis=1)]
    frame["score"] = proba[:, 1]
    frame["model_version"] = service.version
    frame.to_csv(output_path, index=False)


def io_floor(input_path: str, output_path: str, block_size: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(output_path, "wb") as sink:
        reader = pacsv.open_csv(input_path, read_options=pacsv.ReadOptions(block_size=block_size))
        writer = None
        for batch in reader:
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            table = table.append_column("prediction", pa.array([0] * n, pa.int64()))
            table = table.append_column("model_version", pa.array(["v000"] * n))
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()


def copy_floor(input_path: str, output_path: str, block_size: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(input_path, "rb") as source, open(output_path, "wb") as sink:
        names = source.readline().decode().rstrip("\n").split(",")
        sink.write((",".join(names + ["prediction", "model_version"]) + "\n").encode())
        reader = pacsv.open_csv(
            source, read_options=pacsv.ReadOptions(column_names=names, block_size=block_size),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
        )
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        for batch in reader:
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            table = table.append_column("prediction", pa.array([0] * n, pa.int64()))
            table = table.append_column("model_version", pa.array(["v000"] * n))
            pacsv.write_csv(table, sink, options)


# ----- measuring -------------------------------------------------------------------------------
def measure(cmd: list[str]) -> dict:
    """Wall time and peak RSS of one child process (wait4 gives that child's own rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return {"seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def make_input(path: Path, rows: int) -> None:
    import generate_raw_data as gen

    source = gen.load_source()
    with open(path, "wb") as sink:
        gen.write_day(sink, gen.generate_chunks(source, dt.date(2026, 11, 26), rows, seed=7))


def max_score_difference(a: str, b: str) -> tuple[float, int]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def scores(path: Path):
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            include_columns=["score"], column_types={"score": pa.float64()}))
        return table.column("score").to_numpy()

    x, y = scores(a), scores(b)
    if len(x) != len(y):
        return float("inf"), len(x)
    return float(np.abs(x - y).max()), len(x)


def child(*args: str) -> str:
    """Run a step of the benchmark in its own process (the parent stays small: see measure())."""
    done = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: step {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def run(sizes: list[int], workdir: Path, registry_dir: Path, block_size: int) -> dict:
    python = sys.executable
    results: dict = {"sizes": {}}
    for rows in sizes:
        data = workdir / f"new_data_{rows}.csv"
        print(f"generating {rows:,} rows ...", file=sys.stderr, flush=True)
        child("generate", str(data), str(rows))
        size_mb = data.stat().st_size / 2**20
        entry = {"file_mb": round(size_mb, 1), "methods": {}}
        outputs = {m: workdir / f"out_{m}_{rows}.csv" for m in METHODS}
        commands = {
            "batch_score": [python, "batch_score.py", "--input", str(data), "--output", str(outputs["batch_score"]),
                            "--registry-dir", str(registry_dir), "--block-size", str(block_size)],
            "naive": [python, __file__, "--child", "naive", str(data), str(outputs["naive"]), str(registry_dir)],
            "io_floor": [python, __file__, "--child", "io_floor", str(data), str(outputs["io_floor"]), str(block_size)],
            "copy_floor": [python, __file__, "--child", "copy_floor", str(data), str(outputs["copy_floor"]),
                           str(block_size)],
        }
        os.sync()
        for method in METHODS:
            print(f"  {method} ...", file=sys.stderr, flush=True)
            m = measure(commands[method])
            m["rows_per_s"] = rows / m["seconds"]
            entry["methods"][method] = m
        diff, count = json.loads(child("diff", str(outputs["batch_score"]), str(outputs["naive"])))
        entry["max_abs_score_diff"] = diff
        entry["rows_checked"] = count
        ours, base, floor, copy = (entry["methods"][m] for m in METHODS)
        entry["speedup_vs_naive"] = ours["rows_per_s"] / base["rows_per_s"]
        entry["time_vs_floor"] = ours["seconds"] / floor["seconds"]
        entry["time_vs_copy_floor"] = ours["seconds"] / copy["seconds"]
        results["sizes"][rows] = entry
        for out in outputs.values():
            out.unlink(missing_ok=True)
        data.unlink()
    if len(sizes) >= 2:
        small, large = results["sizes"][sizes[0]], results["sizes"][sizes[-1]]
        results["rss_large_vs_small"] = (large["methods"]["batch_score"]["peak_rss_mb"]
                                         / small["methods"]["batch_score"]["peak_rss_mb"])
    return results


def report(results: dict) -> str:
    lines = []
    header = f"{'rows':>10} {'method':<12} {'seconds':>8} {'rows/s':>11} {'peak RSS MB':>12}"
    lines.append(header)
    lines.append("-" * len(header))
    for rows, entry in results["sizes"].items():
        for method, m in entry["methods"].items():
            lines.append(f"{rows:>10,} {method:<12} {m['seconds']:>8.2f} {m['rows_per_s']:>11,.0f} {m['peak_rss_mb']:>12.0f}")
    lines.append("")
    for rows, entry in results["sizes"].items():
        ours = entry["methods"]["batch_score"]
        lines.append(
            f"{rows:>10,} rows ({entry['file_mb']:.0f} MB): batch_score is {entry['speedup_vs_naive']:.2f}x the naive rows/s "
            f"(target >= {TARGETS['speedup_vs_naive']}), {entry['time_vs_floor']:.2f}x the I/O floor's time "
            f"(target <= {TARGETS['time_vs_floor']}; {entry['time_vs_copy_floor']:.2f}x the text copy's), peak RSS {ours['peak_rss_mb']:.0f} MB "
            f"(target < {TARGETS['peak_rss_mb']:.0f}), max |score - naive score| {entry['max_abs_score_diff']:.1e} "
            f"over {entry['rows_checked']:,} rows (target <= 1e-9)"
        )
    if "rss_large_vs_small" in results:
        lines.append(f"peak RSS, largest vs smallest file: {results['rss_large_vs_small']:.2f}x "
                     f"(target <= {TARGETS['rss_4m_vs_1m']})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark batch_score.py against a naive pandas baseline and an I/O floor.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000], help="file sizes in rows")
    parser.add_argument("--registry-dir", type=Path, default=None,
                        help="registry to score with (default: train one version into the scratch folder)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--block-size", type=int, default=None, help="bytes per chunk (default: batch_score's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "naive":
            naive(*rest)
        elif kind == "io_floor":
            io_floor(rest[0], rest[1], int(rest[2]))
        elif kind == "copy_floor":
            copy_floor(rest[0], rest[1], int(rest[2]))
        elif kind == "generate":
            make_input(Path(rest[0]), int(rest[1]))
        elif kind == "diff":
            print(json.dumps(max_score_difference(rest[0], rest[1])))
        elif kind == "train":
            import train

            train.train(registry_dir=Path(rest[0]), artifacts_dir=Path(rest[1]), use_mlflow=False)
        elif kind == "block_size":
            import batch_score

            print(batch_score.DEFAULT_BLOCK_SIZE)
        return 0
    # The parent imports nothing heavy: a child's peak RSS counts the memory it was forked with.
    block_size = args.block_size or int(child("block_size"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        registry_dir = args.registry_dir
        if registry_dir is None:
            registry_dir = workdir / "registry"
            child("train", str(registry_dir), str(workdir / "artifacts"))
        results = run(sorted(args.rows), workdir, registry_dir, block_size)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
