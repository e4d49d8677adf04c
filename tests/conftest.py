"""Shared fixtures: every path points under a temporary folder, never into the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts.azurite import free_port, running_azurite

ROOT = Path(__file__).resolve().parents[1]  # the repo is on sys.path through pytest.ini's `pythonpath`

# Every zone under one temporary folder for the whole session, so that nothing a test runs
# (in-process or as a subprocess) can write into the repo's own folders.
_SESSION_TMP = None


def pytest_configure(config):
    global _SESSION_TMP
    import tempfile

    _SESSION_TMP = Path(tempfile.mkdtemp(prefix="risk-tests-"))
    defaults = {
        "LOCAL_REGISTRY_DIR": "registry-default",
        "ARTIFACTS_DIR": "artifacts-default",
        "RAW_DIR": "raw-default",
        "CURATED_DIR": "curated-default",
        "LOGS_DIR": "logs-default",
        "REPORTS_DIR": "reports-default",
        "DATA_COLLECTOR_DIR": "collected-default",
        "TRAINING_DATA": "day1_breast_cancer.csv",
    }
    for key, name in defaults.items():
        os.environ[key] = str(_SESSION_TMP / name)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_TMP / 'mlflow.db'}"
    os.environ.pop("SCORING_API_KEY", None)
    os.environ.pop("AZUREML_MODEL_DIR", None)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


def pytest_unconfigure(config):
    import shutil

    if _SESSION_TMP is not None:
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)


def run_script(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 180,
               input: str | None = None) -> subprocess.CompletedProcess:
    """Run one of the project's scripts with the test environment; returns the finished process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd or ROOT, env=full_env, capture_output=True, text=True,
        timeout=timeout, input=input,
    )


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               detail: Callable[[], str] | None = None, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned); past the deadline, fail naming `what`.

    `detail` adds what helps at that moment (a server's log, say) to the failure. The predicate
    may itself raise to stop early (a server that exited). Tests never `sleep` to wait.
    """
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            extra = f":\n{detail()}" if detail else ""
            raise TimeoutError(f"waited {timeout:g} s for {what}{extra}")
        time.sleep(interval)
    return result


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a server the tests started, by its own PID: SIGTERM, then SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory) -> Path:
    """A registry with two versions (v001, v002), trained without MLflow for speed."""
    import train

    root = tmp_path_factory.mktemp("registry")
    artifacts = tmp_path_factory.mktemp("artifacts")
    train.train(registry_dir=root, artifacts_dir=artifacts, use_mlflow=False)
    train.train(registry_dir=root, artifacts_dir=artifacts, random_state=7, use_mlflow=False)
    return root


@pytest.fixture()
def zones(tmp_path, monkeypatch, trained_registry):
    """Raw, curated and logs under tmp_path, the trained registry, local storage."""
    paths = {"RAW_DIR": tmp_path / "raw", "CURATED_DIR": tmp_path / "curated", "LOGS_DIR": tmp_path / "logs"}
    for key, path in paths.items():
        monkeypatch.setenv(key, str(path))
    monkeypatch.setenv("LOCAL_REGISTRY_DIR", str(trained_registry))
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    env = {key: str(path) for key, path in paths.items()} | {"LOCAL_REGISTRY_DIR": str(trained_registry)}
    return {key.split("_")[0].lower(): path for key, path in paths.items()} | {"env": env}


@pytest.fixture(scope="session")
def service(trained_registry):
    """The latest version of `trained_registry`, loaded."""
    from score import ModelService

    return ModelService.from_registry(trained_registry)


@pytest.fixture(scope="session")
def sample_records(service) -> list[dict]:
    from score import sample_records as sample

    return sample(20, data_path=Path("/nonexistent"), features=service.features)


@pytest.fixture()
def read_only_dir(tmp_path):
    """An empty folder nobody can write into: a read-only tmpfs when running as root (root
    ignores file modes), else a folder with mode 0555."""
    root = tmp_path / "read-only"
    root.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(root)], check=True)
        yield root
        subprocess.run(["umount", str(root)], check=True)
    else:
        os.chmod(root, 0o555)
        yield root
        os.chmod(root, 0o755)


# ----- Azurite (blob storage emulator) from the npm package --------------------------------------
@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A real Azurite blob service on a free loopback port (in memory); yields its connection string.

    Installed by `make install` (npm ci); the tests that use it never skip.
    """
    workdir = tmp_path_factory.mktemp("azurite")
    with running_azurite(workdir, in_memory=True, log=workdir / "azurite.log") as connection:
        yield connection


@pytest.fixture()
def blob_connection(azurite) -> str:
    """The Azurite connection string, with the `raw` and `curated` containers removed first."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    for container in service.list_containers():
        service.delete_container(container.name)
    return azurite


def register_copy(root: Path, source: int = 1) -> int:
    """Register a new version holding an existing version's files (fast: no training)."""
    from registry import Registry

    reg = Registry(root)
    src = reg.get(source)

    def write(staging: Path) -> None:
        for name in ("model.joblib", "metrics.json"):
            shutil.copy(src.path / name, staging / name)

    metadata = {k: v for k, v in src.metadata.items() if k not in {"version", "registered_at", "model_sha256"}}
    return reg.register(write, metadata).version


def register_tampered(root: Path, source: int = 1) -> int:
    """A complete version folder whose model.joblib does not match its recorded sha256."""
    from registry import METADATA_FILE, Registry, version_name

    reg = Registry(root)
    number = max(reg.versions()) + 1
    staging = root / ".staging-tampered"
    shutil.copytree(reg.get(source).path, staging)
    meta = json.loads((staging / METADATA_FILE).read_text())
    meta["version"] = number
    (staging / METADATA_FILE).write_text(json.dumps(meta))
    with open(staging / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    os.rename(staging, root / version_name(number))
    return number


class ApiServer:
    """`python app_score_api.py` on a free loopback port, polled until ready, stopped by its PID."""

    def __init__(self, registry: Path, log_path: Path, env: dict[str, str], *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.registry = registry
        self.log_path = log_path
        with open(log_path, "w") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "app_score_api.py", "--host", "127.0.0.1", "--port", str(self.port),
                 "--registry-dir", str(registry), *args],
                cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=log_file, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, path: str = "/ready", timeout: float = 60) -> None:
        import httpx

        def answers_200() -> bool:
            assert self.proc.poll() is None, f"server exited early:\n{self.log_path.read_text()}"
            try:
                return httpx.get(f"{self.url}{path}", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers_200, timeout, f"{self.url}{path} to answer 200", detail=self.log_path.read_text)

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)


@pytest.fixture(scope="module")
def azureml_model_dir(trained_registry, service, tmp_path_factory) -> Path:
    """$AZUREML_MODEL_DIR as Azure lays it out: the registered folder under its own name."""
    from registry import version_name

    number = int(service.version.lstrip("v"))
    base = tmp_path_factory.mktemp("azureml-model-dir")
    shutil.copytree(trained_registry / version_name(number), base / version_name(number))
    return base


# ----- tables with categories, gaps and string targets (issue: real credit data) -----------------
CREDIT_CSV = ROOT / "data" / "german_credit.csv"


def make_gappy_table(path: Path, rows: int = 300, seed: int = 0) -> Path:
    """A small table with gaps and a string target: a nullable number, two categories (one
    nullable), a numeric-looking code column and `status` ("late" / "on_time")."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, rows).round(1)
    region = rng.choice(["north", "south", "east", "west"], rows, p=[0.4, 0.3, 0.2, 0.1])
    channel = rng.choice(["web", "branch", "phone"], rows).astype(object)
    grade = rng.choice([1, 2, 3], rows)
    logit = -0.06 * (income - 50) + 1.5 * (region == "west") + 1.0 * (grade == 3) - 0.7
    status = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "late", "on_time")
    frame = pd.DataFrame({"income": income, "region": region, "channel": channel, "grade": grade, "status": status})
    frame.loc[rng.random(rows) < 0.1, "income"] = np.nan
    frame.loc[rng.random(rows) < 0.1, "channel"] = None
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def credit_registry(tmp_path_factory) -> Path:
    """A registry with one version trained on data/german_credit.csv (score: probability of bad)."""
    import train

    root = tmp_path_factory.mktemp("credit-registry")
    train.train(data=CREDIT_CSV, target="creditability", positive_class="bad", registry_dir=root,
                artifacts_dir=tmp_path_factory.mktemp("credit-artifacts"), use_mlflow=False)
    return root


@pytest.fixture(scope="session")
def gappy_registry(tmp_path_factory) -> Path:
    """A registry with one version trained on make_gappy_table (grade forced categorical)."""
    import train

    base = tmp_path_factory.mktemp("gappy")
    train.train(data=make_gappy_table(base / "gappy.csv"), target="status", positive_class="late",
                categorical=["grade"], registry_dir=base / "registry", artifacts_dir=base / "artifacts",
                use_mlflow=False)
    return base / "registry"
