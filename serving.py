"""Which model answers a request: the endpoint's deployments and the choice between them.

An `Endpoint` holds its deployments; the routes ask it for the service of each request
(`endpoint.service_for(request)`). A `Deployment` follows one version spec over the local
registry (latest, or a pinned version), loads it into a `score.ModelService` and knows whether
it is ready and, if not, why. A new version replaces the served one as one reference, so a
request that already took its service finishes on that version.

Without an endpoint YAML (`Endpoint.from_settings`) there is one deployment, "default", and every
request goes to it. From an endpoint YAML (`Endpoint.from_spec`) there is one deployment per
deployment YAML, with its request settings (timeout, requests in flight); requests are routed by
Azure's rules (endpoint_router.py) over the traffic in effect, which `poll` re-reads whenever
`python endpoint.py update` records a change (endpoint_spec.state_stamp: one stat per second).
A new split is swapped in as one reference; a request keeps the deployment it was given.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import endpoint_spec
from endpoint_router import Traffic, choose
from endpoint_settings import EndpointSettings
from endpoint_spec import DeploymentSpec, EndpointSpec, EndpointSpecError
from registry import Registry, RegistryError, parse_version_spec, version_label
from score import ModelService

if TYPE_CHECKING:
    from starlette.requests import Request

log = logging.getLogger("app_score_api")

NO_MODEL = "no model registered: run python train.py"
DEFAULT_DEPLOYMENT = "default"
# Bodies are capped before parsing: generous room per record, so the record limit decides.
BYTES_PER_RECORD = 4096
# The traffic state is looked at this often (at most), whatever the registry's reload interval.
TRAFFIC_SECONDS = 1.0


class Deployment:
    """One deployment: a model version spec over the registry, the loaded service and its readiness."""

    def __init__(self, name: str, registry: Registry, version_spec: str | int | None,
                 spec: DeploymentSpec | None = None):
        self.name = name
        self.registry = registry
        self.pinned = parse_version_spec(version_spec)
        self.spec = spec
        # Azure's request settings, from the deployment YAML; None (no limit) for the plain endpoint.
        self.timeout_s: float | None = spec.request_timeout_s if spec is not None else None
        self.max_in_flight: int | None = spec.max_in_flight if spec is not None else None
        self.in_flight = 0  # requests being handled now (one event loop: no lock needed)
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
    """The deployments behind the endpoint, its traffic, request limits and key; routes requests."""

    def __init__(self, deployments: list[Deployment], max_records: int, reload_seconds: float,
                 api_key: str | None = None, spec: EndpointSpec | None = None,
                 state_dir: Path | str | None = None):
        if not deployments:
            raise ValueError("an endpoint needs at least one deployment")
        self.deployments = {d.name: d for d in deployments}
        self.spec = spec  # None: the plain endpoint (one implicit deployment, the header ignored)
        self.name = spec.name if spec is not None else "local-endpoint"
        self.state_dir = state_dir
        self.max_records = max_records
        self.max_body_bytes = max(1 << 20, max_records * BYTES_PER_RECORD)
        self.reload_seconds = reload_seconds
        self._api_key = api_key.encode() if api_key else None
        self._stamp = endpoint_spec.state_stamp(spec, state_dir) if spec is not None else None
        if spec is None:
            self.traffic = Traffic.of({deployments[0].name: 100})
        else:
            self.traffic = Traffic.of(*endpoint_spec.effective(spec, state_dir))

    @classmethod
    def from_settings(cls, config: EndpointSettings) -> Endpoint:
        """One deployment following latest, or the pinned version, of the configured registry."""
        deployment = Deployment(DEFAULT_DEPLOYMENT, Registry(config.registry_dir), config.model_version)
        key = config.api_key.get_secret_value() if config.api_key is not None else None
        return cls([deployment], config.max_records, config.reload_seconds, key)

    @classmethod
    def from_spec(cls, spec: EndpointSpec, config: EndpointSettings, state_dir: Path | str | None = None) -> Endpoint:
        """One deployment per deployment YAML of the endpoint, the traffic in effect (EndpointSpecError)."""
        registry = Registry(spec.registry_dir)
        deployments = [Deployment(d.name, registry, d.version_spec, d) for d in spec.deployments.values()]
        key = config.api_key.get_secret_value() if config.api_key is not None else None
        return cls(deployments, config.max_records, config.reload_seconds, key, spec, state_dir)

    # ----- per request ------------------------------------------------------------------
    def choose(self, header: str | None) -> tuple[Deployment, Deployment | None]:
        """(deployment that answers, mirror deployment or None) by Azure's rules; RouteError (404)."""
        if self.spec is None:
            return self.deployments[DEFAULT_DEPLOYMENT], None
        name, mirror = choose(self.traffic, header, self.deployments, self.name)
        return self.deployments[name], (self.deployments[mirror] if mirror is not None else None)

    def service_for(self, request: Request | None = None) -> tuple[Deployment, ModelService | None]:
        """The deployment that answers this request and the service it answers with (None: not ready).

        Without a request: the deployment with the most traffic (the one the docs describe).
        The caller keeps that service for the whole request, whatever is swapped in meanwhile.
        """
        if request is None:
            weights = self.traffic.weights
            deployment = max(self.deployments.values(), key=lambda d: weights.get(d.name, 0))
        else:
            deployment = self.choose(request.headers.get("azureml-model-deployment"))[0]
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

    # ----- what /ready and /model say ---------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """Each deployment: name, version, weight, mirror share, request settings, ready or why not."""
        traffic, rows = self.traffic, []
        for d in self.deployments.values():
            row = {"name": d.name, "model": d.spec.model_ref if d.spec else "latest",
                   "version": d.service.version if d.service else None, "pinned": d.pinned is not None,
                   "traffic": traffic.weights.get(d.name, 0), "mirror_traffic": traffic.mirror.get(d.name, 0),
                   "ready": d.service is not None}
            if d.service is None:
                row["detail"] = d.reason
            if d.spec is not None:
                row |= {"request_timeout_ms": d.spec.request_timeout_ms, "max_in_flight": d.max_in_flight}
            rows.append(row)
        return rows

    def readiness(self) -> dict[str, Any]:
        """/ready from an endpoint YAML: ready when every deployment with traffic above 0 has its model."""
        missing = [d for d in self.deployments.values() if self.traffic.weights.get(d.name, 0) > 0 and d.service is None]
        body = {"status": "not ready" if missing else "ready", "endpoint": self.name, "deployments": self.describe()}
        if missing:
            body["detail"] = "; ".join(f"deployment {d.name} is not ready: {d.reason}" for d in missing)
        return body

    def overview(self) -> dict[str, Any]:
        """/model from an endpoint YAML: the traffic, and each deployment with its version's model."""
        rows = [row | (model_info(d.service) if d.service else {})
                for row, d in zip(self.describe(), self.deployments.values())]
        return {"endpoint": self.name, "traffic": self.traffic.weights, "mirror_traffic": self.traffic.mirror,
                "deployments": rows}

    # ----- keeping up with the registry and the traffic state ---------------------------
    def refresh(self) -> None:
        for deployment in self.deployments.values():
            deployment.refresh()

    def start(self) -> None:
        """Load every deployment before taking traffic; log what is not ready."""
        self.refresh()
        for deployment in self.deployments.values():
            if deployment.service is None:
                log.warning("not ready: %s%s", "" if self.spec is None else f"deployment {deployment.name}: ",
                            deployment.reason)

    def check_traffic(self) -> bool:
        """Apply a traffic change recorded since the last look (one stat); True when one was applied.

        A state file that cannot be used is logged and the last good traffic kept.
        """
        if self.spec is None:
            return False
        stamp = endpoint_spec.state_stamp(self.spec, self.state_dir)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            traffic = Traffic.of(*endpoint_spec.effective(self.spec, self.state_dir))
        except EndpointSpecError as exc:
            log.error("traffic change not applied, still traffic %s: %s", _shown(self.traffic), exc)
            return False
        if traffic != self.traffic:
            log.info("traffic now %s (was %s)", _shown(traffic), _shown(self.traffic))
            self.traffic = traffic  # one reference: a request routes on one split
        return True

    async def poll(self) -> None:
        """Look for traffic changes every second and new versions every reload_seconds, until nothing can change."""
        interval = min(self.reload_seconds, TRAFFIC_SECONDS) if self.spec is not None else self.reload_seconds
        loop = asyncio.get_running_loop()
        slack = interval / 2  # a sleep may end a hair early: never skip a due refresh for it
        next_refresh = loop.time() + self.reload_seconds - slack
        while True:
            await asyncio.sleep(interval)
            try:
                self.check_traffic()
            except Exception:
                log.exception("traffic state check failed; still traffic %s", _shown(self.traffic))
            settled = all(d.settled for d in self.deployments.values())
            if settled and self.spec is None:
                return
            if settled or loop.time() < next_refresh:
                continue
            next_refresh = loop.time() + self.reload_seconds - slack
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                served = ", ".join(d.service.version for d in self.deployments.values() if d.service) or "no model"
                log.exception("registry check failed; still serving %s", served)


def model_info(service: ModelService) -> dict[str, Any]:
    """What /model says of one served version."""
    return {"model_version": service.version, "positive_class": service.positive_class,
            "feature_schema": service.schema.to_list(), "metadata": service.metadata, "metrics": service.metrics}


def _shown(traffic: Traffic) -> str:
    split = " ".join(f"{name}={weight}" for name, weight in traffic.weights.items())
    mirror = " ".join(f"{name}={share}" for name, share in traffic.mirror.items())
    return split + (f", mirror {mirror}" if mirror else "")
