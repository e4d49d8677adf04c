"""analyze_predictions.py: bucket counts, trend figures, charts, CSVs and the self-contained report."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
from pathlib import Path

import numpy as np
import pytest

import analyze_predictions as ap
import cli
import monitoring
import runlog
import storage
from conftest import run_script

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Hand-made days: scores chosen on and around the 0.3 / 0.7 boundaries.
DAYS = {
    "20261124": [0.05, 0.1, 0.299, 0.3, 0.5, 0.699, 0.7, 0.95],  # low 3, medium 3, high 2
    "20261125": [0.2, 0.8, 0.9, 1.0],                            # low 1, medium 0, high 3
    "20261126": [0.0, 0.31, 0.65, 0.71, 0.72],                   # low 1, medium 2, high 2
}
LOG_COLUMNS = list(runlog.COLUMNS)


def _write_predictions(folder: Path, key: str, scores, version: str = "v002") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"predictions_{key}.csv"
    lines = ["account_id,mean radius,prediction,score,model_version"]
    lines += [f"ACC{i:08d},{10 + i},{int(s >= 0.5)},{s!r},{version}" for i, s in enumerate(scores)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _log_row(day: str, status: str = "success", **fields) -> dict:
    row = dict.fromkeys(LOG_COLUMNS, "")
    row.update(timestamp=f"{day}T02:00:00+00:00", run_date=day, status=status,
               output_file=f"/x/curated/predictions_{day.replace('-', '')}.csv")
    row.update(fields)
    return row


def _write_log(folder: Path, rows) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / runlog.LOG_FILE, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def zones(tmp_path_factory, trained_registry):
    """Curated files for three days, a run log and the latest run's drift table, in a temporary folder."""
    tmp_path = tmp_path_factory.mktemp("zones")
    curated, logs, reports = tmp_path / "curated", tmp_path / "logs", tmp_path / "reports"
    for key, scores in DAYS.items():
        _write_predictions(curated, key, scores)
    (curated / "predictions.csv").write_text("score\n0.5\n")  # no date in the name: skipped
    (curated / "notes.txt").write_text("not a predictions file")
    _write_log(logs, [
        _log_row("2026-11-24", drift_flag="false", drift_warn="false", max_psi="0.05", max_psi_feature="mean radius",
                 drifted_features="0"),
        _log_row("2026-11-25", status="failed", error="boom"),
        _log_row("2026-11-25", drift_flag="false", drift_warn="true", max_psi="0.15", max_psi_feature="worst area",
                 drifted_features="0"),
        _log_row("2026-11-26", drift_flag="true", drift_warn="true", max_psi="0.9", max_psi_feature="mean area",
                 drifted_features="2"),
    ])
    table = [
        {"signal": "data_drift", "feature": "mean area", "population_stability_index": 0.9,
         "normalized_wasserstein_distance": 0.5, "jensen_shannon_distance": 0.3, "ks_statistic": 0.4,
         "ks_pvalue": 1e-9, "null_value_rate": 0.0, "out_of_bounds_rate": 0.1, "reference_mean": 600.0,
         "production_mean": 800.0, "level": "alert"},
        {"signal": "data_drift", "feature": "mean radius", "population_stability_index": 0.02,
         "normalized_wasserstein_distance": 0.03, "jensen_shannon_distance": 0.05, "ks_statistic": 0.05,
         "ks_pvalue": 0.8, "null_value_rate": 0.0, "out_of_bounds_rate": 0.0, "reference_mean": 14.0,
         "production_mean": 14.1, "level": "ok"},
        {"signal": "prediction_drift", "feature": "score", "population_stability_index": 0.3,
         "normalized_wasserstein_distance": 0.2, "jensen_shannon_distance": 0.2, "ks_statistic": 0.2,
         "ks_pvalue": 0.01, "null_value_rate": float("nan"), "out_of_bounds_rate": float("nan"),
         "reference_mean": 0.6, "production_mean": 0.48, "level": "alert"},
    ]
    monitoring.write_drift_table(monitoring.drift_table_path(logs, "20261126"), table)
    env = {"CURATED_DIR": str(curated), "LOGS_DIR": str(logs), "REPORTS_DIR": str(reports),
           "LOCAL_REGISTRY_DIR": str(trained_registry)}
    return {"curated": curated, "logs": logs, "reports": reports, "env": env, "registry": trained_registry}


@pytest.fixture(scope="module")
def report(zones):
    """The report of the three hand-made days (charts and all), made once for this module."""
    return ap.analyze(storage.LocalStorage(curated_dir=zones["curated"]), logs_dir=zones["logs"],
                      reports_dir=zones["reports"], registry_dir=zones["registry"])


# ----- figures ---------------------------------------------------------------------------------
def test_bucket_counts_and_trend_figures_are_exact(zones, report):
    assert [d.name for d in report.days] == ["predictions_20261124.csv", "predictions_20261125.csv",
                                             "predictions_20261126.csv"]
    assert report.buckets == [
        {"date": "2026-11-24", "rows": 8, "low": 3, "medium": 3, "high": 2},
        {"date": "2026-11-25", "rows": 4, "low": 1, "medium": 0, "high": 3},
        {"date": "2026-11-26", "rows": 5, "low": 1, "medium": 2, "high": 2},
    ]
    for row, scores in zip(report.trend, DAYS.values()):
        assert row["rows"] == len(scores)
        assert row["mean_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-12)
        assert row["high_share"] == pytest.approx(sum(s >= 0.7 for s in scores) / len(scores))
        assert row["model_version"] == "v002"
    assert [r["drift"] for r in report.trend] == ["ok", "warn", "alert"]
    assert [r["max_psi_feature"] for r in report.trend] == ["mean radius", "worst area", "mean area"]
    assert report.trend[2]["max_psi"] == 0.9
    latest = report.days[-1]
    assert latest.min_score == 0.0 and latest.max_score == 0.72
    assert latest.histogram.sum() == 5 and latest.histogram[0] == 1  # 0.0 falls in the first band


def test_thresholds_can_be_set_and_are_checked(zones, tmp_path):
    store = storage.LocalStorage(curated_dir=zones["curated"])
    report = ap.analyze(store, medium=0.5, high=0.9, logs_dir=zones["logs"], reports_dir=tmp_path / "r")
    assert [(b["low"], b["medium"], b["high"]) for b in report.buckets] == [(4, 3, 1), (1, 1, 2), (2, 3, 0)]
    with pytest.raises(ap.AnalysisError, match="0 < medium < high <= 1"):
        ap.analyze(store, medium=0.7, high=0.3, reports_dir=tmp_path / "r")


def test_start_and_end_select_dates(zones, tmp_path):
    store = storage.LocalStorage(curated_dir=zones["curated"])
    report = ap.analyze(store, start=dt.date(2026, 11, 25), end=dt.date(2026, 11, 25),
                        logs_dir=zones["logs"], reports_dir=tmp_path / "r")
    assert [b["date"] for b in report.buckets] == ["2026-11-25"]
    assert "psi_png" not in report.files  # no drift table for that day: no PSI chart
    page = report.files["html"].read_text(encoding="utf-8")
    assert "<h2>Data drift, latest run</h2>" in page and "PSI per feature: no data for this chart." in page
    assert '<p class="note">No drift table for this run.</p>' in page
    assert "1 day of curated predictions" in page and "score &gt;= 0.7</div>" in page  # no earlier day to compare
    with pytest.raises(ap.AnalysisError, match="no prediction files between 2027-01-01 and the end"):
        ap.analyze(store, start=dt.date(2027, 1, 1), reports_dir=tmp_path / "r")


def test_mixed_versions_empty_files_and_bad_scores(tmp_path):
    curated = tmp_path / "curated"
    _write_predictions(curated, "20260101", [0.1, 0.9], version="v001")
    path = _write_predictions(curated, "20260102", [0.1, 0.9], version="v001")
    path.write_text(path.read_text() + "ACC9,1,1,0.95,v002\n")
    (curated / "predictions_20260103.csv").write_text("account_id,score,model_version\n")
    report = ap.analyze(storage.LocalStorage(curated_dir=curated), logs_dir=tmp_path / "nolog",
                        reports_dir=tmp_path / "reports")
    assert [r["model_version"] for r in report.trend] == ["v001", "v001+v002", "-"]
    assert [r["rows"] for r in report.trend] == [2, 3, 0]
    assert [r["drift"] for r in report.trend] == ["-", "-", "-"]  # no run log at all
    (curated / "predictions_20260104.csv").write_text("score,model_version\n0.5,v001\nhigh,v001\n")
    with pytest.raises(ap.AnalysisError, match="predictions_20260104.csv: cannot read the score column"):
        ap.analyze(storage.LocalStorage(curated_dir=curated), reports_dir=tmp_path / "reports")
    (curated / "predictions_20260104.csv").write_text("score,model_version\n1.5,v001\n")
    with pytest.raises(ap.AnalysisError, match="not a probability"):
        ap.analyze(storage.LocalStorage(curated_dir=curated), reports_dir=tmp_path / "reports")
    (curated / "predictions_20260104.csv").write_text("prediction,model_version\n1,v001\n")
    with pytest.raises(ap.AnalysisError, match="predictions_20260104.csv has no score column"):
        ap.analyze(storage.LocalStorage(curated_dir=curated), reports_dir=tmp_path / "reports")


# ----- the report folder ------------------------------------------------------------------------
def test_report_files_exist_and_pngs_are_valid_images(zones, report):
    import matplotlib.image as mpimg

    names = sorted(p.name for p in zones["reports"].iterdir())
    assert names == ["buckets.png", "drift_latest.csv", "psi_latest.png", "report.html", "risk_buckets.csv",
                     "score_distribution.png", "score_trend.png", "trend.csv"]
    for key in ("buckets_png", "trend_png", "psi_png", "distribution_png"):
        data = report.files[key].read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        image = mpimg.imread(io.BytesIO(data), format="png")
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 1000
        assert image.std() > 0.05  # not a blank canvas
        assert b"matplotlib.org" not in data  # no software URL in the PNG's metadata


def test_csv_tables_hold_the_printed_figures(zones, report):
    buckets = (zones["reports"] / "risk_buckets.csv").read_text().splitlines()
    assert buckets == ["date,rows,low,medium,high", "2026-11-24,8,3,3,2", "2026-11-25,4,1,0,3", "2026-11-26,5,1,2,2"]
    trend = list(csv.DictReader(open(zones["reports"] / "trend.csv")))
    assert [r["drift"] for r in trend] == ["ok", "warn", "alert"]
    assert float(trend[1]["mean_score"]) == pytest.approx(0.725)
    assert float(trend[1]["high_share"]) == 0.75
    drift = list(csv.DictReader(open(zones["reports"] / "drift_latest.csv")))
    assert [r["feature"] for r in drift] == ["mean area", "mean radius", "score"]


def test_html_is_self_contained_and_embeds_every_chart(zones, report):
    page = report.files["html"].read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    on_disk = {report.files[k].read_bytes() for k in ("buckets_png", "trend_png", "psi_png", "distribution_png")}
    assert embedded == on_disk
    # No reference to any other file or URL: no links, scripts, stylesheets, fonts or urls.
    text = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', 'src=""', page)
    assert not re.search(r"https?:|//[a-z0-9]|<link|<script|<iframe|@import|url\(|href=|file:/", text, re.I)
    for text in ("Risk scoring report", "2026-11-26", "mean area", "alert", "v002"):
        assert text in page


def test_html_escapes_text_from_the_data(tmp_path):
    """A model version, a run-log feature and a drift-table feature carrying markup come out as text."""
    curated, logs = tmp_path / "curated", tmp_path / "logs"
    _write_predictions(curated, "20261126", [0.1, 0.8], version="v<script>alert(1)</script>")
    _write_log(logs, [_log_row("2026-11-26", drift_flag="true", drift_warn="true", max_psi="0.9",
                               max_psi_feature='<b>"area"</b> & co', drifted_features="1")])
    row = {"signal": "data_drift", "feature": "<img src=x onerror=alert(2)>", "population_stability_index": 0.9,
           "normalized_wasserstein_distance": 0.5, "jensen_shannon_distance": 0.3, "ks_statistic": 0.4,
           "ks_pvalue": 1e-9, "null_value_rate": 0.0, "out_of_bounds_rate": 0.0, "reference_mean": 1.0,
           "production_mean": 2.0, "level": "alert"}
    monitoring.write_drift_table(monitoring.drift_table_path(logs, "20261126"), [row])
    report = ap.analyze(storage.LocalStorage(curated_dir=curated), logs_dir=logs, reports_dir=tmp_path / "r")
    page = report.files["html"].read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page and "<b>" not in page
    assert page.count("v&lt;script&gt;alert(1)&lt;/script&gt;") == 3  # latest-run card, drift note, trend table
    assert "max PSI 0.900 (&lt;b&gt;&#34;area&#34;&lt;/b&gt; &amp; co)" in page
    assert "<td>&lt;img src=x onerror=alert(2)&gt;</td>" in page
    assert '<span class="badge alert">alert</span>' in page  # the page's own markup is not escaped


def test_the_psi_chart_uses_the_thresholds_the_run_was_judged_by():
    row = {"psi_warn": "0.2", "psi_alert": "0.5", "wasserstein_threshold": "0.3", "drift_alpha": "0"}
    assert ap.run_thresholds(row) == monitoring.Thresholds(0.2, 0.5, 0.3, 0.0)
    assert ap.run_thresholds({"psi_warn": ""}) is None and ap.run_thresholds(None) is None


def test_score_distribution_uses_the_training_reference(zones, trained_registry):
    reference = ap.reference_scores(trained_registry, "v002")
    assert reference is not None and sum(reference["histogram"]["counts"]) == reference["count"]
    assert ap.reference_scores(trained_registry, "v001+v002") is None
    assert ap.reference_scores(trained_registry, "v099") is None


# ----- the CLI ---------------------------------------------------------------------------------------
def test_cli_prints_the_bucket_and_trend_tables(zones, tmp_path):
    run = run_script("analyze_predictions.py", env={**zones["env"], "REPORTS_DIR": str(tmp_path / "r")})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:5] == [
        "Risk buckets per date (low < 0.3 <= medium < 0.7 <= high)",
        "date        rows  low  medium  high",
        "2026-11-24     8    3       3     2",
        "2026-11-25     4    1       0     3",
        "2026-11-26     5    1       2     2",
    ]
    trend = lines[lines.index("Trend") + 1:]
    assert trend[0].split() == ["date", "rows", "mean_score", "high_share", "model", "drift", "max_psi",
                                "max_psi_feature"]
    assert trend[1].split() == ["2026-11-24", "8", "0.4497", "25.0%", "v002", "ok", "0.050", "mean", "radius"]
    assert trend[3].split() == ["2026-11-26", "5", "0.4780", "40.0%", "v002", "alert", "0.900", "mean", "area"]
    assert f"HTML report: {tmp_path / 'r' / 'report.html'}" in run.stdout
    assert (tmp_path / "r" / "report.html").is_file()
    assert "skipping predictions.csv" in run.stderr  # a warning, not an error


def test_cli_without_prediction_files_fails_cleanly(tmp_path):
    env = {"CURATED_DIR": str(tmp_path / "empty"), "REPORTS_DIR": str(tmp_path / "reports")}
    run = run_script("analyze_predictions.py", env=env)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith("error: no prediction files in the curated zone")
    assert "pipeline_run_batch.py" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports").exists()


def test_cli_rejects_bad_dates_and_thresholds(zones):
    run = run_script("analyze_predictions.py", "--start", "2026-13-01", env=zones["env"])
    assert run.returncode == 1 and run.stderr.startswith("error: invalid date '2026-13-01'")
    run = run_script("analyze_predictions.py", "--start", "2026-11-26", "--end", "2026-11-24", env=zones["env"])
    assert run.returncode == 1 and "before --start" in run.stderr
    run = run_script("analyze_predictions.py", "--high-threshold", "1.2", env=zones["env"])
    assert run.returncode == 1 and "0 < medium < high <= 1" in run.stderr
    assert "Traceback" not in run.stderr


def test_text_tables_align_numbers_right_and_show_nan_as_a_dash():
    rows = [{"a": "x", "n": 5, "f": 0.5}, {"a": "long", "n": 123, "f": float("nan")}]
    text = cli.format_table(rows, (("a", "name", ""), ("n", "n", ""), ("f", "share", ".1%")))
    assert text.splitlines() == ["name    n  share", "x       5  50.0%", "long  123      -"]


def test_bucket_of_boundaries():
    scores = np.array([0.0, 0.2999, 0.3, 0.6999, 0.7, 1.0])
    assert ap.bucket_of(scores, 0.3, 0.7) == {"low": 2, "medium": 2, "high": 2}


def test_cli_reads_the_curated_container_on_blob_storage(blob_connection, zones, tmp_path):
    store = storage.BlobStorage(blob_connection)
    for key, scores in DAYS.items():
        with store.write_curated(f"predictions_{key}.csv") as sink:
            sink.write(_write_predictions(tmp_path / "staged", key, scores).read_bytes())
    env = {**zones["env"], "AZURE_STORAGE_CONNECTION_STRING": blob_connection, "REPORTS_DIR": str(tmp_path / "r"),
           "CURATED_DIR": str(tmp_path / "no-local-files")}
    run = run_script("analyze_predictions.py", "--storage", "blob", "--start", "2026-11-25", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1:4] == [
        "date        rows  low  medium  high",
        "2026-11-25     4    1       0     3",
        "2026-11-26     5    1       2     2",
    ]
    assert "source: blob curated zone" in (tmp_path / "r" / "report.html").read_text()
    assert [line.split()[5] for line in run.stdout.splitlines()[7:9]] == ["-", "-"]  # the log's runs were local
    local = run_script("analyze_predictions.py", env=env)  # the local zone is empty
    assert local.returncode == 1 and "no prediction files" in local.stderr


# ----- category features (credit data) -----------------------------------------------------------
def test_credit_report_shows_category_drift_and_the_most_drifted_categorys_shares(tmp_path, monkeypatch,
                                                                                  credit_registry, capsys):
    import generate_raw_data
    import pipeline_run_batch
    from conftest import CREDIT_CSV

    for name, var in (("raw", "RAW_DIR"), ("curated", "CURATED_DIR"), ("logs", "LOGS_DIR")):
        monkeypatch.setenv(var, str(tmp_path / name))
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    for day, drift in (("2026-11-24", 0.0), ("2026-11-25", 1.5)):
        generate_raw_data.generate([dt.date.fromisoformat(day)], rows=300, drift=drift, data=CREDIT_CSV,
                                   target="creditability", drift_features=["purpose", "housing"])
    assert pipeline_run_batch.main(["--start", "2026-11-24", "--end", "2026-11-25",
                                    "--registry-dir", str(credit_registry)]) == 0, capsys.readouterr().err
    report = ap.analyze(storage.LocalStorage(curated_dir=tmp_path / "curated"), logs_dir=tmp_path / "logs",
                        reports_dir=tmp_path / "reports", registry_dir=credit_registry)
    assert report.files["categories_png"].read_bytes().startswith(PNG_SIGNATURE)
    types = {r["feature"]: r["type"] for r in report.drift_table}
    assert types["purpose"] == "category" and types["age_in_years"] == "number" and types["score"] == "score"
    top = max((r for r in report.drift_table if r["type"] == "category"), key=lambda r: r["population_stability_index"])
    assert top["feature"] in ("purpose", "housing") and top["level"] == "alert"
    html = report.files["html"].read_text(encoding="utf-8")
    assert "Most drifted category feature" in html and "chi-squared p-value" in html
    drift_csv = (tmp_path / "reports" / "drift_latest.csv").read_text().splitlines()
    assert drift_csv[0].split(",")[:3] == ["signal", "feature", "type"]
    counts = ap.category_counts_in_file(storage.LocalStorage(curated_dir=tmp_path / "curated"),
                                        "predictions_20261125.csv", "housing")
    assert sum(counts.values()) == 300 and set(counts) <= {"own", "rent", "for free"}
