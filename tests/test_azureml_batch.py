"""batch_score.py driven the way an Azure ML batch deployment drives it.

Azure's parallel runner calls `init()` once per worker, then `run(mini_batch)` with
`mini_batch_size` file paths at a time, and with output_action append_row appends the rows
each call returns to predictions.csv. This test does the same with the model laid out
under $AZUREML_MODEL_DIR, and checks that the appended rows equal what the pipeline's own
scoring (batch_score.score_file, the nightly driver's step) writes for the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT

SPEC = yaml.safe_load((ROOT / "azureml" / "batch" / "deployment.yml").read_text(encoding="utf-8"))
ROW_COUNTS = [7, 40, 1, 25, 60, 3, 12]  # seven raw files of different sizes


@pytest.fixture(scope="module")
def raw_files(service, tmp_path_factory) -> list[Path]:
    """CSV files as the raw zone holds them; one has its columns in another order."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame[service.features]
    folder = tmp_path_factory.mktemp("azureml-batch-raw")
    files, start = [], 0
    for index, count in enumerate(ROW_COUNTS):
        part = frame.iloc[start:start + count]
        if index == 3:
            part = part[list(reversed(service.features))]
        path = folder / f"new_data_202611{index + 1:02d}.csv"
        part.to_csv(path, index=False)
        files.append(path)
        start += count
    return files


@pytest.fixture
def batch_score(azureml_model_dir, monkeypatch):
    import batch_score as module

    monkeypatch.setenv("AZUREML_MODEL_DIR", str(azureml_model_dir))
    monkeypatch.setattr(module, "_service", None)
    return module


def _drive(module, files: list[Path], mini_batch_size: int, predictions: Path) -> list[str]:
    """init() once, run() per mini-batch, rows appended to predictions.csv as append_row does.

    append_row writes the rows alone, with no header, so every call must return the same
    columns in the same order for the file to be readable. Returns that column list.
    """
    module.init()
    loaded = module._service
    columns: list[str] | None = None
    for start in range(0, len(files), mini_batch_size):
        result = module.run([str(p) for p in files[start:start + mini_batch_size]])
        assert isinstance(result, pd.DataFrame)
        assert module._service is loaded  # run() reuses what init() loaded
        if columns is None:
            columns = list(result.columns)
        assert list(result.columns) == columns, f"mini-batch at file {start} changed the column order"
        result.to_csv(predictions, mode="a", header=False, index=False)
    assert columns is not None
    return columns


def _pipeline_output(module, files: list[Path], folder: Path) -> pd.DataFrame:
    from score import ModelService

    service = ModelService.from_model_dir(Path(module.os.environ["AZUREML_MODEL_DIR"]))
    frames = []
    for path in files:
        out = folder / f"predictions_{path.stem.rsplit('_', 1)[-1]}.csv"
        module.score_file(path, out, service)
        frames.append(pd.read_csv(out))
    return pd.concat(frames, ignore_index=True)


def test_spec_uses_azures_default_mini_batch_size():
    assert SPEC["mini_batch_size"] == 10 and SPEC["output_action"] == "append_row"
    assert SPEC["code_configuration"]["scoring_script"] == "batch_score.py"


@pytest.mark.parametrize("mini_batch_size", [SPEC["mini_batch_size"], 3, 1])
def test_appended_rows_equal_the_pipelines_output(batch_score, raw_files, service, tmp_path, mini_batch_size):
    predictions = tmp_path / SPEC["output_file_name"]
    columns = _drive(batch_score, raw_files, mini_batch_size, predictions)
    appended = pd.read_csv(predictions, header=None, names=columns)
    expected = _pipeline_output(batch_score, raw_files, tmp_path)
    assert len(appended) == sum(ROW_COUNTS)
    # Same rows, same order, same scores; features compared by name (one file's columns differ in order).
    for column in ("prediction", "model_version"):
        assert appended[column].tolist() == expected[column].tolist()
    np.testing.assert_array_equal(appended["score"].to_numpy(), expected["score"].to_numpy())
    np.testing.assert_array_equal(appended[service.features].to_numpy(), expected[service.features].to_numpy())
    assert set(appended["model_version"]) == {service.version}


def test_scores_match_model_service_directly(batch_score, raw_files, service, tmp_path):
    predictions = tmp_path / "predictions.csv"
    columns = _drive(batch_score, raw_files[:2], SPEC["mini_batch_size"], predictions)
    appended = pd.read_csv(predictions, header=None, names=columns)
    labels, probabilities = service.predict(appended[service.features].to_numpy(dtype=np.float64))
    assert appended["prediction"].tolist() == labels.tolist()
    np.testing.assert_allclose(appended["score"].to_numpy(), probabilities, rtol=1e-12)


def test_a_bad_file_fails_its_mini_batch_with_a_clear_message(batch_score, raw_files, service, tmp_path):
    bad = tmp_path / "new_data_20261130.csv"
    frame = pd.read_csv(raw_files[0])
    frame[service.features[2]] = frame[service.features[2]].astype(object)
    frame.loc[4, service.features[2]] = "n/a"
    frame.to_csv(bad, index=False)
    batch_score.init()
    with pytest.raises(batch_score.BatchError) as caught:
        batch_score.run([str(raw_files[1]), str(bad)])
    message = str(caught.value)
    assert str(bad) in message and service.features[2] in message and "n/a" in message
    # The worker keeps its model: the next mini-batch scores.
    assert len(batch_score.run([str(raw_files[2])])) == ROW_COUNTS[2]
