"""generate_raw_data.py: deterministic, unlabelled daily files with optional drift."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

import generate_raw_data as gen
import storage
from conftest import run_script

DAY = dt.date(2026, 11, 26)


def test_one_day_has_the_id_the_features_and_no_target(tmp_path):
    store = storage.LocalStorage(tmp_path / "raw", tmp_path / "curated")
    written = gen.generate([DAY], rows=300, store=store)
    assert written == [(str(tmp_path / "raw" / "new_data_20261126.csv"), 300)]
    frame = pd.read_csv(tmp_path / "raw" / "new_data_20261126.csv")
    source = gen.load_source()
    assert list(frame.columns) == ["account_id"] + list(source.columns)
    assert "target" not in frame.columns and len(frame) == 300
    assert frame["account_id"].tolist()[:2] == ["ACC00000001", "ACC00000002"] and frame["account_id"].is_unique
    assert frame[source.columns].notna().all().all()
    assert (frame[source.columns] >= 0).all().all()  # the source's features are non-negative
    # Small noise: each feature's mean stays within a fraction of its standard deviation.
    shift = (frame[source.columns].mean() - source.mean()).abs() / source.std()
    assert shift.max() < 0.3


def test_same_seed_and_date_give_the_same_file_others_differ(tmp_path):
    def make(folder, day=DAY, seed=42):
        store = storage.LocalStorage(tmp_path / folder, tmp_path / "c")
        gen.generate([day], rows=100, seed=seed, store=store)
        return (tmp_path / folder / storage.raw_name(day)).read_bytes()

    assert make("a") == make("b")
    assert make("c", seed=43) != make("a")
    other_day = make("d", day=DAY + dt.timedelta(days=1))
    assert other_day != make("a")


def test_drift_shifts_only_the_chosen_features(tmp_path):
    store = storage.LocalStorage(tmp_path / "raw", tmp_path / "c")
    source = gen.load_source()
    gen.generate([DAY], rows=2000, store=store, seed=5)
    gen.generate([DAY + dt.timedelta(days=1)], rows=2000, store=store, seed=5, drift=1.5,
                 drift_features=["mean radius", "worst area"])
    clean = pd.read_csv(tmp_path / "raw" / "new_data_20261126.csv")
    drifted = pd.read_csv(tmp_path / "raw" / "new_data_20261127.csv")
    shift = (drifted[source.columns].mean() - clean[source.columns].mean()) / source.std()
    assert shift["mean radius"] == pytest.approx(1.5, abs=0.15)
    assert shift["worst area"] == pytest.approx(1.5, abs=0.15)
    others = shift.drop(["mean radius", "worst area"])
    assert others.abs().max() < 0.15


def test_chunks_cover_the_rows_in_order():
    source = gen.load_source()
    chunks = list(gen.generate_chunks(source, DAY, 25, chunk_rows=10))
    assert [c.num_rows for c in chunks] == [10, 10, 5]
    ids = np.concatenate([c.column("account_id").to_numpy(zero_copy_only=False) for c in chunks])
    assert ids.tolist() == [f"ACC{i:08d}" for i in range(1, 26)]


def test_cli_range_and_errors(tmp_path, capsys, monkeypatch):
    env = {"RAW_DIR": str(tmp_path / "raw")}
    done = run_script("generate_raw_data.py", "--start", "2026-11-24", "--end", "2026-11-26", "--rows", "20",
                      "--drift", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"wrote 20 rows to {tmp_path / 'raw' / f'new_data_202611{d}.csv'}" for d in (24, 25, 26)]
    for argv, message in [
        (["--date", "../x"], "invalid date '../x'"),
        (["--start", "2026-11-26", "--end", "2026-11-20"], "is before --start"),
        (["--date", "2026-11-26", "--rows", "0"], "--rows must be at least 1"),
        (["--date", "2026-11-26", "--drift", "1", "--drift-features", "nope"], "not in the source data: nope"),
        (["--start", "2026-11-26"], "--start and --end go together"),
    ]:
        monkeypatch.setenv("RAW_DIR", str(tmp_path / "raw"))
        assert gen.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert gen.main(["--date", "../x"]) == 1
    assert capsys.readouterr().err == "error: invalid date '../x': expected YYYY-MM-DD, for example 2026-11-26\n"
