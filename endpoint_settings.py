"""The online endpoint's settings: one typed object, read from the environment once per process.

    SCORING_API_KEY         when set, every route but /health and /ready needs `Authorization: Bearer <key>`
    MODEL_VERSION           latest (follow new versions), or a pinned version: 2 or v002
    SCORING_MAX_RECORDS     most records per request (default 10000); more gets 413
    SCORING_RELOAD_SECONDS  how often the registry is polled for a new version (default 1)
    LOCAL_REGISTRY_DIR      the registry folder (default ./local_registry)
    SCORING_COLLECT_DATA    1/true: the plain endpoint collects its inputs and outputs (collector.py)
    SCORING_ENDPOINT        an endpoint YAML (azureml/online/endpoint.yml): serve its deployments and traffic

The CLI starts uvicorn workers that import the app afresh: it hands its flags over as these same
environment variables (`EndpointSettings.to_env`), and each worker reads them back here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import settings

DEFAULT_MAX_RECORDS = 10_000
DEFAULT_RELOAD_SECONDS = 1.0
ENV_API_KEY = "SCORING_API_KEY"
ENV_MODEL_VERSION = "MODEL_VERSION"  # the same variable score.init() reads
ENV_MAX_RECORDS = "SCORING_MAX_RECORDS"
ENV_RELOAD_SECONDS = "SCORING_RELOAD_SECONDS"
ENV_REGISTRY_DIR = "LOCAL_REGISTRY_DIR"
ENV_COLLECT_DATA = "SCORING_COLLECT_DATA"
ENV_ENDPOINT = "SCORING_ENDPOINT"

# What a bad value is told, by environment name (pydantic's own wording names no variable).
_EXPECTED = {ENV_MAX_RECORDS: "a whole number, at least 1", ENV_RELOAD_SECONDS: "a positive number of seconds"}


class EndpointSettings(BaseSettings):
    """Every setting of the endpoint, by its environment name; empty variables count as unset."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, populate_by_name=True,
                                      extra="ignore", frozen=True)

    api_key: SecretStr | None = Field(default=None, alias=ENV_API_KEY)
    model_version: str = Field(default="latest", alias=ENV_MODEL_VERSION)
    max_records: int = Field(default=DEFAULT_MAX_RECORDS, ge=1, alias=ENV_MAX_RECORDS)
    reload_seconds: float = Field(default=DEFAULT_RELOAD_SECONDS, gt=0, alias=ENV_RELOAD_SECONDS)
    registry_dir: Path = Field(default_factory=settings.registry_dir, alias=ENV_REGISTRY_DIR)
    collect_data: bool = Field(default=False, alias=ENV_COLLECT_DATA)
    endpoint: Path | None = Field(default=None, alias=ENV_ENDPOINT)

    @field_validator("registry_dir", "endpoint")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables a new worker process reads them from."""
        env = {ENV_MODEL_VERSION: self.model_version, ENV_MAX_RECORDS: str(self.max_records),
               ENV_RELOAD_SECONDS: str(self.reload_seconds), ENV_REGISTRY_DIR: str(self.registry_dir),
               ENV_COLLECT_DATA: "true" if self.collect_data else "false"}
        if self.api_key is not None:
            env[ENV_API_KEY] = self.api_key.get_secret_value()
        if self.endpoint is not None:
            env[ENV_ENDPOINT] = str(self.endpoint)
        return env


def load(**overrides: Any) -> EndpointSettings:
    """The settings from the environment, with the given fields (those not None) taking precedence.

    A bad value raises RuntimeError naming the variable and the value (never the API key).
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return EndpointSettings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        field = EndpointSettings.model_fields.get(name)
        env_name = field.alias if field is not None and field.alias else name
        if env_name == ENV_API_KEY:
            raise RuntimeError(f"{ENV_API_KEY} is not valid: {error['msg']}") from None
        expected = _EXPECTED.get(env_name, "valid")
        raise RuntimeError(f"{env_name} must be {expected}, got {error.get('input')!r}") from None
