"""scripts/demo_credit.sh (make demo-credit): the whole flow on the credit data, in its own folder."""

from __future__ import annotations

import os
import subprocess

from conftest import ROOT


def _listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_demo_credit_runs_end_to_end_in_its_own_folder(tmp_path):
    base = tmp_path / "demo_credit"
    before = {name: _listing(ROOT / name) for name in ("local_registry", "raw", "curated", "logs")}
    env = {**os.environ, "DEMO_CREDIT_DIR": str(base)}
    for key in ("LOCAL_REGISTRY_DIR", "RAW_DIR", "CURATED_DIR", "LOGS_DIR", "REPORTS_DIR", "SCORING_API_KEY",
                "STORAGE_BACKEND"):
        env.pop(key, None)
    run = subprocess.run(["bash", "scripts/demo_credit.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "/model: v002, positive class 'bad', 13 category and 7 number features" in out
    assert "an unknown category is a 422: record 0, feature 'purpose': unknown category string \"yacht\"" in out
    assert "2026-11-24 success 200 rows" in out and "2026-11-26 success 200 rows" in out
    assert "3 of 3 runs succeeded" in out
    last_table = out.split("the drift table of the last run, category features first:")[1].splitlines()
    levels = {line.split()[0]: line.split()[-1] for line in last_table[2:] if line.strip() and "demo-credit" not in line}
    assert levels["purpose"] == "alert" and levels["housing"] == "alert" and levels["job"] == "ok"
    assert _listing(base / "local_registry") == ["model_v001", "model_v002"]
    assert (base / "reports" / "category_shares.png").is_file() and (base / "mlflow.db").is_file()
    assert {name: _listing(ROOT / name) for name in before} == before  # make demo's folders untouched
