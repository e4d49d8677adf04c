"""Which model answers a request: the endpoint's deployments and the choice between them.

An `Endpoint` holds its deployments; the routes ask it for the service of each request
(`endpoint.service_for(request)`). A `Deployment` follows one version spec over the local
registry (latest, or a pinned version), loads it into a `score.ModelService` and knows whether
it is ready and, if not, why. A new version replaces the served one as one reference, so a
request that already took its service finishes on that version.

Today an endpoint has one deployment and every request goes to it. Azure's managed online
endpoint splits traffic over several deployments by weight, or by the
`azureml-model-deployment` request header: that choice belongs in `Endpoint.service_for`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING

import numpy as np

from endpoint_settings import EndpointSettings
from registry import Registry, RegistryError, parse_version_spec, version_label
from score import ModelService

if TYPE_CHECKING:
    from starlette.requests import Request

log = logging.getLogger("app_score_api")

NO_MODEL = "no model registered: run python train.py"
DEFAULT_DEPLOYMENT = "default"
# Bodies are capped before parsing: generous room per record, so the record limit decides.
BYTES_PER_RECORD = 4096


class Deployment:
    """One deployment: a model version spec over the registry, the loaded service and its readiness."""

    def __init__(self, name: str, registry: Registry, version_spec: str | None):
        self.name = name
        self.registry = registry
        self.pinned = parse_version_spec(version_spec)
        self.service: ModelService | None = None  # swapped as one reference, never changed in place
        self.number = 0
        self.reason = NO_MODEL
        self.rejected: set[int] = set()

    @property
    def settled(self) -> bool:
        """A pinned version, once loaded, never changes: no need to look at the registry again."""
        return self.pinned is not None and self.service is not None

    def _target(self) -> int | None:
        """The version to load now, or None to keep serving what is served (and say why if nothing is)."""
        available = self.registry.versions()
        if not available:
            if self.service is None:
                self.reason = NO_MODEL
            return None
        if self.pinned is not None:
            if self.service is not None or self.pinned in self.rejected:
                return None
            if self.pinned not in available:
                shown = ", ".join(version_label(v) for v in available)
                self.reason = (f"model version {version_label(self.pinned)} not found in {self.registry.root} "
                               f"(available: {shown})")
                return None
            return self.pinned
        candidates = [v for v in available if v not in self.rejected]
        if not candidates or candidates[-1] <= self.number:
            return None
        return candidates[-1]

    def refresh(self) -> None:
        """Serve the pinned version, or the newest version that loads; keep the current one otherwise."""
        target = self._target()
        if target is None:
            return
        try:
            service = ModelService.from_registry(self.registry.root, target)
            service.predict(np.zeros((1, len(service.features))))  # warm up before taking traffic
        except Exception as exc:  # a bad version must never replace the served one
            self.rejected.add(target)
            message = str(exc) if isinstance(exc, RegistryError) else f"{version_label(target)} cannot be served: {exc}"
            log.error("not serving %s: %s", version_label(target), message)
            if self.service is None:
                self.reason = message
            return
        previous = self.service.version if self.service is not None else None
        self.service, self.number = service, target  # the switch: one reference, in-flight requests keep theirs
        log.info("serving model %s%s", service.version, f" (was {previous})" if previous else "")


class Endpoint:
    """The deployments behind the endpoint, its request limits and its key; routes requests."""

    def __init__(self, deployments: list[Deployment], max_records: int, reload_seconds: float,
                 api_key: str | None = None):
        if not deployments:
            raise ValueError("an endpoint needs at least one deployment")
        self.deployments = {d.name: d for d in deployments}
        self._only = deployments[0]  # today's routing: every request goes to the one deployment
        self.max_records = max_records
        self.max_body_bytes = max(1 << 20, max_records * BYTES_PER_RECORD)
        self.reload_seconds = reload_seconds
        self._api_key = api_key.encode() if api_key else None

    @classmethod
    def from_settings(cls, config: EndpointSettings) -> Endpoint:
        """One deployment following latest, or the pinned version, of the configured registry."""
        deployment = Deployment(DEFAULT_DEPLOYMENT, Registry(config.registry_dir), config.model_version)
        key = config.api_key.get_secret_value() if config.api_key is not None else None
        return cls([deployment], config.max_records, config.reload_seconds, key)

    # ----- per request ------------------------------------------------------------------
    def service_for(self, request: Request | None = None) -> tuple[Deployment, ModelService | None]:
        """The deployment that answers this request and the service it answers with (None: not ready).

        The caller keeps that service for the whole request, whatever is swapped in meanwhile.
        """
        deployment = self._only
        return deployment, deployment.service

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header carries the key (always, when no key is set); constant time."""
        if self._api_key is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._api_key)

    @property
    def protected(self) -> bool:
        return self._api_key is not None

    # ----- keeping up with the registry -------------------------------------------------
    def refresh(self) -> None:
        for deployment in self.deployments.values():
            deployment.refresh()

    def start(self) -> None:
        """Load every deployment before taking traffic; log what is not ready."""
        self.refresh()
        for deployment in self.deployments.values():
            if deployment.service is None:
                log.warning("not ready: %s", deployment.reason)

    async def poll(self) -> None:
        """Look for new versions every reload_seconds, until every deployment is settled."""
        while True:
            await asyncio.sleep(self.reload_seconds)
            if all(d.settled for d in self.deployments.values()):
                return
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                served = ", ".join(d.service.version for d in self.deployments.values() if d.service) or "no model"
                log.exception("registry check failed; still serving %s", served)
