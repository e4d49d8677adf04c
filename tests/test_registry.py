"""registry.py: versions, atomic and concurrent registration, checksums, the CLI."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

import registry
from conftest import run_script
from registry import Registry, RegistryError


def _register(root: Path, payload: bytes = b"model") -> registry.ModelVersion:
    def write(staging: Path) -> None:
        (staging / "model.joblib").write_bytes(payload)
        (staging / "metrics.json").write_text('{"accuracy": 1.0, "roc_auc": 1.0}')

    return Registry(root).register(write, {"features": ["a"]})


def _register_in_process(root: str) -> int:
    return _register(Path(root), payload=str(multiprocessing.current_process().pid).encode()).version


def test_versions_are_numbered_and_complete(tmp_path):
    first, second = _register(tmp_path), _register(tmp_path)
    assert (first.version, second.version) == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_v001", "model_v002"]
    meta = json.loads((tmp_path / "model_v002" / "metadata.json").read_text())
    assert meta["version"] == 2 and meta["model_name"] == "risk-classifier"
    assert meta["model_sha256"] == registry.sha256_file(tmp_path / "model_v002" / "model.joblib")
    assert meta["registered_at"].endswith("+00:00")


def test_concurrent_registrations_get_distinct_versions(tmp_path):
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        versions = pool.map(_register_in_process, [str(tmp_path)] * 8)
    assert sorted(versions) == list(range(1, 9))
    assert Registry(tmp_path).versions() == list(range(1, 9))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_half_written_version_is_never_latest(tmp_path):
    _register(tmp_path)
    broken = tmp_path / "model_v002"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"partial")
    (tmp_path / ".staging-crashed").mkdir()
    reg = Registry(tmp_path)
    assert reg.versions() == [1]
    assert reg.resolve("latest") == 1
    # The next registration skips the broken number instead of overwriting it.
    assert _register(tmp_path).version == 3


def test_failed_write_leaves_nothing(tmp_path):
    def write(staging: Path) -> None:
        (staging / "model.joblib").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        Registry(tmp_path).register(write, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spec, expected", [("latest", 2), (None, 2), ("v001", 1), ("2", 2), (1, 1), ("model_v002", 2)])
def test_resolve_specs(tmp_path, spec, expected):
    _register(tmp_path), _register(tmp_path)
    assert Registry(tmp_path).resolve(spec) == expected


@pytest.mark.parametrize("spec", ["../x", "/etc/passwd", "v1a", "", "0", "latest2", "v-1"])
def test_bad_version_specs_are_rejected(tmp_path, spec):
    _register(tmp_path)
    with pytest.raises(RegistryError, match="invalid model version"):
        Registry(tmp_path).resolve(spec)


def test_unknown_version_lists_available(tmp_path):
    _register(tmp_path)
    with pytest.raises(RegistryError, match=r"v007 not found .*available: v001"):
        Registry(tmp_path).resolve("7")


def test_empty_or_missing_registry_says_to_train(tmp_path):
    for root in (tmp_path, tmp_path / "missing"):
        with pytest.raises(RegistryError, match="no model registered .*run python train.py"):
            Registry(root).resolve()


def test_tampered_model_is_refused(trained_registry, tmp_path):
    copy = tmp_path / "reg"
    shutil.copytree(trained_registry, copy)
    with open(copy / "model_v002" / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(RegistryError, match="v002: .*has been modified .*refusing to load"):
        Registry(copy).load("latest")
    model, entry = Registry(copy).load("v001")  # untouched versions still load
    assert entry.version == 1 and hasattr(model, "predict_proba")


def test_cli_list_and_show(trained_registry):
    listing = run_script("registry.py", "--registry-dir", str(trained_registry), "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:4] == ["version", "registered_at", "(UTC)", "accuracy"]
    assert [line.split()[0] for line in lines[1:]] == ["v001", "v002"]
    shown = run_script("registry.py", "--registry-dir", str(trained_registry), "show", "v001")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["metadata"]["version"] == 1 and 0.9 < data["metrics"]["accuracy"] <= 1


def test_cli_empty_registry_message(tmp_path):
    result = run_script("registry.py", "--registry-dir", str(tmp_path), "list")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no model registered in {tmp_path}: run python train.py"
    assert "Traceback" not in result.stderr


def test_cli_takes_registry_dir_before_or_after_the_subcommand(trained_registry, tmp_path, capsys):
    import registry

    before = run_script("registry.py", "--registry-dir", str(trained_registry), "list")
    after = run_script("registry.py", "list", "--registry-dir", str(trained_registry))
    assert (after.returncode, after.stderr, after.stdout) == (0, "", before.stdout)
    shown = run_script("registry.py", "show", "--registry-dir", str(trained_registry), "v002")
    assert shown.returncode == 0 and json.loads(shown.stdout)["path"] == str(trained_registry / "model_v002")
    assert registry.build_parser().parse_args(["--registry-dir", str(tmp_path), "list"]).registry_dir == tmp_path
    assert registry.build_parser().parse_args(["list"]).registry_dir is None
