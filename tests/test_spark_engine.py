"""spark_engine.py: the Spark engine writes the streaming engine's file, summary, drift table and log row.

One local[2] SparkSession for the whole test session (small partitions, so that a few
thousand rows span several of them); every file under tmp_path.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import batch_score
import generate_raw_data
import monitoring
import pipeline_run_batch
import runlog
import spark_engine
import spark_files
import storage
from conftest import run_script
from exact_sum import ExactSum

DAY = dt.date(2026, 11, 26)
ROWS = 3000


@pytest.fixture(scope="session")
def spark():
    session = spark_engine.start_session("local[2]", {"spark.sql.files.maxPartitionBytes": "128k"})
    yield session
    session.stop()


def write_raw(path: Path, rows: int = ROWS, seed: int = 1, day: dt.date = DAY, note: bool = True) -> Path:
    """A generated raw file; with `note`, a text column whose cells need quoting on some rows or are empty."""
    source = generate_raw_data.load_source()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as sink:
        generate_raw_data.write_day(sink, generate_raw_data.generate_chunks(source, day, rows, seed=seed))
    if note:
        lines = path.read_bytes().decode().splitlines()
        notes = ['"say ""hi"", twice"' if i % 97 == 5 else "" if i % 13 == 0 else f" note {i} " for i in range(rows)]
        text = "\n".join([lines[0] + ",note"] + [f"{line},{n}" for line, n in zip(lines[1:], notes)]) + "\n"
        path.write_bytes(text.encode())
    return path


def set_cell(path: Path, row: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def profile_of(trained_registry, service):
    return monitoring.load_profile(trained_registry / f"model_{service.version}")


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----- the same output -----------------------------------------------------------------------------
def test_same_bytes_summary_and_drift_as_the_streaming_engine(spark, service, trained_registry, tmp_path):
    raw = write_raw(tmp_path / "raw.csv")
    assert spark.read.csv(str(raw)).rdd.getNumPartitions() >= 4  # the merge is exercised
    profile = profile_of(trained_registry, service)
    streamed = monitoring.DriftMonitor(profile, table_path=tmp_path / "drift_stream.csv")
    expected = batch_score.score_file(raw, tmp_path / "stream.csv", service, on_chunk=streamed.on_chunk,
                                      block_size=16384)
    sparked = monitoring.DriftMonitor(profile, table_path=tmp_path / "drift_spark.csv")
    out = tmp_path / "out" / "spark.csv"
    summary = spark_engine.SparkEngine(session=spark).score_file(raw, out, service, monitor=sparked)

    assert out.read_bytes() == (tmp_path / "stream.csv").read_bytes()
    assert b'"say ""hi"", twice"' in out.read_bytes() and b", note 7 ," in out.read_bytes()
    got, want = summary.to_dict(), expected.to_dict()
    for key in ("duration_s", "output"):
        got.pop(key), want.pop(key)
    assert got == want and got["row_count"] == ROWS
    assert sparked.log_fields(summary) == streamed.log_fields(expected)
    assert (tmp_path / "drift_spark.csv").read_bytes() == (tmp_path / "drift_stream.csv").read_bytes()
    assert hidden(out.parent) == []


def test_categories_validate_and_score_as_in_the_streaming_engine(spark, credit_registry, tmp_path):
    """A table model (categories with commas, gaps): the streaming engine's schema checks, unchanged."""
    import csv

    from conftest import CREDIT_CSV
    from score import ModelService

    service = ModelService.from_registry(credit_registry)
    profile = monitoring.load_profile(credit_registry / f"model_{service.version}")
    with open(CREDIT_CSV, newline="", encoding="utf-8") as handle:
        rows = [row[:-1] for row in csv.reader(handle)]  # without the target
    raw = tmp_path / "credit.csv"
    with open(raw, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([["application_id", *rows[0]]] + [
            [f"A{i:04d}", *row] for i, row in enumerate(rows[1:])])
    streamed = monitoring.DriftMonitor(profile, table_path=tmp_path / "drift_stream.csv")
    expected = batch_score.score_file(raw, tmp_path / "stream.csv", service, on_chunk=streamed.on_chunk)
    sparked = monitoring.DriftMonitor(profile, table_path=tmp_path / "drift_spark.csv")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "48k")
    try:
        assert spark.read.csv(str(raw)).rdd.getNumPartitions() >= 4
        summary = spark_engine.score_file(spark, raw, tmp_path / "spark.csv", service, monitor=sparked)
        assert (tmp_path / "spark.csv").read_bytes() == (tmp_path / "stream.csv").read_bytes()
        assert (summary.row_count, summary.mean_score) == (expected.row_count, expected.mean_score) == (
            1000, summary.mean_score)
        assert sparked.log_fields(summary) == streamed.log_fields(expected)
        assert (tmp_path / "drift_spark.csv").read_bytes() == (tmp_path / "drift_stream.csv").read_bytes()
        rows[900][rows[0].index("purpose")] = "boat"
        with open(raw, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows([["application_id", *rows[0]]] + [
                [f"A{i:04d}", *row] for i, row in enumerate(rows[1:])])
        with pytest.raises(batch_score.BatchRowError) as streamed_error:
            batch_score.score_file(raw, tmp_path / "s2.csv", service)
        with pytest.raises(batch_score.BatchRowError) as spark_error:
            spark_engine.score_file(spark, raw, tmp_path / "o2.csv", service)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", "128k")
    assert str(spark_error.value) == str(streamed_error.value)
    assert str(spark_error.value).startswith(f"{raw}: row 900 (file line 901), column 'purpose': unknown category 'boat'")
    assert not (tmp_path / "o2.csv").exists()


def test_header_only_file_gives_a_header_only_output(spark, service, tmp_path):
    raw = write_raw(tmp_path / "raw.csv", rows=1, note=False)
    raw.write_text(raw.read_text().splitlines()[0] + "\n")
    summary = spark_engine.SparkEngine(session=spark).score_file(raw, tmp_path / "o.csv", service)
    batch_score.score_file(raw, tmp_path / "s.csv", service)
    assert (tmp_path / "o.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()
    assert summary.row_count == 0 and summary.mean_score is None and summary.min_score is None


# ----- errors: one line, no output -----------------------------------------------------------------
@pytest.mark.parametrize("value", ["abc", "", "inf"])
def test_a_bad_cell_fails_with_the_streaming_engines_message_and_no_output(spark, service, tmp_path, value):
    raw = write_raw(tmp_path / "raw.csv", note=False)
    set_cell(raw, 2711, "mean texture", value)
    set_cell(raw, 2712, "worst area", "x")
    with pytest.raises(batch_score.BatchError) as streamed:
        batch_score.score_file(raw, tmp_path / "s.csv", service, block_size=16384)
    out = tmp_path / "out" / "o.csv"
    with pytest.raises(batch_score.BatchRowError) as sparked:
        spark_engine.SparkEngine(session=spark).score_file(raw, out, service)
    assert str(sparked.value) == str(streamed.value)
    assert sparked.value.row == 2711 and sparked.value.column == "mean texture"
    assert list(out.parent.iterdir()) == []


def test_missing_feature_and_malformed_rows_fail_in_one_line(spark, service, tmp_path):
    raw = write_raw(tmp_path / "raw.csv", note=False)
    lines = raw.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:1500] + [lines[1500].rsplit(",", 3)[0]] + lines[1501:]) + "\n")
    with pytest.raises(batch_score.BatchError) as caught:
        spark_engine.SparkEngine(session=spark).score_file(short, tmp_path / "o.csv", service)
    message = str(caught.value)
    assert message.startswith(f"{short}: malformed row") and "\n" not in message
    missing = tmp_path / "missing.csv"
    missing.write_text("\n".join([lines[0].replace("mean radius", "radius")] + lines[1:]) + "\n")
    with pytest.raises(batch_score.BatchError, match=r"missing feature column\(s\) 'mean radius'"):
        spark_engine.SparkEngine(session=spark).score_file(missing, tmp_path / "o.csv", service)
    with pytest.raises(storage.StorageNotFound, match="does not exist"):
        spark_engine.SparkEngine(session=spark).score_file(tmp_path / "nope.csv", tmp_path / "o.csv", service)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missing.csv", "raw.csv", "short.csv"]


def test_an_interrupted_assembly_leaves_nothing_under_the_output_name(spark, service, tmp_path, monkeypatch):
    raw = write_raw(tmp_path / "raw.csv", note=False)
    out = tmp_path / "out" / "o.csv"

    def interrupted(part, length, sink):
        sink.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(spark_files, "_copy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        spark_engine.SparkEngine(session=spark).score_file(raw, out, service)
    assert list(out.parent.iterdir()) == []


def test_uris_go_through_hadoops_file_system(spark, service, trained_registry, tmp_path, capsys):
    """abfss:// on Azure; file:// here: the same code path (header, parts, assembly, model copy)."""
    raw = write_raw(tmp_path / "in" / "raw.csv")
    batch_score.score_file(raw, tmp_path / "stream.csv", service)
    out = tmp_path / "out" / "o.csv"
    model = (trained_registry / f"model_{service.version}").as_uri()
    assert spark_engine.main(["--input", raw.as_uri(), "--output", out.as_uri(), "--model-dir", model]) == 0
    assert json.loads(capsys.readouterr().out)["row_count"] == ROWS
    assert out.read_bytes() == (tmp_path / "stream.csv").read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.csv"]  # no scratch folder, no .crc files
    assert spark_engine.main(["--input", (tmp_path / "nope.csv").as_uri(), "--output", out.as_uri(),
                              "--registry-dir", str(trained_registry)]) == 1
    assert capsys.readouterr().err == f"error: {(tmp_path / 'nope.csv').as_uri()} does not exist\n"


# ----- the pipeline --------------------------------------------------------------------------------
def test_pipeline_with_spark_logs_the_same_row_and_drift_table(spark, zones, service, capsys):
    write_raw(zones["raw"] / storage.raw_name(DAY), note=False)
    curated = zones["curated"] / storage.curated_name(DAY)
    drift = monitoring.drift_table_path(zones["logs"], f"{DAY:%Y%m%d}")
    assert pipeline_run_batch.main(["--date", str(DAY)]) == 0
    streamed = (curated.read_bytes(), drift.read_bytes())
    # A killed Spark run of that date left its scratch folder and a half-written file behind.
    (zones["curated"] / f".{curated.name}.spark-dead.tmp").mkdir()
    (zones["curated"] / f".{curated.name}.spark-dead.tmp" / "part-00000-x.txt").write_text("1,2\n")
    (zones["curated"] / f".{curated.name}.abc123.tmp").write_text("1,2\n")
    capsys.readouterr()
    assert pipeline_run_batch.main(["--date", str(DAY), "--engine", "spark"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.splitlines()[0].startswith(f"{DAY} success {ROWS} rows, score min ")
    assert (curated.read_bytes(), drift.read_bytes()) == streamed
    assert hidden(zones["curated"]) == []
    first, second = runlog.read()
    for row in (first, second):
        row.pop("timestamp"), row.pop("duration_s")
    assert second == first and second["status"] == "success"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_a_run_killed_mid_job_leaves_nothing_under_the_output_name(spark, zones, service):
    """SIGKILL the pipeline while Spark writes its parts: no curated file; the next run clears and succeeds."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT, wait_until

    write_raw(zones["raw"] / storage.raw_name(DAY), rows=60_000, note=False)
    curated = zones["curated"] / storage.curated_name(DAY)
    child = subprocess.Popen(
        [sys.executable, "pipeline_run_batch.py", "--date", str(DAY), "--engine", "spark", "--spark-master", "local[1]"],
        cwd=ROOT, env={**os.environ, **zones["env"]}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jvm: list[int] = []

    def writing_parts() -> bool:
        assert child.poll() is None, f"the run ended before the kill point (exit {child.returncode})"
        jvm[:] = jvm or _children(child.pid)
        return any(p.stat().st_size for p in zones["curated"].glob(f".{curated.name}.spark-*.tmp/**/part-*"))

    try:
        wait_until(writing_parts, 300, "Spark to write its first part", interval=0.005)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    # The JVM sees its driver's pipe close and exits by itself; wait for it so nothing writes on.
    wait_until(lambda: not [pid for pid in jvm if Path(f"/proc/{pid}").exists()
                            and "java" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")],
               120, "the killed run's JVM to exit")
    assert not curated.exists()
    left = [p.name for p in zones["curated"].iterdir()]
    assert left and all(name.startswith(f".{curated.name}.") and name.endswith(".tmp") for name in left)
    row = pipeline_run_batch.run_date(DAY, storage.LocalStorage(), service,
                                      engine=spark_engine.SparkEngine(session=spark))
    assert row["status"] == "success" and int(row["row_count"]) == 60_000, row["error"]
    assert sorted(p.name for p in zones["curated"].iterdir()) == [curated.name]


def test_blob_storage_is_refused_in_one_line(zones, capsys):
    assert pipeline_run_batch.main(["--date", str(DAY), "--storage", "blob", "--engine", "spark"]) == 2
    assert capsys.readouterr().err == f"error: {spark_engine.BLOB_REFUSED}\n"
    assert batch_score.main(["--date", str(DAY), "--storage", "blob", "--engine", "spark"]) == 1
    assert capsys.readouterr().err == f"error: {spark_engine.BLOB_REFUSED}\n"
    assert runlog.read() == []


def test_batch_score_cli_with_spark_in_process(spark, zones, service, capsys):
    raw = write_raw(zones["raw"] / storage.raw_name(DAY), rows=500, note=False)
    assert batch_score.main(["--input", str(raw), "--engine", "spark"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["row_count"] == 500 and summary["model_version"] == service.version
    assert summary["output"] == str(zones["curated"] / storage.curated_name(DAY))
    assert not spark.sparkContext._jsc.sc().isStopped()  # the engine leaves a session it did not start


def test_the_script_runs_quietly_in_its_own_session(trained_registry, tmp_path):
    """A fresh JVM: stdout is the summary, stderr stays empty (no WARN lines, no progress bars)."""
    raw = write_raw(tmp_path / "raw.csv", rows=400, note=False)
    env = {"LOCAL_REGISTRY_DIR": str(trained_registry), "PYTHONWARNINGS": ""}  # the warnings a user would see
    result = run_script("spark_engine.py", "--input", str(raw), "--output", str(tmp_path / "o.csv"),
                        "--spark-master", "local[1]", env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["row_count"] == 400


# ----- the mergeable parts -------------------------------------------------------------------------
def test_exact_sum_does_not_depend_on_grouping():
    values = np.random.default_rng(3).random(10007) ** 7
    whole, parts = ExactSum(), ExactSum()
    whole.add(values)
    for piece in np.array_split(values[::-1], 9):
        part = ExactSum()
        part.add(piece)
        parts.merge(pickle.loads(pickle.dumps(part)))
    assert whole.exact() == parts.exact()
    assert whole.mean(len(values)) == float(sum(map(__import__("fractions").Fraction, values.tolist())) / len(values))
    assert ExactSum().mean(0) is None


def test_merged_accumulators_equal_one_pass_up_to_the_reservoir_and_sample_uniformly_beyond():
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(500, 2))
    profile = monitoring.build_profile(reference, ["a", "b"], rng.random(500))
    rows, scores = rng.normal(size=(3000, 2)), rng.random(3000)
    one = monitoring.DriftAccumulator(profile, reservoir_size=5000)
    one.update(rows, scores)
    merged = monitoring.DriftAccumulator(profile, reservoir_size=5000)
    for start in range(0, 3000, 700):
        part = monitoring.DriftAccumulator(profile, reservoir_size=5000, seed=start)
        part.update(rows[start:start + 700], scores[start:start + 700])
        merged.merge(pickle.loads(pickle.dumps(part)))
    def written(table):  # what the drift table file holds (means are float sums: equal to their 6 digits)
        return [{key: monitoring.format_value(value) for key, value in row.items()} for row in table]

    assert written(merged.result().table) == written(one.result().table)
    assert merged.result().summary == one.result().summary
    small = monitoring.DriftAccumulator(profile, reservoir_size=200)
    for start in range(0, 3000, 1000):
        part = monitoring.DriftAccumulator(profile, reservoir_size=200, seed=start)
        part.update(np.full((1000, 2), float(start)), scores[:1000])
        small.merge(part)
    kept = small._reservoir.values()[:, 0]
    assert small.rows == 3000 and kept.shape == (200,)
    assert all(40 < np.sum(kept == v) < 95 for v in (0.0, 1000.0, 2000.0))  # about a third from each part
    with pytest.raises(monitoring.MonitoringError, match="same profile"):
        small.merge(monitoring.DriftAccumulator(monitoring.build_profile(reference[:, :1], ["a"])))


def test_spark_master_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.delenv(spark_engine.ENV_MASTER, raising=False)
    assert spark_engine.spark_master() == "local[*]"
    monkeypatch.setenv(spark_engine.ENV_MASTER, "spark://head:7077")
    assert spark_engine.spark_master() == "spark://head:7077"
    assert spark_engine.spark_master("local[2]") == "local[2]"


# ----- the Azure ML serverless Spark job -----------------------------------------------------------
def test_azure_spark_job_runs_spark_engine_with_flags_it_accepts():
    import re
    import shlex
    import warnings

    import azure.ai.ml as azml
    import yaml

    from conftest import ROOT

    path = ROOT / "azureml" / "spark" / "batch-score-job.yml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = azml.load_job(path)
    assert job.type == "spark" and job.entry.entry == "spark_engine.py"
    assert (path.parent / job.code).resolve() == ROOT and (ROOT / job.entry.entry).is_file()
    assert job.resources.runtime_version == "3.4" and job.resources.instance_type == "standard_e4s_v3"
    assert (job.executor_instances, job.executor_cores, job.dynamic_allocation_enabled) == (2, 2, True)
    raw = yaml.safe_load(path.read_text())
    references = re.findall(r"\$\{\{(inputs|outputs)\.(\w+)\}\}", raw["args"])
    assert {name for _, name in references} == {"raw", "model", "curated"}
    assert all(name in raw[kind] and raw[kind][name]["mode"] == "direct" for kind, name in references)
    assert raw["inputs"]["model"]["type"] == "custom_model"
    args = re.sub(r"\$\{\{(inputs|outputs)\.(\w+)\}\}", r"/mnt/\2", raw["args"])
    parsed = spark_engine.build_parser().parse_args(shlex.split(args))
    assert (parsed.input, parsed.model_dir, parsed.output) == ("/mnt/raw", "/mnt/model", "/mnt/curated/predictions.csv")
