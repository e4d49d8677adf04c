"""training_data.py: the training CSV, else scikit-learn's copy, returned as read."""

from __future__ import annotations

import pytest

import training_data


def test_a_given_csv_is_read_as_is(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("colour,size,target\nred,1,0\nblue,2,1\n")
    frame = training_data.load_table(path)
    assert frame.columns.tolist() == ["colour", "size", "target"] and frame["colour"].tolist() == ["red", "blue"]
    assert frame.attrs["source"] == str(path)
    assert training_data.load_table(path, nrows=1).shape == (1, 3)


def test_missing_files(tmp_path, monkeypatch):
    missing = tmp_path / "nope.csv"
    with pytest.raises(training_data.TrainingDataError, match=f"^source data {missing} does not exist$"):
        training_data.load_table(missing, what="source data")
    assert training_data.load_table(missing, missing_ok=True).attrs["source"] == training_data.SKLEARN_SOURCE
    monkeypatch.setenv("TRAINING_DATA", str(missing))  # the default file absent: scikit-learn's copy
    frame = training_data.load_table(nrows=3)
    assert frame.shape == (3, 31) and frame.attrs["source"] == training_data.SKLEARN_SOURCE


def test_an_unreadable_csv_is_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"")
    with pytest.raises(training_data.TrainingDataError, match=f"^cannot read {path}: "):
        training_data.load_table(path)
