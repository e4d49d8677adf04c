"""One place for the project's paths and names.

Every default hangs off the folder this file lives in, and each can be overridden by an
environment variable (and, in the scripts, by a flag). Nothing here touches the disk.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _path(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


# Where each zone lives (environment overrides are read at call time, so tests can set them).
def registry_dir() -> Path:
    return _path("LOCAL_REGISTRY_DIR", ROOT / "local_registry")


def artifacts_dir() -> Path:
    return _path("ARTIFACTS_DIR", ROOT / "artifacts")


def raw_dir() -> Path:
    return _path("RAW_DIR", ROOT / "raw")


def curated_dir() -> Path:
    return _path("CURATED_DIR", ROOT / "curated")


def logs_dir() -> Path:
    return _path("LOGS_DIR", ROOT / "logs")


def reports_dir() -> Path:
    return _path("REPORTS_DIR", ROOT / "reports")


def data_csv() -> Path:
    return _path("TRAINING_DATA", ROOT / "day1_breast_cancer.csv")


MODEL_NAME = "risk-classifier"
TARGET = "target"
MLFLOW_EXPERIMENT = "risk-classifier"


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else MLflow's own default store (mlflow.db) at the root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default, unless there is none or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)
