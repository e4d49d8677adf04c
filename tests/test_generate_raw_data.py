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
    for argv, message, code in [
        (["--date", "../x"], "invalid date '../x'", 2),
        (["--start", "2026-11-26", "--end", "2026-11-20"], "is before --start", 2),
        (["--date", "2026-11-26", "--rows", "0"], "--rows must be at least 1", 1),
        (["--date", "2026-11-26", "--drift", "1", "--drift-features", "nope"], "not in the source data: nope", 1),
        (["--start", "2026-11-26"], "--start and --end go together", 2),
    ]:
        monkeypatch.setenv("RAW_DIR", str(tmp_path / "raw"))
        assert gen.main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert gen.main(["--date", "../x"]) == 2  # a bad date: 2, as in pipeline_run_batch.py and monitor.py
    assert capsys.readouterr().err == "error: invalid date '../x': expected YYYY-MM-DD, for example 2026-11-26\n"
    assert run_script("generate_raw_data.py", "--date", "2026-13-01", env=env).returncode == 2


# ----- any table: categories, gaps ---------------------------------------------------------------
def test_any_table_numbers_categories_and_gaps_at_the_sources_rate(tmp_path):
    from conftest import make_gappy_table

    source_path = make_gappy_table(tmp_path / "gappy.csv", rows=400)
    store = storage.LocalStorage(tmp_path / "raw", tmp_path / "c")
    gen.generate([DAY], rows=4000, store=store, data=source_path, target="status", categorical=["grade"])
    source = pd.read_csv(source_path, keep_default_na=False, na_values=[""])
    out = pd.read_csv(tmp_path / "raw" / "new_data_20261126.csv", keep_default_na=False, na_values=[""],
                      dtype={"grade": str})
    assert list(out.columns) == ["account_id", "income", "region", "channel", "grade"]
    for column in ("income", "channel"):
        assert out[column].isna().mean() == pytest.approx(source[column].isna().mean(), abs=0.02)
    assert out["region"].notna().all() and set(out["grade"]) == {"1", "2", "3"}
    shares = out["region"].value_counts(normalize=True)
    expected = source["region"].value_counts(normalize=True)
    assert (shares - expected).abs().max() < 0.03
    assert abs(out["income"].mean() - source["income"].mean()) < 0.3 * source["income"].std()


def test_drift_reverses_category_frequencies(tmp_path):
    from conftest import CREDIT_CSV

    store = storage.LocalStorage(tmp_path / "raw", tmp_path / "c")
    gen.generate([DAY], rows=3000, store=store, data=CREDIT_CSV, target="creditability", drift=1.0,
                 drift_features=["purpose", "credit_amount"], seed=3)
    out = pd.read_csv(tmp_path / "raw" / "new_data_20261126.csv")
    source = pd.read_csv(CREDIT_CSV)
    assert "creditability" not in out.columns and len(out.columns) == 21
    # half the purpose values redrawn from the reversed frequencies: the rarest gains most
    assert (out["purpose"] == "retraining").mean() == pytest.approx(0.5 * 0.009 + 0.5 * 0.28, abs=0.03)
    assert (out["housing"].value_counts(normalize=True) - source["housing"].value_counts(normalize=True)).abs().max() < 0.03
    assert (out["credit_amount"].mean() - source["credit_amount"].mean()) / source["credit_amount"].std() == pytest.approx(1.0, abs=0.15)
    assert (out["age_in_years"] == out["age_in_years"].round()).all()  # whole-number columns stay whole


def test_cli_data_and_target_for_credit(tmp_path):
    run = run_script("generate_raw_data.py", "--date", "2026-11-26", "--rows", "5", "--data", "data/german_credit.csv",
                     "--target", "creditability", env={"RAW_DIR": str(tmp_path / "raw")})
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "raw" / "new_data_20261126.csv").read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("account_id,status_of_existing_checking_account,duration_in_month,")


def test_drift_features_of_another_table_name_the_sources_columns(tmp_path, capsys, monkeypatch):
    from conftest import CREDIT_CSV

    monkeypatch.setenv("RAW_DIR", str(tmp_path / "raw"))
    assert gen.main(["--date", "2026-11-26", "--data", str(CREDIT_CSV), "--target", "creditability",
                     "--drift", "1"]) == 1
    assert capsys.readouterr().err == (
        "error: --drift-features not in the source data: mean radius, mean texture, mean perimeter, mean area, "
        "mean concavity (its columns: status_of_existing_checking_account, duration_in_month, credit_history, "
        "purpose, credit_amount, savings_account_and_bonds, ...)\n")
