"""One place for the project's paths and names.

Every default hangs off the folder this file lives in, and each can be overridden by an
environment variable (and, in the scripts, by a flag). Nothing here touches the disk.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parent


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used; the message names both."""


# ----- environment variables (one parser family for every module) -------------------------
# Each reads `name` from `environ` (default os.environ) at call time; unset or empty gives the
# default; a bad value is a SettingsError such as "DRIFT_ALPHA must be a number, got 'x'".
def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's text, or `default` when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(name)
    return value if value else default


def env_int(name: str, default: int | None = None, *, minimum: int | None = None,
            environ: Mapping[str, str] | None = None) -> int | None:
    """The variable as a whole number (at least `minimum` when given)."""
    return _env_number(name, default, int, "a whole number", minimum=minimum, environ=environ)


def env_float(name: str, default: float | None = None, *, minimum: float | None = None, positive: bool = False,
              environ: Mapping[str, str] | None = None) -> float | None:
    """The variable as a number (above 0 with `positive`, at least `minimum` when given)."""
    return _env_number(name, default, float, "a number", minimum=minimum, positive=positive, environ=environ)


def _env_number(name: str, default, convert, kind: str, *, minimum=None, positive: bool = False,
                environ: Mapping[str, str] | None = None):
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    try:
        value = convert(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None
    if positive and not value > 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    if minimum is not None and not value >= minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_bool(name: str, default: bool = False, *, environ: Mapping[str, str] | None = None) -> bool:
    """The variable as a yes/no switch: 1/true/yes/on or 0/false/no/off, any case."""
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{name} must be one of {'/'.join(_TRUE)} or {'/'.join(_FALSE)}, got {raw!r}")


def _path(env: str, default: Path) -> Path:
    value = env_str(env)
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


def local_endpoints_dir() -> Path:
    """Where endpoint.py records each local endpoint's traffic (one JSON file per endpoint)."""
    return _path("LOCAL_ENDPOINTS_DIR", ROOT / "local_endpoints")


def collected_dir() -> Path:
    """The data collector's root (the online endpoint's collected inputs and outputs)."""
    return _path("DATA_COLLECTOR_DIR", ROOT / "collected")


def data_csv() -> Path:
    return _path("TRAINING_DATA", ROOT / "day1_breast_cancer.csv")


MODEL_NAME = "risk-classifier"
TARGET = "target"
MLFLOW_EXPERIMENT = "risk-classifier"


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else MLflow's own default store (mlflow.db) at the root."""
    return env_str("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default, unless there is none or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)
