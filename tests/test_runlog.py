"""runlog.py: the run log's columns, one formatting of values, appends under a lock, old rows read back."""

from __future__ import annotations

import csv

import pytest

import runlog


def test_values_are_written_one_way():
    assert [runlog.format_value(v) for v in (None, True, False, 0.1, 3, "two\n lines")] == [
        "", "true", "false", "0.1", "3", "two lines"]


def test_append_writes_the_header_once_then_rows(tmp_path):
    path = tmp_path / "logs" / "runs.csv"
    runlog.append({"run_date": "2026-11-26", "status": "success"}, {"drift_flag": True}, path=path)
    runlog.append({"run_date": "2026-11-27", "status": "failed", "error": "a, b"}, path=path)
    with open(path, newline="") as handle:
        assert next(csv.reader(handle)) == list(runlog.COLUMNS)
    rows = runlog.read(path)
    assert [(r["run_date"], r["status"], r["drift_flag"], r["error"]) for r in rows] == [
        ("2026-11-26", "success", "true", ""), ("2026-11-27", "failed", "", "a, b")]
    assert (tmp_path / "logs" / ".runs.csv.lock").exists()
    with pytest.raises(ValueError, match=r"^not log columns: nope \(add them to runlog.EXTRA_COLUMNS\)$"):
        runlog.append({"nope": 1}, path=path)


def test_old_rows_with_capitalised_booleans_read_as_true_false(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run_date,drift_flag,drift_warn,error\n2026-11-01,True,False,True\n")
    (row,) = runlog.read(path)
    assert (row["drift_flag"], row["drift_warn"], row["error"]) == ("true", "false", "True")


def test_log_path_follows_logs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGS_DIR", str(tmp_path))
    assert runlog.log_path() == tmp_path / "batch_runs_log.csv"
    assert runlog.read() == []
