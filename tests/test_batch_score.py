"""batch_score.py: streaming scoring, validation with row numbers, atomic output, Azure's init/run."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import batch_score
import generate_raw_data
from batch_score import BatchError, BatchRowError
from conftest import run_script

DAY = dt.date(2026, 11, 26)


def write_raw(path: Path, rows: int = 200, seed: int = 1, day: dt.date = DAY) -> Path:
    source = generate_raw_data.load_source()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as sink:
        generate_raw_data.write_day(sink, generate_raw_data.generate_chunks(source, day, rows, seed=seed))
    return path


def expected_scores(service, frame: pd.DataFrame) -> np.ndarray:
    return service.model.predict_proba(frame[service.features].to_numpy(dtype=np.float64))[:, 1]


def set_cell(path: Path, row: int, column: str, value: str) -> None:
    """Replace one cell of a generated CSV (row is the 1-based data row) as text."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def raw_file(tmp_path) -> Path:
    return write_raw(tmp_path / "raw" / "new_data_20261126.csv")


def test_scores_equal_the_pipeline_and_columns_keep_their_order(service, raw_file, tmp_path):
    out = tmp_path / "out" / "predictions.csv"
    summary = batch_score.score_file(raw_file, out, service)
    source = pd.read_csv(raw_file)
    result = pd.read_csv(out)
    assert list(result.columns) == list(source.columns) + ["prediction", "score", "model_version"]
    assert summary.row_count == len(source) == len(result) == 200
    expected = expected_scores(service, source)
    np.testing.assert_allclose(result["score"].to_numpy(), expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(result["prediction"].to_numpy(), (expected >= 0.5).astype(int))
    assert set(result["model_version"]) == {service.version}
    pd.testing.assert_frame_equal(result[source.columns], source)
    assert summary.min_score == pytest.approx(expected.min(), abs=1e-12)
    assert summary.max_score == pytest.approx(expected.max(), abs=1e-12)
    assert summary.mean_score == pytest.approx(expected.mean(), abs=1e-12)
    assert summary.predicted_positive == int(result["prediction"].sum())
    # Original text passes through unchanged: the first row's input cells are byte-identical.
    assert out.read_text().splitlines()[1].startswith(raw_file.read_text().splitlines()[1] + ",")


def test_features_are_taken_by_name_whatever_the_order(service, raw_file, tmp_path):
    source = pd.read_csv(raw_file)
    shuffled = source[list(reversed(source.columns))]
    shuffled_path = tmp_path / "shuffled.csv"
    shuffled.to_csv(shuffled_path, index=False)
    batch_score.score_file(shuffled_path, tmp_path / "a.csv", service)
    result = pd.read_csv(tmp_path / "a.csv")
    assert list(result.columns[:-3]) == list(shuffled.columns)
    np.testing.assert_allclose(result["score"], expected_scores(service, source), rtol=0, atol=1e-9)


def test_small_chunks_give_the_same_output_and_feed_the_callback(service, raw_file, tmp_path):
    seen = []
    batch_score.score_file(raw_file, tmp_path / "big.csv", service)
    summary = batch_score.score_file(raw_file, tmp_path / "small.csv", service, block_size=4096,
                                     on_chunk=lambda m, s: seen.append((m.copy(), s.copy())))
    big, small = pd.read_csv(tmp_path / "big.csv"), pd.read_csv(tmp_path / "small.csv")
    # The same rows; scores agree to the last bits BLAS may round differently per block size.
    pd.testing.assert_frame_equal(big.drop(columns="score"), small.drop(columns="score"))
    np.testing.assert_allclose(big["score"], small["score"], rtol=0, atol=1e-12)
    assert len(seen) > 5  # 200 rows of about 270 bytes in 4 KiB blocks
    matrix = np.vstack([m for m, _ in seen])
    scores = np.concatenate([s for _, s in seen])
    source = pd.read_csv(raw_file)
    np.testing.assert_array_equal(matrix, source[service.features].to_numpy(dtype=np.float64))
    np.testing.assert_allclose(scores, pd.read_csv(tmp_path / "small.csv")["score"], rtol=0, atol=1e-15)
    assert summary.row_count == 200


def test_missing_feature_column_is_named_and_nothing_is_written(service, raw_file, tmp_path):
    frame = pd.read_csv(raw_file).drop(columns=["mean area", "worst symmetry"])
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    out = tmp_path / "out" / "p.csv"
    with pytest.raises(BatchError, match=r"missing feature column\(s\) 'mean area', 'worst symmetry'"):
        batch_score.score_file(bad, out, service)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [("abc", "expected a number, got 'abc'"), ("", "empty value"), ("1,5", "expected a number"),
     ("nan", "expected a finite number, got 'nan'"), ("-inf", "expected a finite number, got '-inf'"), ("NA", "expected a number, got 'NA'")],
)
def test_bad_cell_fails_with_its_row_and_column(service, raw_file, tmp_path, value, reason):
    set_cell(raw_file, 137, "mean texture", f'"{value}"' if "," in value else value)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(BatchRowError) as info:
        batch_score.score_file(raw_file, out_dir / "p.csv", service, block_size=4096)
    assert info.value.row == 137
    assert info.value.column == "mean texture"
    assert "row 137 (file line 138), column 'mean texture'" in str(info.value)
    assert reason in str(info.value)
    assert list(out_dir.iterdir()) == []  # no partial file, no temporary file left behind


def test_the_earliest_bad_row_is_reported_whatever_its_column(service, raw_file, tmp_path):
    set_cell(raw_file, 30, "mean radius", "abc")  # first feature, later row
    set_cell(raw_file, 12, "worst fractal dimension", "inf")  # last feature, earlier row
    set_cell(raw_file, 12, "worst area", "")  # same row, earlier in the model's order
    with pytest.raises(BatchRowError) as info:
        batch_score.score_file(raw_file, tmp_path / "p.csv", service)
    assert (info.value.row, info.value.column) == (12, "worst area")
    set_cell(raw_file, 12, "worst area", "1.0")
    with pytest.raises(BatchRowError, match="row 12 .*'worst fractal dimension': expected a finite number, got 'inf'"):
        batch_score.score_file(raw_file, tmp_path / "p.csv", service)


def test_spaces_around_a_number_are_accepted(service, raw_file, tmp_path):
    set_cell(raw_file, 7, "mean radius", " 14.5 ")
    batch_score.score_file(raw_file, tmp_path / "p.csv", service, block_size=4096)
    result = pd.read_csv(tmp_path / "p.csv")
    assert result.loc[6, "mean radius"] == 14.5
    expected = expected_scores(service, pd.read_csv(raw_file))
    np.testing.assert_allclose(result["score"], expected, rtol=0, atol=1e-9)


def test_a_failed_rerun_leaves_the_previous_output_untouched(service, raw_file, tmp_path):
    out = tmp_path / "p.csv"
    batch_score.score_file(raw_file, out, service)
    before = out.read_bytes()
    set_cell(raw_file, 200, "worst area", "x")
    with pytest.raises(BatchRowError, match="row 200 "):
        batch_score.score_file(raw_file, out, service)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_header_only_gives_an_empty_output_and_an_empty_file_is_an_error(service, raw_file, tmp_path):
    header = raw_file.read_text().splitlines()[0]
    only = tmp_path / "only.csv"
    only.write_text(header + "\n")
    summary = batch_score.score_file(only, tmp_path / "o.csv", service)
    assert summary.row_count == 0 and summary.mean_score is None
    assert (tmp_path / "o.csv").read_text() == header + ",prediction,score,model_version\n"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BatchError, match="is empty: expected a header line"):
        batch_score.score_file(empty, tmp_path / "e.csv", service)
    assert not (tmp_path / "e.csv").exists()


def test_a_malformed_row_and_clashing_columns_are_errors(service, raw_file, tmp_path):
    lines = raw_file.read_text().splitlines()
    lines[50] = lines[50].rsplit(",", 1)[0]
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines) + "\n")
    with pytest.raises(BatchError, match="malformed row after row 0: expected 31 values, got 30"):
        batch_score.score_file(short, tmp_path / "s.csv", service)
    frame = pd.read_csv(raw_file)
    frame["score"] = 1
    frame.to_csv(tmp_path / "clash.csv", index=False)
    with pytest.raises(BatchError, match="already has column\\(s\\) score"):
        batch_score.score_file(tmp_path / "clash.csv", tmp_path / "c.csv", service)


def test_a_header_that_is_not_valid_csv_is_a_batch_error(service, raw_file, tmp_path):
    data = raw_file.read_bytes()
    broken = tmp_path / "cr.csv"
    broken.write_bytes(data.replace(b",", b",x\ry", 1))  # a stray carriage return inside the header
    with pytest.raises(BatchError, match="the header line is not valid CSV"):
        batch_score.score_file(broken, tmp_path / "cr-out.csv", service)
    assert not (tmp_path / "cr-out.csv").exists()


def test_text_columns_needing_quotes_round_trip(service, raw_file, tmp_path):
    frame = pd.read_csv(raw_file)
    frame.insert(1, "note", ['say "hi", twice' if i % 7 == 0 else "plain" for i in range(len(frame))])
    noted = tmp_path / "noted.csv"
    frame.to_csv(noted, index=False)
    batch_score.score_file(noted, tmp_path / "n.csv", service)
    result = pd.read_csv(tmp_path / "n.csv")
    assert result["note"].tolist() == frame["note"].tolist()
    np.testing.assert_allclose(result["score"], expected_scores(service, frame), rtol=0, atol=1e-9)


def test_long_files_show_progress(service, raw_file, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(batch_score, "PROGRESS_EVERY_S", 0.0)
    with caplog.at_level("INFO", logger="batch_score"):
        batch_score.score_file(raw_file, tmp_path / "p.csv", service, block_size=8192)
    lines = [r.getMessage() for r in caplog.records if r.name == "batch_score"]
    assert len(lines) > 3
    assert lines[-1].startswith(f"{raw_file}: 200 rows scored in ") and lines[-1].endswith("100% of the file")


def test_score_stream_works_on_any_binary_stream(service, raw_file):
    sink = io.BytesIO()
    summary = batch_score.score_stream(io.BytesIO(raw_file.read_bytes()), sink, service)
    assert summary.row_count == 200
    assert len(pd.read_csv(io.BytesIO(sink.getvalue()))) == 200


def test_azure_batch_contract_init_and_run(service, trained_registry, raw_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(trained_registry))
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    monkeypatch.setattr(batch_score, "_service", None)
    second = write_raw(tmp_path / "second.csv", rows=30, seed=9)
    batch_score.init()
    frame = batch_score.run([str(raw_file), str(second)])
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 230
    inputs = pd.concat([pd.read_csv(raw_file), pd.read_csv(second)], ignore_index=True)
    np.testing.assert_allclose(frame["score"], expected_scores(service, inputs), rtol=0, atol=1e-9)
    assert set(frame["model_version"]) == {service.version}
    assert frame[service.features].dtypes.unique().tolist() == [np.float64]
    # Under Azure ML the model comes from $AZUREML_MODEL_DIR (the registered folder inside it).
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(trained_registry))
    monkeypatch.setattr(batch_score, "_service", None)
    batch_score.init()
    assert batch_score._service is not None and batch_score._service.features == service.features


def test_cli_input_output_and_errors(trained_registry, raw_file, tmp_path, monkeypatch, capsys):
    env = {"LOCAL_REGISTRY_DIR": str(trained_registry)}
    out = tmp_path / "cli.csv"
    done = run_script("batch_score.py", "--input", str(raw_file), "--output", str(out), env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["row_count"] == 200 and summary["model_version"] == "v002"
    assert summary["output"] == str(out) and out.is_file()

    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(trained_registry))
    assert batch_score.main(["--input", str(raw_file), "--output", str(out), "--model-version", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == "v001"

    set_cell(raw_file, 3, "mean radius", "")
    failed = run_script("batch_score.py", "--input", str(raw_file), "--output", str(tmp_path / "x.csv"), env=env)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: {raw_file}: row 3 (file line 4), column 'mean radius': empty value, expected a number"
    ]
    assert not (tmp_path / "x.csv").exists()

    assert batch_score.main(["--input", str(tmp_path / "nope.csv"), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nope.csv does not exist" in err and len(err.splitlines()) == 1


def test_cli_by_date_uses_the_zones(trained_registry, tmp_path, monkeypatch, capsys):
    for key, value in {"LOCAL_REGISTRY_DIR": trained_registry, "RAW_DIR": tmp_path / "raw",
                       "CURATED_DIR": tmp_path / "curated"}.items():
        monkeypatch.setenv(key, str(value))
    write_raw(tmp_path / "raw" / "new_data_20261126.csv")
    assert batch_score.main(["--date", "2026-11-26", "--storage", "local"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == str(tmp_path / "curated" / "predictions_20261126.csv")
    assert (tmp_path / "curated" / "predictions_20261126.csv").is_file()
    assert batch_score.main(["--date", "../etc"]) == 1
    assert "invalid date '../etc'" in capsys.readouterr().err


# ----- the version's schema: categories and empty cells ----------------------------------------
def _credit_raw(tmp_path: Path, rows: int = 120) -> Path:
    from conftest import CREDIT_CSV

    text = CREDIT_CSV.read_text(encoding="utf-8").splitlines()
    header = text[0].split(",")
    frame = pd.read_csv(CREDIT_CSV, nrows=rows, keep_default_na=False).drop(columns=["creditability"])
    frame.insert(0, "application_id", [f"A{i:04d}" for i in range(rows)])
    assert header[-1] == "creditability"
    frame.to_csv(tmp_path / "credit.csv", index=False)
    return tmp_path / "credit.csv"


def test_credit_file_scores_as_the_api_and_keeps_its_text(credit_registry, tmp_path):
    from score import ModelService

    service = ModelService.from_registry(credit_registry)
    raw = _credit_raw(tmp_path)
    summary = batch_score.score_file(raw, tmp_path / "out.csv", service)
    assert summary.row_count == 120 and summary.model_version == "v001"
    import csv

    with open(raw, newline="", encoding="utf-8") as a, open(tmp_path / "out.csv", newline="", encoding="utf-8") as b:
        source_rows, out_rows = list(csv.reader(a)), list(csv.reader(b))
    assert out_rows[0] == source_rows[0] + ["prediction", "score", "model_version"]
    # every input cell as written (as text), the category values with commas included
    assert [row[:-3] for row in out_rows[1:]] == source_rows[1:]
    assert out_rows[1][-4] == "yes" and out_rows[1][-5] == "yes, registered under the customers name"
    records = pd.read_csv(raw, keep_default_na=False).drop(columns=["application_id"]).to_dict("records")
    records = [{k: (float(v) if not isinstance(v, str) else v) for k, v in r.items()} for r in records]
    expected = [r["probability"] for r in service.score_payload({"records": records})["results"]]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["score"], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("column, value, reason", [
    ("purpose", "boat", "unknown category 'boat'; expected one of \"business\", \"car (new)\", \"car (used)\", "
     "\"domestic appliances\", \"education\", \"furniture/equipment\", \"others\", \"radio/television\", "
     "\"repairs\", \"retraining\""),
    ("housing", "", 'empty value, expected one of "for free", "own", "rent"'),
    ("housing", " own", "unknown category ' own'; expected one of \"for free\", \"own\", \"rent\""),
    ("age_in_years", "", "empty value, expected a number"),
    ("age_in_years", "old", "expected a number, got 'old'"),
])
def test_credit_bad_cells_name_row_column_and_value(credit_registry, tmp_path, column, value, reason):
    from score import ModelService

    import csv

    raw = _credit_raw(tmp_path)
    with open(raw, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows[37][rows[0].index(column)] = value
    with open(raw, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    with pytest.raises(BatchRowError) as err:
        batch_score.score_file(raw, tmp_path / "out.csv", ModelService.from_registry(credit_registry))
    assert str(err.value) == f"{raw}: row 37 (file line 38), column {column!r}: {reason}"
    assert err.value.value == value and not (tmp_path / "out.csv").exists()


def test_empty_cells_pass_for_nullable_features(gappy_registry, tmp_path):
    from score import ModelService

    service = ModelService.from_registry(gappy_registry)
    raw = tmp_path / "gappy_raw.csv"
    raw.write_text("grade,channel,region,income,note\n3,,west,,a\n1,web,north,61.5,\"b, c\"\n", encoding="utf-8")
    batch_score.score_file(raw, tmp_path / "out.csv", service)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, dtype=str)
    assert out.iloc[:, :5].values.tolist() == [["3", "", "west", "", "a"], ["1", "web", "north", "61.5", "b, c"]]
    records = [{"income": None, "region": "west", "channel": None, "grade": "3"},
               {"income": 61.5, "region": "north", "channel": "web", "grade": "1"}]
    expected = [r["probability"] for r in service.score_payload({"records": records})["results"]]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["score"], expected, rtol=0, atol=1e-12)
    raw.write_text("grade,channel,region,income\n3,,,1.0\n", encoding="utf-8")
    with pytest.raises(BatchRowError, match=r"row 1 \(file line 2\), column 'region': empty value, expected one of"):
        batch_score.score_file(raw, tmp_path / "out.csv", service)


def test_azure_batch_run_keeps_category_text(credit_registry, tmp_path, monkeypatch):
    from score import ModelService

    monkeypatch.setattr(batch_score, "_service", ModelService.from_registry(credit_registry))
    frame = batch_score.run([str(_credit_raw(tmp_path, rows=5))])
    assert frame["housing"].tolist()[:2] == ["own", "own"] and frame["age_in_years"].tolist()[:2] == [67.0, 22.0]
    assert list(frame.columns[-3:]) == ["prediction", "score", "model_version"]


def test_output_dash_is_refused_in_one_line(trained_registry, raw_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(trained_registry))
    monkeypatch.chdir(tmp_path)
    assert batch_score.main(["--input", str(raw_file), "--output", "-"]) == 2
    assert capsys.readouterr() == ("", "error: --output - (stdout) is not supported: stdout carries the run's "
                                       "summary; give a file path such as predictions.csv\n")
    assert not (tmp_path / "-").exists()
