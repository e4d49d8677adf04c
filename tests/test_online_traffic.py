"""online_traffic.py: the collected traffic per deployment and hour, scores, the latest monitor runs; the report's section."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import analyze_predictions as ap
import collector
import online_traffic
import storage

BASE = datetime(2026, 11, 30, 10, 15, tzinfo=timezone.utc)
RECORD = {"mean radius": 1.0}


def collect(root: Path, deployment: str, requests: list[tuple[datetime, list[float]]]) -> None:
    c = collector.DataCollector(collector.LocalSink(root), "risk-endpoint", deployment, instance="i1")
    for i, (when, probabilities) in enumerate(requests):
        outputs = [{"prediction": int(p >= 0.5), "probability": p} for p in probabilities]
        c.collect([RECORD] * len(probabilities), outputs, request_id=f"r{i}", model_version="v001", when=when)
    c.flush()


def kept(root: Path, deployment: str, run_at: str, status: dict) -> None:
    online_traffic.keep_result(collector.LocalSink(root), {
        "endpoint": "risk-endpoint", "deployment": deployment, "run_at": run_at, "window_start": "2026-11-29T12:00:00Z",
        "window_end": "2026-11-30T12:00:00Z", "requests": 3, "records": 5, "status": status, "signals": []})


def test_requests_records_and_scores_per_deployment_and_hour(tmp_path):
    collect(tmp_path, "blue", [(BASE, [0.1, 0.2]), (BASE + timedelta(minutes=10), [0.9]),
                               (BASE + timedelta(hours=1), [0.5, 0.75, 0.05])])
    collect(tmp_path, "green", [(BASE, [0.8])])
    collect(tmp_path, "blue", [(BASE - timedelta(days=3), [0.4])])  # before the window
    traffic = online_traffic.summarize(collector.LocalSink(tmp_path), BASE - timedelta(days=1))
    assert traffic.hours == [
        {"deployment": "risk-endpoint/blue", "hour": "2026-11-30 10:00", "requests": 2, "records": 3},
        {"deployment": "risk-endpoint/blue", "hour": "2026-11-30 11:00", "requests": 1, "records": 3},
        {"deployment": "risk-endpoint/green", "hour": "2026-11-30 10:00", "requests": 1, "records": 1},
    ]
    blue, green = traffic.scores
    assert blue == {"deployment": "risk-endpoint/blue", "records": 6, "mean_score": (0.1 + 0.2 + 0.9 + 0.5 + 0.75 + 0.05) / 6,
                    "low": 3 / 6, "medium": 1 / 6, "high": 2 / 6}
    assert green["records"] == 1 and green["high"] == 1.0
    assert traffic.monitors == []


def test_latest_monitor_run_per_deployment(tmp_path):
    collect(tmp_path, "blue", [(BASE, [0.1])])
    kept(tmp_path, "blue", "2026-11-30T11:00:00Z", {"data_drift": "ok", "prediction_drift": "ok", "data_quality": "ok"})
    kept(tmp_path, "blue", "2026-11-30T12:00:00Z", {"data_drift": "alert", "prediction_drift": "ok",
                                                    "data_quality": None})
    kept(tmp_path, "green", "2026-11-30T12:00:00Z", {"data_drift": "ok", "prediction_drift": "ok", "data_quality": "ok"})
    traffic = online_traffic.summarize(collector.LocalSink(tmp_path), BASE - timedelta(days=1))
    assert traffic.monitors == [
        {"deployment": "risk-endpoint/blue", "run_at": "2026-11-30T12:00:00Z",
         "window": "2026-11-29T12:00:00Z to 2026-11-30T12:00:00Z", "records": 5, "data_drift": "alert",
         "prediction_drift": "ok", "data_quality": "-"},
        {"deployment": "risk-endpoint/green", "run_at": "2026-11-30T12:00:00Z",
         "window": "2026-11-29T12:00:00Z to 2026-11-30T12:00:00Z", "records": 5, "data_drift": "ok",
         "prediction_drift": "ok", "data_quality": "ok"},
    ]
    assert online_traffic.latest_result(collector.LocalSink(tmp_path), "risk-endpoint", "blue")["run_at"] == \
        "2026-11-30T12:00:00Z"


def _curated(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "predictions_20261126.csv").write_text(
        "account_id,mean radius,prediction,score,model_version\nACC1,1,0,0.1,v001\nACC2,2,1,0.9,v001\n")


def test_the_report_has_an_online_traffic_section(tmp_path, monkeypatch):
    root = tmp_path / "collected"
    monkeypatch.setenv("DATA_COLLECTOR_DIR", str(root))
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    now = datetime.now(timezone.utc)
    collect(root, "blue", [(now - timedelta(minutes=5), [0.2, 0.95])])
    kept(root, "blue", "2026-11-30T12:00:00Z", {"data_drift": "alert", "prediction_drift": "ok", "data_quality": "ok"})
    _curated(tmp_path / "curated")
    report = ap.analyze(storage.LocalStorage(curated_dir=tmp_path / "curated"), reports_dir=tmp_path / "reports",
                        logs_dir=tmp_path / "logs", registry_dir=tmp_path / "no-registry")
    html = report.files["html"].read_text()
    section = html.split("<h2>Online traffic</h2>", 1)[1].split("</section>", 1)[0]
    assert f"<td>risk-endpoint/blue</td><td>{now - timedelta(minutes=5):%Y-%m-%d %H}:00</td>" in section
    assert '<td class="num">2</td>' in section  # records of that hour
    assert "<td>2026-11-30T12:00:00Z</td>" in section
    assert '<span class="badge alert">alert</span>' in section


def test_the_report_leaves_the_section_out_without_collected_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_COLLECTOR_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    _curated(tmp_path / "curated")
    report = ap.analyze(storage.LocalStorage(curated_dir=tmp_path / "curated"), reports_dir=tmp_path / "reports",
                        logs_dir=tmp_path / "logs", registry_dir=tmp_path / "no-registry")
    assert "Online traffic" not in report.files["html"].read_text()
