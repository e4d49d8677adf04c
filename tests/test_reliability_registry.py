"""Reliability of the registry: training killed mid-registration, tampered models, names.

Faults are real: a training process is SIGKILLed at chosen points of registration (while
model.joblib is half written, after metadata.json is written but before the rename) and at
random moments of a whole `train.py` run. After each kill, "latest" still names a complete
version that loads, and the next training registers the next number normally.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import reliability_figures as figures
from conftest import ROOT, run_script, wait_until
from registry import Registry, RegistryError
from score import ModelService

# Runs train.train() in a child process with one step of registration made to stop and wait,
# so the test can SIGKILL the child at exactly that step. The child touches READY when it is there.
_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import joblib, registry, train

    ready, point = Path({ready!r}), {point!r}

    def hold():
        ready.touch()
        while True:
            time.sleep(60)

    if point == "writing model.joblib":
        real_dump = joblib.dump
        def dump(value, filename, *args, **kwargs):
            # artifacts/ gets a file handle (an atomic write); the registry's staging folder a path.
            if isinstance(filename, (str, os.PathLike)) and Path(filename).parent.name.startswith(".staging"):
                real_dump(value, str(filename) + ".full")
                data = Path(str(filename) + ".full").read_bytes()
                os.unlink(str(filename) + ".full")
                with open(filename, "wb") as handle:  # half of the file, flushed to disk
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    os.fsync(handle.fileno())
                hold()
            return real_dump(value, filename, *args, **kwargs)
        joblib.dump = dump
    elif point == "before the rename":
        real_rename = os.rename
        def rename(src, dst, *args, **kwargs):
            if Path(src).name.startswith(".staging"):
                hold()
            return real_rename(src, dst, *args, **kwargs)
        os.rename = rename

    train.train(registry_dir=Path({registry_dir!r}), artifacts_dir=Path({artifacts!r}), use_mlflow=False)
    """
)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    def reached() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"child exited with {proc.returncode}: {proc.stderr.read()}")
        return path.exists()

    wait_until(reached, timeout, f"the child to reach the kill point ({path.name})", interval=0.02)


def _train(root: Path, artifacts: Path, seed: int = 42):
    import train

    return train.train(registry_dir=root, artifacts_dir=artifacts, random_state=seed, use_mlflow=False)


def _lost(root: Path, expected_versions: list[int]) -> int:
    """How many versions registered before a fault no longer load."""
    lost = 0
    for number in expected_versions:
        try:
            ModelService.from_registry(root, number)
        except RegistryError:
            lost += 1
    return lost


def _assert_intact(root: Path, expected_versions: list[int]) -> int:
    """Every version registered before the fault is still listed and loads; latest is the newest."""
    lost = _lost(root, expected_versions)
    assert lost == 0
    reg = Registry(root)
    assert reg.versions() == expected_versions
    assert reg.resolve("latest") == expected_versions[-1]
    return lost


@pytest.fixture()
def one_version(tmp_path):
    root, artifacts = tmp_path / "registry", tmp_path / "artifacts"
    _train(root, artifacts)
    return root, artifacts


@pytest.mark.parametrize("point", ["writing model.joblib", "before the rename"])
def test_training_killed_during_registration_leaves_latest_intact(one_version, tmp_path, point):
    root, artifacts = one_version
    ready = tmp_path / "ready"
    code = _CHILD.format(ready=str(ready), point=point, registry_dir=str(root),
                         artifacts=str(artifacts))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, child)
        staging = [p for p in root.iterdir() if p.name.startswith(".staging")]
        assert len(staging) == 1, "the child should be part-way through a registration"
        if point == "before the rename":
            # Everything is written, metadata.json names v002: only the rename is missing.
            assert json.loads((staging[0] / "metadata.json").read_text())["version"] == 2
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    # The half-made version is invisible: latest is still v001 and it loads.
    figures.add("faults", injected=1, data_lost=_lost(root, [1]))
    figures.add("faults_by_kind", **{"training SIGKILLed during registration": 1})
    _assert_intact(root, [1])
    assert run_script("registry.py", "--registry-dir", str(root), "show", "latest").returncode == 0

    # The next training registers v002 normally and it is the one served.
    result = _train(root, artifacts, seed=7)
    assert result.version.version == 2
    _assert_intact(root, [1, 2])
    assert ModelService.from_registry(root).version == "v002"


def test_train_cli_killed_at_random_moments(one_version, tmp_path):
    """SIGKILL a whole `train.py` run at random moments; whatever it had done, the registry holds."""
    root, artifacts = one_version
    rounds = figures.count("RELIABILITY_TRAIN_KILLS", 3)
    rng = random.Random(int(os.environ.get("RELIABILITY_SEED", "7")))
    # How long a run takes here, so the kills land across the whole of it.
    start = time.monotonic()
    run = run_script("train.py", "--no-mlflow", "--registry-dir", str(root), "--artifacts-dir", str(artifacts))
    assert run.returncode == 0, run.stderr
    duration = time.monotonic() - start
    expected = [1, 2]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for _ in range(rounds):
        child = subprocess.Popen(
            [sys.executable, "train.py", "--no-mlflow", "--registry-dir", str(root), "--artifacts-dir", str(artifacts)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            child.wait(timeout=rng.uniform(0.3, 1.0) * duration)
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        finished = Registry(root).versions()
        if len(finished) > len(expected):  # the run got to the end before the kill
            expected.append(finished[-1])
        figures.add("faults", injected=1, data_lost=_lost(root, expected))
        figures.add("faults_by_kind", **{"train.py SIGKILLed at a random moment": 1})
        _assert_intact(root, expected)
    result = _train(root, artifacts, seed=11)
    assert result.version.version == max(expected) + 1  # a killed run never took a number
    _assert_intact(root, expected + [result.version.version])


# ----- tampering ---------------------------------------------------------------------------------
class _Payload:
    """A pickle that creates a file when it is loaded: what a malicious model.joblib does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tamper(model: Path, how: str, marker: Path) -> None:
    data = model.read_bytes()
    if how == "one byte appended":
        model.write_bytes(data + b"\0")
    elif how == "one byte flipped":
        model.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif how == "truncated":
        model.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        model.write_bytes(b"")
    elif how == "replaced by code":
        with open(model, "wb") as handle:
            pickle.dump(_Payload(marker), handle)
    else:
        raise AssertionError(how)


TAMPERINGS = ["one byte appended", "one byte flipped", "truncated", "empty", "replaced by code"]


def test_a_joblib_file_runs_code_when_loaded(tmp_path):
    """Why the checksum matters: loading a model file is running a program."""
    import joblib

    marker, path = tmp_path / "code-ran", tmp_path / "model.joblib"
    with open(path, "wb") as handle:
        pickle.dump(_Payload(marker), handle)
    joblib.load(path)
    assert marker.exists()


@pytest.mark.parametrize("how", TAMPERINGS)
def test_tampered_newest_model_is_refused(trained_registry, tmp_path, how):
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    marker = tmp_path / "code-ran"
    _tamper(root / "model_v002" / "model.joblib", how, marker)

    with pytest.raises(RegistryError, match=r"v002: .*model\.joblib has been modified .*refusing to load it"):
        ModelService.from_registry(root)
    assert not marker.exists(), "the tampered file was unpickled"

    figures.add("faults", injected=1, data_lost=_lost(root, [1]))
    figures.add("faults_by_kind", **{"newest model.joblib tampered": 1})
    if how not in ("truncated", "replaced by code"):
        return
    # The scorer's CLI: one clear line, exit 1, no traceback; the older version still scores.
    run = run_script("score.py", "--registry-dir", str(root), "--sample", "1")
    assert run.returncode == 1
    assert run.stderr.startswith("error: v002: ") and "refusing to load it" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert not marker.exists()
    ok = run_script("score.py", "--registry-dir", str(root), "--model-version", "1", "--sample", "1")
    assert ok.returncode == 0 and json.loads(ok.stdout)["model_version"] == "v001"


@pytest.mark.parametrize("change", ["sha removed", "sha emptied", "metadata not JSON"])
def test_metadata_without_a_valid_checksum_is_never_loaded(trained_registry, tmp_path, change):
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    meta_path = root / "model_v002" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    if change == "sha removed":
        del meta["model_sha256"]
        meta_path.write_text(json.dumps(meta))
    elif change == "sha emptied":
        meta["model_sha256"] = ""
        meta_path.write_text(json.dumps(meta))
    else:
        meta_path.write_text("{not json")
    if change == "sha emptied":
        # Still listed, but never unpickled without a checksum to compare against.
        with pytest.raises(RegistryError, match="v002: metadata.json has no model_sha256; refusing to load"):
            ModelService.from_registry(root)
    else:
        # No longer a complete version: latest falls back to v001, which verifies.
        assert Registry(root).versions() == [1]
        assert ModelService.from_registry(root).version == "v001"
        with pytest.raises(RegistryError, match="not found"):
            ModelService.from_registry(root, 2)


# ----- only files inside the registry are unpickled ----------------------------------------------
def test_a_version_folder_linked_from_outside_is_refused(trained_registry, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    outside = tmp_path / "elsewhere" / "model_v003"
    shutil.copytree(root / "model_v002", outside)
    meta = json.loads((outside / "metadata.json").read_text())
    meta["version"] = 3
    (outside / "metadata.json").write_text(json.dumps(meta))
    (root / "model_v003").symlink_to(outside, target_is_directory=True)
    assert Registry(root).versions() == [1, 2]
    assert ModelService.from_registry(root).version == "v002"


def test_a_model_file_linked_from_outside_is_refused(trained_registry, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    outside = tmp_path / "outside.joblib"
    shutil.copy(root / "model_v002" / "model.joblib", outside)
    (root / "model_v002" / "model.joblib").unlink()
    (root / "model_v002" / "model.joblib").symlink_to(outside)
    with pytest.raises(RegistryError, match="outside the registry"):
        ModelService.from_registry(root, 2)


# ----- version names cannot reach outside the registry -------------------------------------------
BAD_VERSIONS = ["../model_v001", "../../etc/passwd", "/etc/passwd", "v1/../2", "model_v001/", "v001\x00",
                "~", ".", "..", "v\u0661", "\uff12", "v 2", "2 3", "v0002x", "-1", "1e3", "0x2", "latest/../1"]


@pytest.mark.parametrize("spec", BAD_VERSIONS)
def test_version_names_that_could_escape_are_rejected(trained_registry, spec):
    with pytest.raises(RegistryError, match="invalid model version"):
        Registry(trained_registry).resolve(spec)


def test_cli_rejects_escaping_version_names(trained_registry):
    for args in (["registry.py", "--registry-dir", str(trained_registry), "show", "../model_v001"],
                 ["score.py", "--registry-dir", str(trained_registry), "--model-version", "/etc/passwd", "--sample", "1"]):
        run = run_script(*args)
        assert run.returncode == 1, run.stderr
        assert run.stderr.startswith("error: invalid model version") and "Traceback" not in run.stderr
        assert run.stdout == ""


def test_odd_folder_names_are_not_versions(trained_registry, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(trained_registry, root)
    shutil.copytree(root / "model_v002", root / "model_v\u0660\u0660\u0663")  # Arabic-Indic digits
    shutil.copytree(root / "model_v002", root / "model_v003.bak")
    assert Registry(root).versions() == [1, 2]
