"""The azureml/ CLI v2 specs parse with azure-ai-ml's own loaders and name files that exist.

Nothing here talks to Azure: the loaders validate each YAML against the SDK's schemas
offline (unknown fields and bad enum values are errors), and the paths each spec names
(code folder, scoring script, conda file, model folder) are checked on disk.
"""

from __future__ import annotations

import re
import shlex
import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_script
from registry import REQUIRED_FILES, version_name

import azure.ai.ml as azml  # noqa: E402
from azure.ai.ml.entities._load_functions import load_schedule  # not among azure.ai.ml's top-level names

SPECS = ROOT / "azureml"
DEPLOYING = (ROOT / "docs" / "deploying-to-azure.md").read_text(encoding="utf-8")  # the az ml commands

# $schema file name -> the azure-ai-ml loader that accepts it
LOADERS = {
    "environment.schema.json": azml.load_environment,
    "commandJob.schema.json": azml.load_job,
    "model.schema.json": azml.load_model,
    "managedOnlineEndpoint.schema.json": azml.load_online_endpoint,
    "managedOnlineDeployment.schema.json": azml.load_online_deployment,
    "batchEndpoint.schema.json": azml.load_batch_endpoint,
    "batchDeployment.schema.json": azml.load_batch_deployment,
    "Schedule.json": load_schedule,
    "sparkJob.schema.json": azml.load_job,
}
SCHEDULE_SCHEMA = "http://azureml/sdk-2-0/Schedule.json"
SPEC_FILES = sorted(p for p in SPECS.rglob("*.yml") if not p.name.endswith("-conda.yml"))


def _load(path: Path):
    schema = yaml.safe_load(path.read_text(encoding="utf-8"))["$schema"].rsplit("/", 1)[-1]
    with warnings.catch_warnings():
        # load_batch_deployment returns the base BatchDeployment class and says so.
        warnings.simplefilter("ignore", UserWarning)
        return LOADERS[schema](path)


def _spec(relative: str):
    return _load(SPECS / relative)


def _resolve(spec_path: Path, relative: str) -> Path:
    return (spec_path.parent / relative).resolve()


def test_every_kind_of_spec_is_there():
    kinds = {yaml.safe_load(p.read_text())["$schema"].rsplit("/", 1)[-1] for p in SPEC_FILES}
    assert kinds == set(LOADERS)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(SPECS)))
def test_spec_parses_with_azure_ai_ml(path):
    entity = _load(path)
    assert entity is not None
    schema = yaml.safe_load(path.read_text())["$schema"]
    # Azure's monitor schedules name the SDK's own schema (as in azureml-examples' cli/monitoring).
    assert schema.startswith("https://azuremlschemas.azureedge.net/latest/") or schema == SCHEDULE_SCHEMA


def test_loaders_reject_unknown_fields_and_bad_values(tmp_path):
    """The parse test means something: the same loaders refuse a wrong spec."""
    from marshmallow.exceptions import ValidationError

    text = (SPECS / "online" / "endpoint.yml").read_text()
    (tmp_path / "unknown.yml").write_text(text + "bogus: 1\n")
    (tmp_path / "enum.yml").write_text(text.replace("auth_mode: key", "auth_mode: password"))
    for name in ("unknown.yml", "enum.yml"):
        with pytest.raises(ValidationError, match="auth_mode|bogus"):
            azml.load_online_endpoint(tmp_path / name)


# ----- environments ------------------------------------------------------------------
def test_environments_name_existing_conda_files():
    for path in sorted((SPECS / "environments").glob("*.yml")):
        if path.name.endswith("-conda.yml"):
            continue
        env = _load(path)
        conda = _resolve(path, yaml.safe_load(path.read_text())["conda_file"])
        assert conda.is_file(), conda
        assert env.conda_file == yaml.safe_load(conda.read_text())
        assert env.image.startswith("mcr.microsoft.com/azureml/")


def test_conda_files_match_the_pinned_requirements():
    run = run_script("scripts/azureml_conda.py", "--check")
    assert run.returncode == 0, run.stderr
    score = yaml.safe_load((SPECS / "environments" / "score-conda.yml").read_text())
    pins = score["dependencies"][-1]["pip"]
    assert "azureml-inference-server-http==1.5.1" in pins
    project_pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                    if "==" in line and not line.startswith("#")]
    for pin in pins:  # the model's libraries are the project's versions
        name = pin.split("==")[0]
        same = [p for p in project_pins if p.split("==")[0] == name]
        assert not same or same == [pin], (pin, same)


def test_conda_check_fails_on_a_stale_file(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("azureml_conda", ROOT / "scripts" / "azureml_conda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("requirements.txt", "requirements-azureml.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    assert sorted(module.write_all(tmp_path)) == sorted(module.TARGETS)
    assert module.stale_files(tmp_path) == []
    with open(tmp_path / "requirements-azureml.txt", "a") as handle:
        handle.write("requests==2.34.2\n")
    assert module.stale_files(tmp_path) == ["azureml/environments/score-conda.yml"]


# ----- training job ------------------------------------------------------------------
def test_training_job_runs_train_py_with_flags_it_accepts():
    import train

    path = SPECS / "train-job.yml"
    job = _load(path)
    code = _resolve(path, job.code)
    assert code == ROOT and (code / "train.py").is_file()
    raw = yaml.safe_load(path.read_text())
    references = re.findall(r"\$\{\{(inputs|outputs)\.(\w+)\}\}", raw["command"])
    assert references
    for kind, name in references:
        assert name in raw[kind], f"the command uses {kind}.{name}, which the job does not declare"
    command = re.sub(r"\$\{\{inputs\.(\w+)\}\}", lambda m: str(raw["inputs"][m.group(1)]), raw["command"])
    command = re.sub(r"\$\{\{outputs\.(\w+)\}\}", r"/mnt/outputs/\1", command)
    words = shlex.split(command)
    args = words[words.index("train.py") + 1:]
    parsed = train.build_parser().parse_args(args)
    assert parsed.registry_dir == Path("/mnt/outputs/registry")
    assert parsed.test_size == 0.2 and parsed.random_state == 42
    assert raw["environment"] == "azureml:risk-env@latest"


# ----- model registration ------------------------------------------------------------
def test_model_spec_names_a_local_registry_version_folder():
    path = SPECS / "model.yml"
    model = _load(path)
    assert model.type == "custom_model"
    assert Path(model.path) == ROOT / "local_registry" / version_name(1)


def test_model_folder_is_what_train_py_writes(trained_registry, tmp_path):
    """local_registry/ is generated (and git-ignored): lay the spec beside a trained registry."""
    from score import ModelService

    (tmp_path / "azureml").mkdir()
    shutil.copy(SPECS / "model.yml", tmp_path / "azureml" / "model.yml")
    shutil.copytree(trained_registry / version_name(1), tmp_path / "local_registry" / version_name(1))
    model = azml.load_model(tmp_path / "azureml" / "model.yml")
    folder = Path(model.path)
    assert folder.is_dir()
    assert all((folder / name).is_file() for name in REQUIRED_FILES)
    # Azure mounts the registered folder under its own name in AZUREML_MODEL_DIR.
    assert ModelService.from_model_dir(folder.parent).version == "v001"


# ----- online endpoint ---------------------------------------------------------------
def test_online_endpoint_uses_key_auth_and_takes_a_90_10_split():
    endpoint = _spec("online/endpoint.yml")
    assert endpoint.auth_mode == "key"
    split = azml.load_online_endpoint(SPECS / "online" / "endpoint.yml",
                                      params_override=[{"traffic": {"blue": 90, "green": 10}}])
    assert split.traffic == {"blue": 90, "green": 10}
    assert 'az ml online-endpoint update --name risk-endpoint --traffic "blue=90 green=10"' in DEPLOYING


@pytest.mark.parametrize("colour", ["blue", "green"])
def test_online_deployment_runs_score_py(colour):
    path = SPECS / "online" / f"{colour}-deployment.yml"
    deployment = _load(path)
    endpoint = _spec("online/endpoint.yml")
    assert deployment.name == colour
    assert deployment.endpoint_name == endpoint.name
    code = _resolve(path, deployment.code_configuration.code)
    assert code == ROOT
    assert deployment.scoring_script == "score.py" and (code / "score.py").is_file()
    # score.py imports these from the same code folder
    assert (code / "settings.py").is_file() and (code / "registry.py").is_file()
    assert deployment.environment == "risk-score-env@latest"
    assert deployment.model.startswith(_spec("model.yml").name + ":")
    assert deployment.request_settings.request_timeout_ms == 5000


def test_blue_and_green_serve_different_model_versions():
    blue, green = (_spec(f"online/{c}-deployment.yml") for c in ("blue", "green"))
    assert (blue.model, green.model) == ("risk-classifier:1", "risk-classifier:2")


# ----- batch endpoint ----------------------------------------------------------------
def test_batch_deployment_runs_batch_score_py_with_azure_defaults():
    path = SPECS / "batch" / "deployment.yml"
    deployment = _load(path)
    endpoint = _spec("batch/endpoint.yml")
    assert deployment.endpoint_name == endpoint.name
    code = _resolve(path, deployment.code_configuration.code)
    assert code == ROOT
    assert deployment.scoring_script == "batch_score.py" and (code / "batch_score.py").is_file()
    assert deployment.environment == "risk-env@latest"
    # Azure's names, at Azure's defaults
    assert deployment.mini_batch_size == 10
    assert deployment.max_concurrency_per_instance == 1
    assert deployment.error_threshold == -1
    assert (deployment.retry_settings.max_retries, deployment.retry_settings.timeout) == (3, 30)
    assert deployment.output_action == "append_row"
    assert deployment.output_file_name == "predictions.csv"
    assert deployment.logging_level == "info"


# ----- what Azure uploads and what the docs run ----------------------------------------
def test_code_snapshot_leaves_out_local_state():
    """Azure ML uploads the code folder minus what .gitignore (or .amlignore) lists."""
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for entry in (".venv-azureml/", "mlflow.db", "mlruns/", "local_registry/*", "raw/*"):
        assert entry in ignored, entry
    assert any(line.startswith(".venv") for line in ignored)


def test_readme_az_ml_commands_name_existing_specs():
    section = DEPLOYING.split("\n## Azure ML's inference server", 1)[0]
    files = re.findall(r"(?:-f|--file) (\S+\.yml)", section)
    assert files, "the Deploying to Azure ML section should run az ml with spec files"
    missing = [f for f in files if not (ROOT / f).is_file()]
    assert not missing, missing
    requests = re.findall(r"--request-file (\S+)", section)
    assert requests and all((ROOT / f).is_file() for f in requests), requests
    named = {str(p.relative_to(ROOT)) for p in SPEC_FILES}
    assert named <= set(files), f"specs docs/deploying-to-azure.md never uses: {sorted(named - set(files))}"
