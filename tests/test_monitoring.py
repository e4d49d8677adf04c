"""monitoring.py: the reference profile, the drift metrics and the streaming accumulator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

import monitoring
from monitoring import (
    DriftAccumulator,
    MonitoringError,
    Thresholds,
    build_profile,
    jensen_shannon_distance,
    normalized_wasserstein_distance,
    population_stability_index,
)
from registry import Registry


def _profile(reference: np.ndarray, scores=None, names=None):
    names = names or [f"f{i}" for i in range(reference.shape[1])]
    return build_profile(reference, names, scores)


# ----- metric functions --------------------------------------------------------------------
def test_psi_matches_the_formula_on_hand_made_bins():
    reference = [25, 25, 25, 25]
    production = [10, 20, 30, 40]
    q = np.array(reference) / 100
    p = np.array(production) / 100
    expected = float(np.sum((p - q) * np.log(p / q)))
    assert population_stability_index(reference, production) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.2282, abs=1e-4)


def test_psi_is_zero_for_identical_and_large_for_shifted_distributions():
    assert population_stability_index([5, 10, 20], [5, 10, 20]) == 0.0
    assert population_stability_index([1, 2, 3], [2, 4, 6]) == 0.0  # counts are normalised
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 5000)
    edges = monitoring.quantile_edges(reference)
    ref_counts = monitoring.bin_counts(reference, edges)
    same = monitoring.bin_counts(rng.normal(0, 1, 5000), edges)
    shifted = monitoring.bin_counts(rng.normal(1.5, 1, 5000), edges)
    assert population_stability_index(ref_counts, same) < 0.01
    assert population_stability_index(ref_counts, shifted) > 1.0


def test_psi_floors_empty_bins_at_epsilon():
    eps = monitoring.PSI_EPSILON
    expected = (0.5 - eps) * math.log(0.5 / eps) * 2  # two bins each moving 0.5 -> 0 and 0.5 -> 1
    value = population_stability_index([1, 1, 0], [0, 1, 1])
    assert value == pytest.approx(expected, rel=1e-9)
    with pytest.raises(MonitoringError, match="same bins"):
        population_stability_index([1, 2], [1, 2, 3])


def test_jensen_shannon_distance_against_scipy_and_its_bounds():
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensen_shannon_distance([3, 3], [1, 1]) == pytest.approx(0.0, abs=1e-12)
    q, p = np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.4, 0.2])
    m = (p + q) / 2
    kl = lambda a, b: float(np.sum(a * np.log2(a / b)))  # noqa: E731
    assert jensen_shannon_distance(q, p) == pytest.approx(math.sqrt((kl(p, m) + kl(q, m)) / 2), rel=1e-12)
    assert jensen_shannon_distance(q, p) == pytest.approx(float(jensenshannon(p, q, base=2)), rel=1e-12)


def test_normalized_wasserstein_distance_against_scipy():
    rng = np.random.default_rng(2)
    reference = rng.gamma(2.0, 3.0, 700)
    production = rng.gamma(2.0, 3.0, 300) + 1.0
    expected = wasserstein_distance(reference, production) / np.std(reference)
    assert normalized_wasserstein_distance(reference, production) == pytest.approx(expected, rel=1e-12)
    # By hand: moving every value of {0, 2} up by 1 costs 1; the reference's std is 1.
    assert normalized_wasserstein_distance([0.0, 2.0], [1.0, 3.0]) == pytest.approx(1.0)
    assert normalized_wasserstein_distance(reference, reference) == 0.0
    assert normalized_wasserstein_distance([1.0, 1.0], [1.0]) == 0.0
    assert normalized_wasserstein_distance([1.0, 1.0], [2.0]) == math.inf


# ----- the profile -----------------------------------------------------------------------------
def test_profile_has_ten_quantile_bins_bounds_and_the_exact_sample():
    rng = np.random.default_rng(3)
    matrix = np.column_stack([rng.normal(10, 2, 500), rng.exponential(1.0, 500)])
    scores = rng.uniform(0, 1, 500)
    profile = _profile(matrix, scores, ["a", "b"])
    a = profile["columns"]["a"]
    assert profile["features"] == ["a", "b"] and profile["row_count"] == 500 and profile["bins"] == 10
    assert len(a["bin_edges"]) == 9 and a["bin_counts"] == [50] * 10
    assert sum(a["bin_proportions"]) == pytest.approx(1.0)
    assert a["min"] == matrix[:, 0].min() and a["max"] == matrix[:, 0].max()
    assert a["null_rate"] == 0.0 and a["std"] == pytest.approx(matrix[:, 0].std())
    assert a["sample"] == sorted(matrix[:, 0].tolist())  # every value kept: at most 1000 rows
    assert profile["score"]["histogram"]["counts"] == np.histogram(scores, 20, (0, 1))[0].tolist()
    json.dumps(profile)  # serialisable as is


def test_profile_null_rate_ties_and_large_reference():
    column = np.array([0.0] * 60 + list(range(1, 41)) + [np.nan] * 25, dtype=float)
    profile = _profile(column.reshape(-1, 1))
    col = profile["columns"]["f0"]
    assert col["null_rate"] == pytest.approx(25 / 125)
    assert len(col["bin_edges"]) == len(set(col["bin_edges"]))  # ties collapse, no empty bins by design
    assert col["bin_counts"][0] == 60 and sum(col["bin_counts"]) == 100
    big = np.arange(5000, dtype=float).reshape(-1, 1)
    sample = _profile(big)["columns"]["f0"]["sample"]
    assert len(sample) == monitoring.REFERENCE_SAMPLE_MAX and sample[0] == 2.0 and sample[-1] == 4997.0
    with pytest.raises(MonitoringError, match="at least 10 rows"):
        _profile(np.zeros((5, 1)))


def test_training_stores_the_profile_in_every_version(trained_registry):
    entry = Registry(trained_registry).get("latest")
    profile = monitoring.load_profile(entry.path)
    assert profile is not None
    assert profile["features"] == entry.metadata["features"]
    assert profile["row_count"] == entry.metrics["train_size"]
    for name in profile["features"]:
        col = profile["columns"][name]
        assert len(col["sample"]) == profile["row_count"]
        assert col["min"] == col["sample"][0] and col["max"] == col["sample"][-1]
        assert sum(col["bin_counts"]) == profile["row_count"]
    score = profile["score"]
    assert 0.0 <= score["min"] <= score["max"] <= 1.0
    assert sum(score["histogram"]["counts"]) == profile["row_count"]


def test_load_profile_none_when_missing_and_error_when_corrupt(tmp_path):
    assert monitoring.load_profile(tmp_path) is None
    (tmp_path / monitoring.PROFILE_FILE).write_text("{not json")
    with pytest.raises(MonitoringError, match="cannot be read"):
        monitoring.load_profile(tmp_path)
    (tmp_path / monitoring.PROFILE_FILE).write_text('{"schema": 99}')
    with pytest.raises(MonitoringError, match="not a reference profile"):
        monitoring.load_profile(tmp_path)


# ----- the accumulator ---------------------------------------------------------------------------
def test_accumulator_in_chunks_equals_a_direct_calculation():
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 1, (400, 3))
    scores = rng.uniform(0, 1, 400)
    profile = _profile(reference, scores)
    production = rng.normal(0.3, 1.2, (250, 3))
    prod_scores = rng.uniform(0.2, 1, 250)
    acc = DriftAccumulator(profile)
    for start in range(0, 250, 64):
        acc.update(production[start:start + 64], prod_scores[start:start + 64])
    result = acc.result()
    assert result.rows == 250
    for i, row in enumerate(result.table[:3]):
        ref_col = reference[:, i]
        edges = profile["columns"][f"f{i}"]["bin_edges"]
        ref_counts = np.histogram(ref_col, bins=[-np.inf, *edges, np.inf])[0]
        prod_counts = np.histogram(production[:, i], bins=[-np.inf, *edges, np.inf])[0]
        q, p = ref_counts / 400, prod_counts / 250
        assert row["population_stability_index"] == pytest.approx(float(np.sum((p - q) * np.log(p / q))), rel=1e-9)
        assert row["normalized_wasserstein_distance"] == pytest.approx(
            wasserstein_distance(ref_col, production[:, i]) / ref_col.std(), rel=1e-9)
        assert row["ks_pvalue"] == pytest.approx(ks_2samp(ref_col, production[:, i]).pvalue, rel=1e-9)
        outside = (production[:, i] < ref_col.min()) | (production[:, i] > ref_col.max())
        assert row["out_of_bounds_rate"] == pytest.approx(outside.mean())
        assert row["production_mean"] == pytest.approx(production[:, i].mean())
    score_row = result.table[3]
    assert score_row["signal"] == "prediction_drift" and score_row["feature"] == "score"
    assert result.summary["score_psi"] == score_row["population_stability_index"]
    psis = [r["population_stability_index"] for r in result.table[:3]]
    assert result.summary["max_psi"] == max(psis)
    assert result.summary["max_psi_feature"] == f"f{int(np.argmax(psis))}"


def test_null_and_out_of_bounds_rates_are_exact():
    reference = np.tile(np.arange(10, dtype=float), (2, 2)).T.reshape(-1, 2)  # 0..9 in both columns
    acc = DriftAccumulator(_profile(reference))
    acc.update(np.array([[-1.0, 5.0], [np.nan, 9.0], [10.0, np.nan], [3.0, 4.0]]))
    result = acc.result()
    a, b = result.table
    assert acc._count_matrix.sum(axis=1).tolist() == [3, 3]  # NaN in no bin
    assert a["null_value_rate"] == 0.25 and b["null_value_rate"] == 0.25
    assert a["out_of_bounds_rate"] == pytest.approx(2 / 3) and b["out_of_bounds_rate"] == 0.0
    assert result.summary["null_rate"] == 0.25
    assert result.summary["out_of_bounds_rate"] == pytest.approx(2 / 6)


def test_identical_data_gives_zero_and_a_big_shift_alerts():
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 1, (500, 4))
    profile = _profile(reference)
    same = DriftAccumulator(profile)
    same.update(reference)
    result = same.result()
    assert result.summary["max_psi"] == pytest.approx(0.0, abs=1e-12)
    assert result.summary["max_normalized_wasserstein"] == 0.0
    assert result.summary["drift_flag"] is False and result.summary["drift_warn"] is False
    shifted = reference.copy()
    shifted[:, 2] += 1.0
    acc = DriftAccumulator(profile)
    acc.update(shifted[:200])
    result = acc.result()
    assert result.summary["drift_flag"] is True and result.summary["drifted_features"] == 1
    assert result.summary["max_psi_feature"] == "f2" and result.summary["max_psi"] > 0.25
    assert [r["level"] for r in result.table] == ["ok", "ok", "alert", "ok"]


def test_warn_level_is_reported_apart_from_the_alert():
    rng = np.random.default_rng(6)
    reference = rng.normal(0, 1, (20000, 1))
    production = rng.normal(0.0, 1.35, (20000, 1))  # wider spread, same centre
    # The normalized Wasserstein distance reacts first (0.1 is a shift of a tenth of a std)...
    acc = DriftAccumulator(_profile(reference))
    acc.update(production)
    result = acc.result()
    assert 0.1 <= result.summary["max_psi"] < 0.25
    assert result.summary["max_normalized_wasserstein"] >= 0.1
    assert result.table[0]["level"] == "alert" and result.summary["drift_flag"] is True
    # ...so with its threshold raised, the same PSI is a warning and not an alert.
    acc = DriftAccumulator(_profile(reference), Thresholds(wasserstein=0.5))
    acc.update(production)
    result = acc.result()
    assert result.table[0]["level"] == "warn"
    assert result.summary["drift_warn"] is True and result.summary["drift_flag"] is False
    assert result.summary["warn_features"] == 1 and result.summary["drifted_features"] == 0


def test_small_noisy_differences_are_not_significant():
    # Two samples of one distribution at 200 rows: the raw distances are large, the test says noise.
    rng = np.random.default_rng(7)
    reference = rng.lognormal(0, 0.6, (455, 30))
    profile = _profile(reference)
    raw_psi_over = 0
    for day in range(20):
        acc = DriftAccumulator(profile)
        acc.update(rng.lognormal(0, 0.6, (200, 30)))
        result = acc.result()
        raw_psi_over += result.summary["max_psi"] >= 0.1
        assert result.summary["drift_flag"] is False and result.summary["drift_warn"] is False
    assert raw_psi_over >= 5  # the raw PSI alone would have warned on many clean days
    # With the significance test off, the plain thresholds fire on the same kind of day.
    acc = DriftAccumulator(profile, Thresholds(alpha=0))
    acc.update(rng.lognormal(0, 0.6, (200, 30)))
    assert acc.result().summary["drift_flag"] is True


def test_reservoir_keeps_every_row_up_to_its_size_and_a_uniform_sample_beyond():
    reference = np.arange(100, dtype=float).reshape(-1, 1)
    acc = DriftAccumulator(_profile(reference), reservoir_size=50)
    acc.update(np.arange(30, dtype=float).reshape(-1, 1))
    assert sorted(acc._reservoir.values()[:, 0]) == list(range(30))
    for start in range(30, 10000, 333):
        acc.update(np.arange(start, min(start + 333, 10000), dtype=float).reshape(-1, 1))
    kept = acc._reservoir.values()[:, 0]
    assert kept.shape == (50,) and len(set(kept)) == 50 and kept.max() < 10000
    assert 2500 < kept.mean() < 7500  # not just the first or the last rows


def test_chunk_shape_errors_are_specific():
    acc = DriftAccumulator(_profile(np.zeros((20, 2)) + np.arange(20).reshape(-1, 1)))
    with pytest.raises(MonitoringError, match="2 columns"):
        acc.update(np.zeros((3, 3)))
    with pytest.raises(MonitoringError, match="2 scores for 3 rows"):
        acc.update(np.zeros((3, 2)), np.zeros(2))
    empty = acc.result()
    assert empty.rows == 0 and empty.summary["drift_flag"] is False
    assert math.isnan(empty.summary["max_psi"])


# ----- thresholds, the table file and the log fields -----------------------------------------------
def test_thresholds_from_env_and_overrides():
    assert Thresholds.from_env({}) == Thresholds(0.1, 0.25, 0.1, 0.01)
    env = {"DRIFT_PSI_WARN": "0.05", "DRIFT_PSI_ALERT": "0.5", "DRIFT_WASSERSTEIN_THRESHOLD": "0.2", "DRIFT_ALPHA": ""}
    th = Thresholds.from_env(env, psi_alert=0.4, wasserstein=None)
    assert th == Thresholds(psi_warn=0.05, psi_alert=0.4, wasserstein=0.2, alpha=0.01)
    with pytest.raises(MonitoringError, match="DRIFT_PSI_WARN must be a number"):
        Thresholds.from_env({"DRIFT_PSI_WARN": "high"})
    with pytest.raises(MonitoringError, match="warn <= alert"):
        Thresholds(psi_warn=0.3, psi_alert=0.2)
    with pytest.raises(MonitoringError, match="alpha"):
        Thresholds(alpha=1.5)


def test_drift_table_round_trip_and_log_fields(tmp_path):
    rng = np.random.default_rng(8)
    acc = DriftAccumulator(_profile(rng.normal(0, 1, (100, 2)), rng.uniform(0, 1, 100)))
    acc.update(rng.normal(0, 1, (50, 2)), rng.uniform(0, 1, 50))
    result = acc.result()
    path = monitoring.drift_table_path(tmp_path / "logs", "20250102")
    assert path == tmp_path / "logs" / "drift" / "drift_20250102.csv"
    assert monitoring.drift_table_path(tmp_path, "20250102", "blob").name == "drift_blob_20250102.csv"
    monitoring.write_drift_table(path, result.table)
    assert [p.name for p in path.parent.iterdir()] == ["drift_20250102.csv"]  # no temp file left
    rows = monitoring.read_drift_table(path)
    assert [r["feature"] for r in rows] == ["f0", "f1", "score"]
    assert rows[0]["population_stability_index"] == pytest.approx(result.table[0]["population_stability_index"], rel=1e-5)
    assert path.read_text().splitlines()[0] == ",".join(monitoring.TABLE_COLUMNS)
    fields = result.log_fields()
    assert list(fields) == list(monitoring.SUMMARY_COLUMNS)
    assert fields["drift_flag"] in ("true", "false") and fields["max_psi_feature"] in ("f0", "f1")
    assert float(fields["max_psi"]) == pytest.approx(result.summary["max_psi"], rel=1e-5)


# ----- in the batch pipeline ---------------------------------------------------------------------
@pytest.fixture
def zones(tmp_path, monkeypatch):
    """Raw, curated and logs folders under tmp_path, with the settings pointed at them."""
    for name, var in (("raw", "RAW_DIR"), ("curated", "CURATED_DIR"), ("logs", "LOGS_DIR")):
        monkeypatch.setenv(var, str(tmp_path / name))
    for var in Thresholds.ENV.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    return tmp_path


def _generate(day: str, drift: float = 0.0, rows: int = 200) -> None:
    import datetime as dt

    import generate_raw_data

    generate_raw_data.generate([dt.date.fromisoformat(day)], rows=rows, drift=drift)


def _runs(capsys=None) -> dict[str, dict]:
    import runlog

    return {row["run_date"]: row for row in runlog.read()}


def test_a_clean_day_of_200_rows_does_not_flag_and_a_drifted_day_does(zones, trained_registry, capsys):
    import generate_raw_data
    import pipeline_run_batch

    _generate("2026-11-24")
    _generate("2026-11-25", drift=1.0)
    code = pipeline_run_batch.main(["--start", "2026-11-24", "--end", "2026-11-25",
                                    "--registry-dir", str(trained_registry)])
    out = capsys.readouterr().out
    assert code == 0  # drift is reported, never a failure
    runs = _runs()
    clean, drifted = runs["2026-11-24"], runs["2026-11-25"]
    assert clean["status"] == drifted["status"] == "success"
    assert clean["drift_flag"] == "false" and clean["drift_warn"] == "false"
    assert clean["drifted_features"] == "0" and clean["warn_features"] == "0"
    assert drifted["drift_flag"] == "true" and drifted["drift_warn"] == "true"
    shifted = set(generate_raw_data.DEFAULT_DRIFT_FEATURES)
    assert int(drifted["drifted_features"]) == len(shifted)
    assert drifted["max_psi_feature"] in shifted and float(drifted["max_psi"]) > 0.25
    assert 0 <= float(clean["out_of_bounds_rate"]) < 0.02  # resampled rows plus noise: rarely past the training range
    assert clean["null_rate"] == "0"
    table = monitoring.read_drift_table(monitoring.drift_table_path(zones / "logs", "20261125"))
    assert {r["feature"] for r in table if r["level"] == "alert" and r["signal"] == "data_drift"} == shifted
    assert table[-1]["level"] == "alert"  # the scores moved too (prediction drift)
    assert table[-1]["feature"] == "score" and len(table) == 31
    assert "drift alert" in out and "drift ok" in out


def test_thresholds_come_from_flags_and_environment(zones, trained_registry, monkeypatch):
    import pipeline_run_batch

    _generate("2026-11-25", drift=1.0)
    # Thresholds so high that the shift is only a warning.
    assert pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(trained_registry),
                                    "--psi-alert", "50", "--wasserstein-threshold", "50"]) == 0
    run = _runs()["2026-11-25"]
    assert run["drift_flag"] == "false" and run["drift_warn"] == "true"
    assert (run["psi_warn"], run["psi_alert"], run["wasserstein_threshold"], run["drift_alpha"]) == ("0.1", "50", "50", "0.01")
    monkeypatch.setenv("DRIFT_PSI_WARN", "40")
    monkeypatch.setenv("DRIFT_PSI_ALERT", "50")
    monkeypatch.setenv("DRIFT_WASSERSTEIN_THRESHOLD", "50")
    assert pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(trained_registry)]) == 0
    run = _runs()["2026-11-25"]
    assert run["drift_flag"] == "false" and run["drift_warn"] == "false"
    assert pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(trained_registry),
                                    "--psi-warn", "0.1", "--psi-alert", "0.25"]) == 0  # flags beat the environment
    assert _runs()["2026-11-25"]["drift_warn"] == "true"


def test_bad_thresholds_are_refused_before_any_run(zones, trained_registry, capsys):
    import pipeline_run_batch

    _generate("2026-11-25")
    code = pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(trained_registry),
                                    "--psi-warn", "0.5", "--psi-alert", "0.2"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: PSI thresholds must satisfy 0 < warn <= alert")
    assert _runs() == {}


def test_a_version_without_a_profile_still_scores(zones, trained_registry, tmp_path):
    import shutil

    import pipeline_run_batch

    registry = tmp_path / "registry"
    shutil.copytree(trained_registry, registry)
    (registry / "model_v002" / monitoring.PROFILE_FILE).unlink()
    _generate("2026-11-25")
    assert pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(registry)]) == 0
    run = _runs()["2026-11-25"]
    assert run["status"] == "success" and run["row_count"] == "200"
    assert run["drift_flag"] == "" and run["max_psi"] == ""
    assert not monitoring.drift_table_path(zones / "logs", "20261125").exists()


def test_a_failed_run_adds_no_drift_fields_and_no_table(zones, trained_registry):
    import pipeline_run_batch

    (zones / "raw").mkdir()
    (zones / "raw" / "new_data_20261125.csv").write_text("account_id,mean radius\nA,1\n")
    assert pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(trained_registry)]) == 1
    import runlog

    run = runlog.read()[-1]
    assert run["status"] == "failed" and run["drift_flag"] == ""
    assert not monitoring.drift_table_path(zones / "logs", "20261125").exists()


def test_a_monitoring_failure_never_fails_the_run(zones, trained_registry, monkeypatch, caplog):
    import pipeline_run_batch

    def broken(self, matrix, scores=None):
        raise FloatingPointError("boom")

    monkeypatch.setattr(DriftAccumulator, "update", broken)
    _generate("2026-11-25")
    assert pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(trained_registry)]) == 0
    run = _runs()["2026-11-25"]
    assert run["status"] == "success" and run["row_count"] == "200" and run["drift_flag"] == ""
    assert "drift monitoring stopped for this run: FloatingPointError: boom" in caplog.text


def test_an_unwritable_drift_table_still_logs_the_summary(zones, trained_registry, caplog):
    import pipeline_run_batch

    _generate("2026-11-25")
    (zones / "logs").mkdir()
    (zones / "logs" / "drift").write_text("a file where the folder should be")
    assert pipeline_run_batch.main(["--date", "2026-11-25", "--registry-dir", str(trained_registry)]) == 0
    run = _runs()["2026-11-25"]
    assert run["status"] == "success" and run["drift_flag"] == "false"
    assert "cannot write the drift table" in caplog.text


# ----- category features (credit data) -----------------------------------------------------------
def test_credit_profile_keeps_category_frequencies(credit_registry):
    profile = json.loads((credit_registry / "model_v001" / "reference_profile.json").read_text())
    housing = profile["columns"]["housing"]
    assert housing["type"] == "category" and housing["categories"] == ["for free", "own", "rent"]
    assert sum(housing["category_counts"]) == 800 and housing["category_proportions"] == pytest.approx(
        [c / 800 for c in housing["category_counts"]])
    assert profile["columns"]["age_in_years"]["type"] == "number"


def test_category_metrics_in_the_credit_pipeline(zones, credit_registry, capsys):
    import datetime as dt

    import generate_raw_data
    import pipeline_run_batch
    from scipy.stats import chi2_contingency

    for day, drift in (("2026-11-24", 0.0), ("2026-11-25", 2.0)):
        generate_raw_data.generate([dt.date.fromisoformat(day)], rows=400, drift=drift, data=monitoring_credit_csv(),
                                   target="creditability", drift_features=["purpose"])
    code = pipeline_run_batch.main(["--start", "2026-11-24", "--end", "2026-11-25",
                                    "--registry-dir", str(credit_registry)])
    assert code == 0, capsys.readouterr().err
    clean = monitoring.read_drift_table(monitoring.drift_table_path(zones / "logs", "20261124"))
    drifted = monitoring.read_drift_table(monitoring.drift_table_path(zones / "logs", "20261125"))
    assert [r["type"] for r in clean[:3]] == ["category", "number", "category"] and clean[-1]["type"] == "score"
    assert len(clean) == 21 and not [r["feature"] for r in clean[:-1] if r["level"] != "ok"]
    by_name = {r["feature"]: r for r in drifted}
    purpose = by_name["purpose"]
    assert purpose["level"] == "alert" and purpose["pearsons_chi_squared_test"] < 1e-10
    assert purpose["population_stability_index"] > 1 and 0.3 < purpose["jensen_shannon_distance"] <= 1
    assert math.isnan(purpose["normalized_wasserstein_distance"]) and math.isnan(purpose["ks_pvalue"])
    assert purpose["null_value_rate"] == purpose["data_type_error_rate"] == purpose["out_of_bounds_rate"] == 0.0
    assert by_name["housing"]["level"] == "ok" and by_name["housing"]["pearsons_chi_squared_test"] > 1e-4
    # the chi-squared p-value is the test of the two count vectors
    profile = json.loads((credit_registry / "model_v001" / "reference_profile.json").read_text())
    import pandas as pd

    raw = pd.read_csv(zones / "raw" / "new_data_20261125.csv")
    categories = profile["columns"]["housing"]["categories"]
    counts = [int((raw["housing"] == c).sum()) for c in categories]
    expected = chi2_contingency([profile["columns"]["housing"]["category_counts"], counts], correction=False).pvalue
    assert by_name["housing"]["pearsons_chi_squared_test"] == pytest.approx(expected, rel=1e-5)
    assert by_name["age_in_years"]["type"] == "number" and not math.isnan(by_name["age_in_years"]["ks_pvalue"])


def monitoring_credit_csv():
    from conftest import CREDIT_CSV

    return CREDIT_CSV


def test_chi_squared_edge_cases():
    assert monitoring.pearsons_chi_squared_test([5, 0], [7, 0]) == 1.0  # one category on both sides
    assert math.isnan(monitoring.pearsons_chi_squared_test([5, 3], [0, 0]))
    assert monitoring.pearsons_chi_squared_test([50, 50], [50, 50]) == pytest.approx(1.0)


def test_gappy_table_through_the_pipeline_reports_null_rates(zones, gappy_registry, tmp_path, capsys):
    import datetime as dt

    import generate_raw_data
    import pipeline_run_batch
    from conftest import make_gappy_table

    source = make_gappy_table(tmp_path / "source.csv", rows=300)
    generate_raw_data.generate([dt.date(2026, 11, 24)], rows=2000, data=source, target="status", categorical=["grade"])
    assert pipeline_run_batch.main(["--date", "2026-11-24", "--registry-dir", str(gappy_registry)]) == 0, \
        capsys.readouterr().err
    table = {r["feature"]: r for r in monitoring.read_drift_table(monitoring.drift_table_path(zones / "logs", "20261124"))}
    profile = json.loads((gappy_registry / "model_v001" / "reference_profile.json").read_text())
    for name in ("income", "channel"):  # empty cells pass for nullable features, at about the source's rate
        assert table[name]["null_value_rate"] == pytest.approx(profile["columns"][name]["null_rate"], abs=0.03)
        assert table[name]["null_value_rate"] > 0.04
    assert table["region"]["null_value_rate"] == 0.0 and table["grade"]["type"] == "category"
    assert [table[n]["level"] for n in ("income", "region", "channel", "grade")] == ["ok"] * 4
    assert (zones / "curated" / "predictions_20261124.csv").is_file()
