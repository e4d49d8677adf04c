"""pipeline_run_batch.py: the nightly driver on local disk and on Azurite, its log and its locks."""

from __future__ import annotations

import csv
import datetime as dt
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import generate_raw_data
import pipeline_run_batch as pipeline
import runlog
import storage
from conftest import ROOT, free_port, run_script

DAY = dt.date(2026, 11, 26)


def make_raw(*days: dt.date, rows: int = 120, seed: int = 42, store=None) -> None:
    generate_raw_data.generate(list(days), rows=rows, seed=seed, store=store or storage.LocalStorage())


def log_rows() -> list[dict[str, str]]:
    return runlog.read()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = pipeline.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_run_scores_the_day_and_logs_it(zones, capsys, service):
    make_raw(DAY)
    started = time.perf_counter()
    code, out, err = run(capsys, "--date", "2026-11-26")
    wall = time.perf_counter() - started
    assert code == 0, err
    curated = zones["curated"] / "predictions_20261126.csv"
    assert out.splitlines()[0].startswith("2026-11-26 success 120 rows, score min ")
    assert out.splitlines()[-1] == f"log: {zones['logs'] / 'batch_runs_log.csv'}"
    result = pd.read_csv(curated)
    with open(zones["logs"] / "batch_runs_log.csv", newline="") as handle:
        assert next(csv.reader(handle)) == list(runlog.COLUMNS)
    (row,) = log_rows()
    assert row["status"] == "success" and row["error"] == ""
    assert row["run_date"] == "2026-11-26" and row["storage"] == "local"
    assert row["input_file"] == str(zones["raw"] / "new_data_20261126.csv")
    assert row["output_file"] == str(curated)
    assert int(row["row_count"]) == len(result) == 120
    assert float(row["min_score"]) == result["score"].min()
    assert float(row["max_score"]) == result["score"].max()
    assert float(row["mean_score"]) == pytest.approx(result["score"].mean(), abs=1e-12)
    assert row["model_version"] == service.version == "v002"
    duration = float(row["duration_s"])  # the run's own time: more than nothing, less than the call around it
    assert 0 < duration < wall, (duration, wall)
    assert out.splitlines()[0].endswith(f"-> {curated} ({duration:.2f} s)")
    assert dt.datetime.fromisoformat(row["timestamp"]).tzinfo is not None


@pytest.mark.parametrize("case", ["missing input", "bad columns", "bad rows"])
def test_a_failed_run_logs_the_error_and_leaves_no_curated_file(zones, capsys, case):
    if case != "missing input":
        make_raw(DAY)
        path = zones["raw"] / "new_data_20261126.csv"
        frame = pd.read_csv(path, dtype=str)
        if case == "bad columns":
            frame = frame.drop(columns=["mean radius"])
        else:
            frame.loc[41, "worst area"] = "n/a"
        frame.to_csv(path, index=False)
    code, out, err = run(capsys, "--date", "2026-11-26")
    assert code == 1
    expected = {
        "missing input": "does not exist (generate it with: python generate_raw_data.py --date 2026-11-26)",
        "bad columns": "missing feature column(s) 'mean radius'",
        "bad rows": "row 42 (file line 43), column 'worst area': expected a number, got 'n/a'",
    }[case]
    assert len(err.strip().splitlines()) == 1 and expected in err and err.startswith("error: 2026-11-26 failed: ")
    (row,) = log_rows()
    assert row["status"] == "failed" and expected in row["error"]
    assert row["row_count"] == "" and row["mean_score"] == ""
    assert not zones["curated"].exists() or list(zones["curated"].iterdir()) == []


def test_no_model_is_a_logged_failure(zones, capsys, tmp_path, monkeypatch):
    make_raw(DAY)
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(tmp_path / "empty-registry"))
    code, _, err = run(capsys, "--date", "2026-11-26")
    assert code == 1 and "no model" in err.lower()
    (row,) = log_rows()
    assert row["status"] == "failed" and row["model_version"] == ""


def test_a_rerun_replaces_the_output_and_logs_again(zones, capsys):
    make_raw(DAY, seed=1)
    assert run(capsys, "--date", "2026-11-26")[0] == 0
    first = (zones["curated"] / "predictions_20261126.csv").read_bytes()
    make_raw(DAY, seed=2, rows=80)
    assert run(capsys, "--date", "2026-11-26", "--model-version", "1")[0] == 0
    second = pd.read_csv(zones["curated"] / "predictions_20261126.csv")
    assert len(second) == 80 and set(second["model_version"]) == {"v001"}
    assert (zones["curated"] / "predictions_20261126.csv").read_bytes() != first
    assert [r["row_count"] for r in log_rows()] == ["120", "80"]
    assert sorted(p.name for p in zones["curated"].iterdir()) == ["predictions_20261126.csv"]


def test_a_backfill_runs_every_day_and_goes_on_after_a_failure(zones, capsys):
    make_raw(dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 23))
    code, out, err = run(capsys, "--start", "2026-11-20", "--end", "2026-11-23")
    assert code == 1
    assert out.splitlines()[-1] == f"3 of 4 runs succeeded; log: {zones['logs'] / 'batch_runs_log.csv'}"
    assert "2026-11-22 failed" in err
    rows = log_rows()
    assert [(r["run_date"], r["status"]) for r in rows] == [
        ("2026-11-20", "success"), ("2026-11-21", "success"), ("2026-11-22", "failed"), ("2026-11-23", "success")]
    assert sorted(p.name for p in zones["curated"].iterdir()) == [
        "predictions_20261120.csv", "predictions_20261121.csv", "predictions_20261123.csv"]


@pytest.mark.parametrize("argv, message", [
    (["--date", "../x"], "invalid date '../x': expected YYYY-MM-DD, for example 2026-11-26"),
    (["--date", "2026-13-01"], "invalid date '2026-13-01': month must be in 1..12"),
    (["--date", "20261126"], "invalid date '20261126': expected YYYY-MM-DD, for example 2026-11-26"),
    (["--date", "2026-11-26/../../etc"],
     "invalid date '2026-11-26/../../etc': expected YYYY-MM-DD, for example 2026-11-26"),
    (["--start", "2026-11-20"], "--start and --end go together"),
    (["--start", "2026-11-22", "--end", "2026-11-20"], "--end 2026-11-20 is before --start 2026-11-22"),
    (["--date", "2026-11-26", "--start", "2026-11-20", "--end", "2026-11-21"],
     "give either --date or --start/--end, not both"),
    (["--date", "2026-11-26", "--model-version", "x"], "invalid model version 'x': use 'latest', a number like 2, or v002"),
    (["--date", "2026-11-26", "--model-version", "v2x"],
     "invalid model version 'v2x': use 'latest', a number like 2, or v002"),
])
def test_bad_dates_are_rejected_before_anything_runs(zones, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", f"error: {message}\n")
    assert log_rows() == []


def test_storage_unreachable_is_a_clear_logged_failure(zones, capsys, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       storage.AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", f"127.0.0.1:{port}"))
    started = time.monotonic()
    code, _, err = run(capsys, "--date", "2026-11-26", "--storage", "blob")
    assert code == 1
    assert f"blob storage unreachable at http://127.0.0.1:{port}/devstoreaccount1" in err
    assert time.monotonic() - started < 30
    (row,) = log_rows()
    assert row["status"] == "failed" and row["storage"] == "blob" and "unreachable" in row["error"]


def test_a_bad_connection_string_is_a_logged_failure(zones, capsys, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "not a connection string")
    code, _, err = run(capsys, "--date", "2026-11-26", "--storage", "blob")
    assert code == 1 and "invalid $AZURE_STORAGE_CONNECTION_STRING" in err and "Traceback" not in err
    (row,) = log_rows()
    assert row["status"] == "failed" and row["input_file"] == "raw/new_data_20261126.csv"


def test_a_second_run_of_the_same_date_refuses_while_the_first_holds_the_lock(zones, capsys):
    make_raw(DAY)
    with pipeline.date_lock(DAY, "local"):
        code, _, err = run(capsys, "--date", "2026-11-26")
    assert code == 1 and "another run for 2026-11-26 is in progress" in err
    assert not (zones["curated"] / "predictions_20261126.csv").exists()
    assert run(capsys, "--date", "2026-11-26")[0] == 0  # released: the next run goes ahead
    assert [r["status"] for r in log_rows()] == ["failed", "success"]


def test_wait_queues_behind_a_run_in_progress(zones):
    make_raw(DAY)
    with pipeline.date_lock(DAY, "local"):
        proc = subprocess.Popen([sys.executable, "pipeline_run_batch.py", "--date", "2026-11-26", "--wait"],
                                cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = ""
        while "waiting for it" not in waiting and proc.poll() is None:
            waiting = proc.stderr.readline()
        assert waiting == f"WARNING pipeline_run_batch: another run of 2026-11-26 holds {_lock_path(zones)}; waiting for it\n"
        assert proc.poll() is None  # it waits for the lock rather than failing
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "2026-11-26 success" in out
    assert [r["status"] for r in log_rows()] == ["success"]


def test_a_killed_run_leaves_no_stale_lock(zones, capsys):
    make_raw(DAY)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, datetime, pipeline_run_batch as p\n"
         "with p.date_lock(datetime.date(2026, 11, 26), 'local'):\n"
         "    print('locked', flush=True); sys.stdin.read()"],
        cwd=ROOT, env={**os.environ}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run(capsys, "--date", "2026-11-26")[0] == 1  # held
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        holder.stdin.close()
        holder.stdout.close()
    assert run(capsys, "--date", "2026-11-26")[0] == 0
    assert [r["status"] for r in log_rows()] == ["failed", "success"]


def _append_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        runlog.append({"timestamp": f"w{worker}", "run_date": f"2026-11-{i % 28 + 1:02d}",
                       "status": "success", "error": "x, y \"quoted\"\nsecond line" * 20,
                       "row_count": i}, path=Path(path))


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "log.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 60)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    rows = runlog.read(path)
    assert len(rows) == 240
    assert path.read_text().count("\n") == 241  # messages are made one line
    assert all(r["error"].startswith('x, y "quoted" second line') for r in rows)
    assert sorted(int(r["row_count"]) for r in rows if r["timestamp"] == "w3") == list(range(60))


def test_extra_columns_from_another_module(zones, capsys, monkeypatch):
    """A monitor sees every chunk and adds its own columns to the run's row."""
    monkeypatch.setattr(runlog, "EXTRA_COLUMNS", ("drift_rows", "drift_flag"))
    monkeypatch.setattr(runlog, "COLUMNS", runlog.BASE_COLUMNS + runlog.EXTRA_COLUMNS)

    class Monitor:
        def __init__(self):
            self.rows, self.features = 0, None

        def on_chunk(self, matrix, scores):
            self.rows += len(scores)
            self.features = matrix.shape[1]

        def log_fields(self, summary):
            return {"drift_rows": self.rows, "drift_flag": summary is not None and self.features == 30}

    # An old log, written before the extra columns existed, gets the new header and keeps its rows.
    old = zones["logs"] / "batch_runs_log.csv"
    old.parent.mkdir(parents=True)
    old.write_text(",".join(runlog.BASE_COLUMNS) + "\n" + "t0,2026-11-01" + "," * 11 + "\n")
    make_raw(DAY, rows=90)
    service = pipeline.ModelService.from_registry()
    monitor = Monitor()
    row = pipeline.run_date(DAY, storage.LocalStorage(), service, monitor=monitor)
    assert row["status"] == "success" and row["drift_rows"] == 90 and row["drift_flag"] is True
    rows = log_rows()
    assert list(rows[0]) == list(runlog.COLUMNS)
    assert rows[0]["timestamp"] == "t0" and rows[0]["drift_rows"] == ""
    assert rows[1]["drift_rows"] == "90" and rows[1]["drift_flag"] == "true"
    with pytest.raises(ValueError, match="not log columns: surprise"):
        runlog.append({"status": "success"}, {"surprise": 1})


def test_end_to_end_as_a_script(zones):
    make_raw(DAY, rows=50)
    done = run_script("pipeline_run_batch.py", "--date", "2026-11-26", env=zones["env"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2026-11-26 success 50 rows")


# ----- blob storage on a real Azurite --------------------------------------------------------
def test_blob_flow_on_azurite(zones, blob_connection, monkeypatch, service, capsys):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", blob_connection)
    store = storage.BlobStorage(blob_connection)
    make_raw(DAY, rows=150, store=store)  # upload raw
    code, out, err = run(capsys, "--date", "2026-11-26", "--storage", "blob")
    assert code == 0, err
    assert "predictions_20261126.csv" in store.list_curated()
    with store.open_curated("predictions_20261126.csv") as handle:
        result = pd.read_csv(handle)
    with store.open_raw("new_data_20261126.csv") as handle:
        source = pd.read_csv(handle)
    assert len(result) == 150
    expected = service.model.predict_proba(source[service.features].to_numpy())[:, 1]
    np.testing.assert_allclose(result["score"], expected, rtol=0, atol=1e-9)
    (row,) = log_rows()
    assert row["storage"] == "blob" and row["status"] == "success"
    assert row["output_file"].endswith("/devstoreaccount1/curated/predictions_20261126.csv")
    assert not zones["curated"].exists()  # nothing went to the local disk

    # A failed run (a bad row in the raw blob) leaves no curated blob for its date.
    day2 = dt.date(2026, 11, 27)
    make_raw(day2, rows=150, store=store)
    with store.open_raw("new_data_20261127.csv") as handle:
        text = handle.read().decode()
    lines = text.splitlines()
    cells = lines[120].split(",")
    cells[1] = "oops"
    lines[120] = ",".join(cells)
    with store.write_raw("new_data_20261127.csv") as sink:
        sink.write(("\n".join(lines) + "\n").encode())
    code, _, err = run(capsys, "--date", "2026-11-27", "--storage", "blob")
    assert code == 1 and "row 120 (file line 121)" in err
    assert "predictions_20261127.csv" not in store.list_curated()
    assert not store.exists_curated("predictions_20261127.csv")


# ----- helpers ---------------------------------------------------------------------------------
def _lock_path(zones) -> Path:
    return zones["logs"] / "locks" / "batch_local_20261126.lock"


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_closed_stdout_reader_does_not_stop_the_remaining_days(zones, unbuffered):
    """`pipeline_run_batch.py --start .. --end .. | head -1`: every day is still scored and logged."""
    days = [DAY + dt.timedelta(days=i) for i in range(4)]
    make_raw(*days, rows=40)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    env = {**os.environ, **zones["env"], "PYTHONUNBUFFERED": unbuffered}
    try:
        done = subprocess.run([sys.executable, "pipeline_run_batch.py", "--start", "2026-11-26", "--end", "2026-11-29"],
                              cwd=ROOT, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=180)
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert [(r["run_date"], r["status"]) for r in log_rows()] == [(f"{d:%Y-%m-%d}", "success") for d in days]
    assert sorted(p.name for p in zones["curated"].iterdir() if p.suffix == ".csv") == [
        f"predictions_{d:%Y%m%d}.csv" for d in days]


def test_an_unknown_well_formed_model_version_is_a_logged_failure(zones, capsys):
    make_raw(DAY)
    code, out, err = run(capsys, "--date", "2026-11-26", "--model-version", "v099")
    missing = f"model version v099 not found in {zones['env']['LOCAL_REGISTRY_DIR']} (available: v001, v002)"
    assert (code, err) == (1, f"error: 2026-11-26 failed: {missing}\n")
    (row,) = log_rows()
    assert (row["status"], row["run_date"], row["error"]) == ("failed", "2026-11-26", missing)


@pytest.mark.parametrize("n", ["0", "-1"])
def test_show_log_takes_one_or_more_runs(zones, capsys, n):
    make_raw(DAY)
    assert run(capsys, "--date", "2026-11-26")[0] == 0
    assert run(capsys, "--show-log", n) == (2, "", f"error: --show-log takes a number of runs, 1 or more; got {n}\n")
    code, out, err = run(capsys, "--show-log", "1")
    assert (code, err, len(out.splitlines())) == (0, "", 2)
