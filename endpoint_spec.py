"""A managed online endpoint read from its Azure ML YAML files, and the traffic in effect.

Reads an endpoint YAML (Azure's managedOnlineEndpoint schema, e.g. azureml/online/endpoint.yml)
and the managedOnlineDeployment YAMLs in the same folder whose `endpoint_name` is that
endpoint's name; other files there are ignored. Writes only the traffic state:
`$LOCAL_ENDPOINTS_DIR/<endpoint name>.json` (default ./local_endpoints), the local stand-in for
`az ml online-endpoint update --traffic ... --mirror-traffic ...`.

    spec = endpoint_spec.load_endpoint("azureml/online/endpoint.yml")   # EndpointSpecError: one line
    traffic, mirror = endpoint_spec.effective(spec)      # the state file's values, else the YAML's
    stamp = endpoint_spec.state_stamp(spec)              # changes whenever the state file does

A helper module: no FastAPI, no stage script imported, nothing read or written at import.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import yaml
from filelock import FileLock

import fileio
import settings
from registry import Registry, RegistryError, parse_version_spec, version_label, version_name

LATEST = "latest"
# Azure's values when a deployment YAML leaves a key out.
DEFAULT_REQUEST_TIMEOUT_MS = 5000
MAX_REQUEST_TIMEOUT_MS = 180_000
DEFAULT_MAX_CONCURRENT_REQUESTS = 1
DEFAULT_INSTANCE_COUNT = 1
MAX_MIRROR_TOTAL = 50
AUTH_MODES = ("key", "aml_token", "aad_token")
# Azure's naming rule for endpoints and deployments: a letter, then letters, digits or hyphens.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{2,31}", re.ASCII)
_VERSION_FOLDER = re.compile(r"model_v(\d{3,})", re.ASCII)
_ASSIGNMENT = re.compile(r"([^=\s,]+)=([^=\s,]*)")


class EndpointSpecError(ValueError):
    """An endpoint YAML, a deployment YAML, a state file or a traffic change that cannot be used (one line)."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment YAML of the endpoint, with Azure's defaults filled in."""

    name: str
    model_ref: str                          # `model:` as written (an inline model's `path`)
    version_spec: str | int                 # "latest" (follows the newest version) or a version number
    instance_count: int
    request_timeout_ms: int
    max_concurrent_requests_per_instance: int
    data_collector: dict[str, Any] | None   # the YAML's `data_collector` mapping, or None
    source: Path                            # the deployment YAML

    @property
    def max_in_flight(self) -> int:
        """Azure answers 429 when more than this many requests are in flight on the deployment."""
        return 2 * self.max_concurrent_requests_per_instance * self.instance_count

    @property
    def request_timeout_s(self) -> float:
        return self.request_timeout_ms / 1000


@dataclass(frozen=True)
class EndpointSpec:
    """The endpoint YAML and its deployments; `traffic` names every deployment (0 when not given)."""

    name: str
    auth_mode: str
    traffic: dict[str, int]                 # every deployment, in name order; sums to 100 or 0
    mirror_traffic: dict[str, int]          # only shares above 0: {} or one {name: 1..50}
    deployments: dict[str, DeploymentSpec]  # by name, in name order
    source: Path                            # the endpoint YAML
    registry_dir: Path                      # the registry the model references were checked against


@dataclass(frozen=True)
class TrafficState:
    """The traffic recorded by `endpoint.py update` (normalised as in EndpointSpec)."""

    traffic: dict[str, int]
    mirror_traffic: dict[str, int]
    revision: int                           # 1 for the first update, +1 for each next one
    updated_at: str                         # UTC, ISO 8601
    path: Path


def shown(path: Path) -> str:
    """A path as messages show it: relative to the working folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ----- reading the YAML files -----------------------------------------------------------------------
class _UniqueKeys(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping (PyYAML keeps the last one silently:
    `traffic: {green: 10, green: 0}` would read as green=0)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged by the base class
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} written twice", key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """safe_load of one file; a missing file or invalid YAML is an EndpointSpecError naming the line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EndpointSpecError(f"{shown(path)}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EndpointSpecError(f"{shown(path)}: cannot be read: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeys)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EndpointSpecError(f"{shown(path)}: invalid YAML{where}: {problem}") from None


def load_endpoint(path: Path | str, registry_dir: Path | str | None = None) -> EndpointSpec:
    """The endpoint YAML at `path` and its deployments, validated; model references checked against
    the registry (`registry_dir`, default settings.registry_dir())."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise EndpointSpecError(f"{shown(path)}: expected a mapping of endpoint fields, got {type(data).__name__}")
    if "endpoint_name" in data:
        raise EndpointSpecError(f"{shown(path)}: endpoint_name: this is a deployment YAML; pass the endpoint's YAML")
    name = _name(data.get("name"), path, "name")
    auth_mode = data.get("auth_mode", "key")
    if auth_mode not in AUTH_MODES:
        raise EndpointSpecError(f"{shown(path)}: auth_mode: expected one of {', '.join(AUTH_MODES)}, got {auth_mode!r}")
    registry = Registry(registry_dir)
    deployments = _deployments(path, name, registry)
    traffic, mirror = validate_traffic(
        _weights(data.get("traffic"), f"{shown(path)}: traffic"),
        _weights(data.get("mirror_traffic"), f"{shown(path)}: mirror_traffic"),
        deployments, f"{shown(path)}: traffic", f"{shown(path)}: mirror_traffic")
    return EndpointSpec(name, auth_mode, traffic, mirror, deployments, path, registry.root)


def _deployments(endpoint_path: Path, endpoint: str, registry: Registry) -> dict[str, DeploymentSpec]:
    """The deployment YAMLs beside the endpoint's whose endpoint_name is `endpoint`, by name."""
    folder = endpoint_path.parent
    found: dict[str, DeploymentSpec] = {}
    files = sorted({*folder.glob("*.yml"), *folder.glob("*.yaml")})
    for file in files:
        if file.resolve() == endpoint_path.resolve():
            continue
        data = read_yaml(file)  # a broken YAML here could be one of this endpoint's deployments
        if not isinstance(data, dict) or data.get("endpoint_name") != endpoint:
            continue
        deployment = parse_deployment(data, file, registry)
        if deployment.name in found:
            raise EndpointSpecError(f"{shown(file)}: name: deployment {deployment.name!r} is also defined in "
                                    f"{shown(found[deployment.name].source)}; each deployment needs its own name")
        found[deployment.name] = deployment
    if not found:
        raise EndpointSpecError(f"{shown(endpoint_path)}: no deployment YAML in {shown(folder)} has "
                                f"endpoint_name: {endpoint}")
    return dict(sorted(found.items()))


def parse_deployment(data: Mapping[str, Any], source: Path, registry: Registry) -> DeploymentSpec:
    """One deployment YAML's fields, with Azure's defaults for the absent ones."""
    name = _name(data.get("name"), source, "name")
    if "model" not in data or data["model"] is None:
        raise EndpointSpecError(f"{shown(source)}: model: missing; give azureml:{settings.MODEL_NAME}:1, "
                                f"azureml:{settings.MODEL_NAME}@latest or a version folder of the registry")
    model_ref, version_spec = resolve_model_ref(data["model"], source, registry)
    request = data.get("request_settings") or {}
    if not isinstance(request, dict):
        raise EndpointSpecError(f"{shown(source)}: request_settings: expected a mapping, got {type(request).__name__}")
    collector = data.get("data_collector")
    if collector is not None and not isinstance(collector, dict):
        raise EndpointSpecError(f"{shown(source)}: data_collector: expected a mapping, got {type(collector).__name__}")
    return DeploymentSpec(
        name=name, model_ref=model_ref, version_spec=version_spec,
        instance_count=_count(data, "instance_count", DEFAULT_INSTANCE_COUNT, source),
        request_timeout_ms=_count(request, "request_timeout_ms", DEFAULT_REQUEST_TIMEOUT_MS, source,
                                  "request_settings.", maximum=MAX_REQUEST_TIMEOUT_MS),
        max_concurrent_requests_per_instance=_count(request, "max_concurrent_requests_per_instance",
                                                    DEFAULT_MAX_CONCURRENT_REQUESTS, source, "request_settings."),
        data_collector=dict(collector) if collector is not None else None,
        source=source,
    )


def resolve_model_ref(value: Any, source: Path, registry: Registry) -> tuple[str, str | int]:
    """(reference as written, "latest" or a version number) for a deployment's `model:`.

    `azureml:risk-classifier:2` is version 2, `azureml:risk-classifier@latest` follows the newest
    version, and a local path (relative to the YAML, or an inline model's `path`) must be a version
    folder inside the registry. A pinned version the registry does not hold is an error.
    """
    field = f"{shown(source)}: model"
    if isinstance(value, dict):
        ref = value.get("path")
        if not isinstance(ref, str) or not ref:
            raise EndpointSpecError(f"{field}: an inline model needs a path inside the registry ({registry.root})")
        version: str | int = _version_folder(ref, source, registry)
    elif isinstance(value, str) and value.startswith("azureml:"):
        ref = value
        version = _azureml_version(value, field)
    elif isinstance(value, str) and value:
        ref = value
        version = _version_folder(ref, source, registry)
    else:
        raise EndpointSpecError(f"{field}: expected azureml:NAME:VERSION, azureml:NAME@latest or a path, got {value!r}")
    if version != LATEST:
        available = registry.versions()
        if version not in available:
            listed = ", ".join(version_label(v) for v in available) or "none: run python train.py"
            raise EndpointSpecError(f"{field}: {ref}: version {version_label(version)} is not in the registry "
                                    f"{shown(registry.root)} (available: {listed})")
    return ref, version


def _azureml_version(ref: str, field: str) -> str | int:
    body = ref[len("azureml:"):]
    if "@" in body:
        name, label = body.split("@", 1)
        if label != LATEST:
            raise EndpointSpecError(f"{field}: {ref}: the only label is @latest")
        version: int | None = None
    elif ":" in body:
        name, text = body.rsplit(":", 1)
        try:
            version = parse_version_spec(text)
        except RegistryError as exc:
            raise EndpointSpecError(f"{field}: {ref}: {exc}") from None
    else:
        raise EndpointSpecError(f"{field}: {ref}: expected azureml:{body}:VERSION or azureml:{body}@latest")
    if name != settings.MODEL_NAME:
        raise EndpointSpecError(f"{field}: {ref}: unknown model {name!r} (the local registry holds "
                                f"{settings.MODEL_NAME})")
    return LATEST if version is None else version


def _version_folder(ref: str, source: Path, registry: Registry) -> int:
    """The version number of a local model path, which must be a version folder of the registry."""
    field = f"{shown(source)}: model"
    target = (source.parent / ref).resolve()
    root = registry.root.resolve()
    if not target.is_relative_to(root):
        raise EndpointSpecError(f"{field}: {ref} lies outside the registry ({shown(registry.root)}); use a "
                                f"version folder inside it or azureml:{settings.MODEL_NAME}:VERSION")
    match = _VERSION_FOLDER.fullmatch(target.name)
    if target.parent != root or not match or version_name(int(match.group(1))) != target.name:
        raise EndpointSpecError(f"{field}: {ref} is not a version folder of the registry "
                                f"(expected {shown(registry.root / version_name(1))} or the like)")
    return int(match.group(1))


def _name(value: Any, source: Path, field: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise EndpointSpecError(f"{shown(source)}: {field}: {value!r} is not a valid name (a letter, then "
                                f"letters, digits or hyphens, 3-32 characters)")
    return value


def _count(data: Mapping[str, Any], key: str, default: int, source: Path, prefix: str = "",
           maximum: int | None = None) -> int:
    value = data.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (maximum and value > maximum):
        limit = f"1 to {maximum}" if maximum else "at least 1"
        raise EndpointSpecError(f"{shown(source)}: {prefix}{key}: expected a whole number {limit}, got {value!r}")
    return value


# ----- traffic rules --------------------------------------------------------------------------------
def _weights(value: Any, field: str) -> dict[str, int]:
    """A YAML traffic mapping as {name: weight}; each weight a whole number 0-100."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EndpointSpecError(f"{field}: expected a mapping of deployment name to percentage, got {value!r}")
    weights = {}
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise EndpointSpecError(f"{field}: {name}={weight!r}: a weight is a whole number from 0 to 100")
        weights[str(name)] = weight
    return weights


def parse_assignments(text: str, flag: str) -> dict[str, int]:
    """`"blue=90 green=10"` (az ml's form; commas also separate) as {name: weight}, each 0-100."""
    pairs = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not pairs:
        raise EndpointSpecError(f'{flag} "{text}": expected NAME=PERCENT pairs such as "blue=90 green=10"')
    weights: dict[str, int] = {}
    for pair in pairs:
        match = _ASSIGNMENT.fullmatch(pair)
        if not match:
            raise EndpointSpecError(f'{flag} "{text}": {pair!r} is not NAME=PERCENT')
        name, raw = match.groups()
        if not raw.isascii() or not raw.isdigit() or int(raw) > 100:
            raise EndpointSpecError(f'{flag} "{text}": {pair}: a weight is a whole number from 0 to 100')
        if name in weights:
            raise EndpointSpecError(f'{flag} "{text}": {name} is given twice')
        weights[name] = int(raw)
    return weights


def validate_traffic(traffic: Mapping[str, int], mirror: Mapping[str, int],
                     deployments: Mapping[str, Any], traffic_field: str = "traffic",
                     mirror_field: str = "mirror_traffic") -> tuple[dict[str, int], dict[str, int]]:
    """Azure's rules; returns (traffic over every deployment, mirror shares above 0).

    Weights are whole numbers 0-100 naming known deployments; traffic sums to 100, or to 0 for no
    live traffic; the mirror goes to at most one deployment, at most 50% in total, and never to a
    deployment that has live traffic. Errors start with `traffic_field` or `mirror_field`.
    """
    known = ", ".join(deployments)
    for field, weights in ((traffic_field, traffic), (mirror_field, mirror)):
        for name, weight in weights.items():
            if name not in deployments:
                raise EndpointSpecError(f"{field}: unknown deployment {name!r} (deployments: {known})")
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                raise EndpointSpecError(f"{field}: {name}={weight!r}: a weight is a whole number from 0 to 100")
    total = sum(traffic.values())
    if total not in (0, 100):
        raise EndpointSpecError(f"{traffic_field}: the weights sum to {total}; they must sum to 100 "
                                f"(or 0 for no live traffic)")
    full = {name: int(traffic.get(name, 0)) for name in deployments}
    shares = {name: int(weight) for name, weight in mirror.items() if weight > 0}
    if len(shares) > 1:
        raise EndpointSpecError(f"{mirror_field}: mirrors to {', '.join(sorted(shares))}; Azure mirrors to "
                                f"one deployment at most")
    if sum(shares.values()) > MAX_MIRROR_TOTAL:
        raise EndpointSpecError(f"{mirror_field}: {sum(shares.values())}% is over the {MAX_MIRROR_TOTAL}% "
                                f"Azure allows for mirrored traffic")
    for name in shares:
        if full[name] > 0:
            raise EndpointSpecError(f"{mirror_field}: {name} has live traffic ({full[name]}%); a deployment "
                                    f"with live traffic cannot also receive mirrored traffic")
    return full, shares


# ----- the traffic state ----------------------------------------------------------------------------
def state_path(spec: EndpointSpec, state_dir: Path | str | None = None) -> Path:
    """Where the endpoint's traffic state lives: <state_dir or $LOCAL_ENDPOINTS_DIR>/<name>.json."""
    return Path(state_dir or settings.local_endpoints_dir()) / f"{spec.name}.json"


def state_stamp(spec: EndpointSpec, state_dir: Path | str | None = None) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of the state file, None when there is none: one stat, cheap to poll.

    Every write replaces the file (a new inode), so a changed stamp means "read_state again".
    """
    try:
        info = os.stat(state_path(spec, state_dir))
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def read_state(spec: EndpointSpec, state_dir: Path | str | None = None) -> TrafficState | None:
    """The recorded traffic, validated against the spec's deployments; None when nothing is recorded."""
    path = state_path(spec, state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EndpointSpecError(f"{shown(path)}: not a readable traffic state ({exc}); "
                                f"run python endpoint.py reset --endpoint {shown(spec.source)}") from None
    field = f"{shown(path)}: "
    if not isinstance(data, dict) or not isinstance(data.get("revision"), int):
        raise EndpointSpecError(f"{field}not a traffic state file; run python endpoint.py reset "
                                f"--endpoint {shown(spec.source)}")
    traffic, mirror = validate_traffic(_weights(data.get("traffic"), field + "traffic"),
                                       _weights(data.get("mirror_traffic"), field + "mirror_traffic"),
                                       spec.deployments, field + "traffic", field + "mirror_traffic")
    return TrafficState(traffic, mirror, data["revision"], str(data.get("updated_at", "")), path)


def effective(spec: EndpointSpec, state_dir: Path | str | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """(traffic, mirror_traffic) in effect: the recorded state's, else the endpoint YAML's."""
    state = read_state(spec, state_dir)
    if state is None:
        return dict(spec.traffic), dict(spec.mirror_traffic)
    return dict(state.traffic), dict(state.mirror_traffic)


def update_traffic(spec: EndpointSpec, traffic: Mapping[str, int] | None = None,
                   mirror: Mapping[str, int] | None = None, state_dir: Path | str | None = None,
                   *, traffic_field: str = "--traffic", mirror_field: str = "--mirror-traffic") -> TrafficState:
    """Validate and record a change (as `az ml online-endpoint update`); nothing changes on an error.

    `traffic` replaces the split (deployments it leaves out get 0); None keeps the one in effect.
    `mirror` replaces the mirror ({"green": 0} clears it); None keeps the one in effect.
    """
    if traffic is None and mirror is None:
        raise EndpointSpecError(f"give {traffic_field}, {mirror_field} or both")
    path = state_path(spec, state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One writer at a time, so revisions never repeat; readers never wait (the write is a rename).
    with FileLock(str(path) + ".lock"):
        current = read_state(spec, state_dir)
        now_traffic, now_mirror = (current.traffic, current.mirror_traffic) if current else (spec.traffic,
                                                                                              spec.mirror_traffic)
        clear = " ".join(f"{name}=0" for name in now_mirror)
        kept = f'mirror traffic in effect ({_format(now_mirror)}; to clear it add {mirror_field} "{clear}")'
        new_traffic, new_mirror = validate_traffic(
            now_traffic if traffic is None else traffic, now_mirror if mirror is None else mirror,
            spec.deployments, traffic_field, mirror_field if mirror is not None else kept)
        revision = (current.revision if current else 0) + 1
        updated_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        record = {"endpoint": spec.name, "revision": revision, "updated_at": updated_at,
                  "traffic": new_traffic, "mirror_traffic": new_mirror}
        fileio.write_atomic(path, json.dumps(record, indent=2) + "\n")
    return TrafficState(new_traffic, new_mirror, revision, updated_at, path)


def reset_state(spec: EndpointSpec, state_dir: Path | str | None = None) -> bool:
    """Drop the recorded traffic, so the endpoint YAML's is in effect again; False if none was recorded."""
    path = state_path(spec, state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        try:
            path.unlink()
        except FileNotFoundError:
            return False
    return True


def _format(weights: Mapping[str, int]) -> str:
    return " ".join(f"{name}={weight}" for name, weight in weights.items())
