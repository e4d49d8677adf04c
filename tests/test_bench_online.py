"""bench/bench_online.py's report: the table, the ratios of paired rounds and the target lines."""

from __future__ import annotations

import argparse

import pytest

from bench import bench_online
from conftest import run_script


def runs_for(rps: dict[str, list[float]], p99: float = 1.5) -> dict:
    runs = {}
    for key, values in rps.items():
        rounds = [{"rps": v, "p50_ms": 0.3, "p99_ms": p99, "max_ms": 3.0, "requests": 100, "errors": 0} for v in values]
        runs[key] = {**rounds[len(rounds) // 2], "rounds": rounds}
    return runs


def test_report_pairs_rounds_and_checks_the_targets():
    rps = {}
    for n in (1, 100):
        for c in (1, 8):
            rps[f"endpoint/{n}/{c}"] = [1000.0, 2000.0, 3000.0]
            rps[f"mlflow/{n}/{c}"] = [100.0, 100.0, 100.0] if n == 1 else [200.0, 100.0, 500.0]
            rps[f"floor/{n}/{c}"] = [4000.0, 4000.0, 4000.0]
        rps[f"in-process/{n}/1"] = [9000.0]
    results = {"version": "v001", "duration_s": 3, "rounds": 3, "load_average": (1.0, 1.0, 1.0), "nice": -10,
               "runs": runs_for(rps), "score_diff": {"endpoint": 0.0, "mlflow": 2e-16},
               "switch": {"from": "v001", "to": "v002", "switch_s": 0.4, "requests": 900, "errors": 0,
                          "p99_ms": 2.0, "max_ms": 5.0}}
    text = bench_online.report(results, [1, 100], [1, 8])
    assert "all processes at niceness -10" in text
    assert "| endpoint | 1 | 8 | 2,000 | 0.30 | 1.50 |" in text
    # 100 records: rounds 1000/200, 2000/100, 3000/500 -> ratios 5, 20, 6 -> median 6, not 2000/200.
    assert "| endpoint / mlflow | 20.00x | 20.00x | 6.00x | 6.00x |" in text
    assert "- 1 record c=8 vs mlflow 20.0x (target >= 15x): met" in text
    assert "- 100 records c=8 vs mlflow 6.0x (target >= 8x): MISSED" in text
    assert "- p99 at c=1, 1 record 1.50 ms (target < 2 ms): met" in text
    assert "- new version served without a restart, within 2 s, no request failed: met" in text


def test_arguments():
    assert bench_online._int_list("1, 100") == [1, 100]
    with pytest.raises(argparse.ArgumentTypeError):
        bench_online._int_list("0")
    result = run_script("bench/bench_online.py", "--help")
    assert result.returncode == 0 and "--nice" in result.stdout


def test_report_adds_the_credit_model_against_mlflow():
    rps = {}
    for n in (1, 100):
        rps[f"credit-endpoint/{n}/8"] = [3000.0, 2500.0, 2000.0]
        rps[f"credit-mlflow/{n}/8"] = [100.0, 100.0, 100.0] if n == 1 else [50.0, 50.0, 50.0]
    credit = {"version": "v001", "runs": runs_for(rps), "score_diff": {"credit-endpoint": 1e-16, "credit-mlflow": 0.0}}
    lines = bench_online.credit_report(credit, [1, 100])
    assert "| endpoint | 1 | 2,500 | 0.30 | 1.50 |" in lines and "| mlflow | 100 | 50 | 0.30 | 1.50 |" in lines
    assert "- credit model, 1 record(s) c=8 vs mlflow 25.0x (target >= 20x): met" in lines
    assert "- credit model, 100 record(s) c=8 vs mlflow 50.0x" in lines
    assert lines[-1] == "- credit model, largest |probability - pipeline predict_proba|: endpoint 1.0e-16, mlflow 0.0e+00"
