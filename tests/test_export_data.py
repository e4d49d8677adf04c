"""export_data.py: the CSV the training reads."""

import pandas as pd

from conftest import run_script


def test_export_writes_features_and_target(tmp_path):
    out = tmp_path / "day1.csv"
    run = run_script("export_data.py", "--output", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"wrote 569 rows to {out}"
    frame = pd.read_csv(out)
    assert frame.shape == (569, 31)
    assert frame.columns[0] == "mean radius" and frame.columns[-1] == "target"
    assert set(frame["target"]) == {0, 1}
    assert [p.name for p in tmp_path.iterdir()] == ["day1.csv"]


def test_export_to_unwritable_place_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = run_script("export_data.py", "--output", str(blocker / "sub" / "d.csv"))
    assert run.returncode == 1
    assert run.stderr.startswith("error: cannot write") and "Traceback" not in run.stderr
