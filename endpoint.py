"""Show and change a local managed online endpoint's traffic, as `az ml online-endpoint` does.

Reads the endpoint YAML (default azureml/online/endpoint.yml), its deployment YAMLs beside it
and the local registry; `update` and `reset` write only the endpoint's traffic state,
$LOCAL_ENDPOINTS_DIR/<endpoint>.json (default ./local_endpoints), which a serving
`app_score_api.py --endpoint FILE` applies without a restart.

    python endpoint.py show                                          # deployments, traffic, mirror (JSON)
    python endpoint.py update --traffic "blue=0 green=100"           # az ml online-endpoint update --traffic
    python endpoint.py update --mirror-traffic "green=10"            # ... --mirror-traffic; "green=0" clears it
    python endpoint.py reset                                         # back to the YAML's traffic
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cli
import endpoint_spec
import settings
from endpoint_spec import EndpointSpec, EndpointSpecError
from registry import Registry, RegistryError, version_label

DEFAULT_ENDPOINT = settings.ROOT / "azureml" / "online" / "endpoint.yml"


def describe(spec: EndpointSpec, state_dir: Path | None = None) -> dict[str, Any]:
    """What `show` prints: each deployment with the version it resolves to now, and the traffic in effect."""
    state = endpoint_spec.read_state(spec, state_dir)
    traffic, mirror = (state.traffic, state.mirror_traffic) if state else (spec.traffic, spec.mirror_traffic)
    registry = Registry(spec.registry_dir)
    deployments = []
    for deployment in spec.deployments.values():
        try:
            version, problem = version_label(registry.resolve(deployment.version_spec)), None
        except RegistryError as exc:
            version, problem = None, str(exc)
        deployments.append({
            "name": deployment.name,
            "file": endpoint_spec.shown(deployment.source),
            "model": deployment.model_ref,
            "version_spec": deployment.version_spec,
            "version": version,
            **({"version_error": problem} if problem else {}),
            "traffic": traffic[deployment.name],
            "mirror_traffic": mirror.get(deployment.name, 0),
            "instance_count": deployment.instance_count,
            "request_timeout_ms": deployment.request_timeout_ms,
            "max_concurrent_requests_per_instance": deployment.max_concurrent_requests_per_instance,
            "max_in_flight": deployment.max_in_flight,
            "data_collector": deployment.data_collector is not None,
        })
    return {
        "endpoint": spec.name,
        "file": endpoint_spec.shown(spec.source),
        "auth_mode": spec.auth_mode,
        "traffic": traffic,
        "mirror_traffic": mirror,
        "traffic_from": endpoint_spec.shown(state.path) if state else endpoint_spec.shown(spec.source),
        "revision": state.revision if state else 0,
        "updated_at": state.updated_at if state else None,
        "deployments": deployments,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Carry out one command; the JSON-ready result to print. EndpointSpecError on any bad input."""
    spec = endpoint_spec.load_endpoint(args.endpoint, args.registry_dir)
    if args.command == "update":
        traffic = endpoint_spec.parse_assignments(args.traffic, "--traffic") if args.traffic is not None else None
        mirror = (endpoint_spec.parse_assignments(args.mirror_traffic, "--mirror-traffic")
                  if args.mirror_traffic is not None else None)
        state = endpoint_spec.update_traffic(spec, traffic, mirror, args.state_dir)
        return {"endpoint": spec.name, "revision": state.revision, "updated_at": state.updated_at,
                "traffic": state.traffic, "mirror_traffic": state.mirror_traffic,
                "state_file": endpoint_spec.shown(state.path)}
    if args.command == "reset":
        dropped = endpoint_spec.reset_state(spec, args.state_dir)
        return {"endpoint": spec.name, "dropped": dropped, "traffic": spec.traffic,
                "mirror_traffic": spec.mirror_traffic, "traffic_from": endpoint_spec.shown(spec.source)}
    return describe(spec, args.state_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Show or change the traffic of a local managed online endpoint "
                    "(the local stand-in for az ml online-endpoint show/update).",
        formatter_class=settings.HelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", type=Path, default=DEFAULT_ENDPOINT,
                        help="the endpoint YAML; its deployments are the YAMLs beside it that name it "
                             "(default: azureml/online/endpoint.yml)")
    cli.add_registry_options(common, model_version=False)
    common.add_argument("--state-dir", type=Path, default=None,
                        help="where traffic changes are recorded (default: $LOCAL_ENDPOINTS_DIR or ./local_endpoints)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", parents=[common], formatter_class=settings.HelpFormatter,
                   help="deployments, model versions, request settings, traffic and mirror in effect (JSON)")
    update = sub.add_parser("update", parents=[common], formatter_class=settings.HelpFormatter,
                            help="validate and record new traffic and/or mirror traffic")
    update.add_argument("--traffic", default=None,
                        help='the new split, e.g. "blue=90 green=10" (sums to 100, or 0 for no live traffic; '
                             'deployments left out get 0; default: keep the split in effect)')
    update.add_argument("--mirror-traffic", default=None,
                        help='copy a share of requests to one deployment without live traffic, e.g. "green=10" '
                             '(at most 50; "green=0" clears it; default: keep the mirror in effect)')
    sub.add_parser("reset", parents=[common], formatter_class=settings.HelpFormatter,
                   help="drop the recorded changes: the endpoint YAML's traffic is in effect again")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (EndpointSpecError, settings.SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot record the traffic: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
