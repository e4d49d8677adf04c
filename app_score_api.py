"""The online endpoint: FastAPI around score.py, a local managed online endpoint.

Reads model versions from the local registry ($LOCAL_REGISTRY_DIR or ./local_registry). Plain,
it serves the latest version, or the one pinned by --model-version / $MODEL_VERSION; with
--endpoint FILE it serves that endpoint YAML's deployments with Azure's routing, traffic split,
mirror, request limits and status codes, the traffic changed live by `python endpoint.py update`
(docs/online-endpoint.md). A version registered while the app runs is served within about a
second; requests in flight finish on the version they started with. One log line per request
goes to stderr; with data collection on (--collect-data, or a deployment's data_collector) the
inputs and outputs are kept as Azure's data collector does; nothing else is written.

    python app_score_api.py --host 127.0.0.1 --port 8000 [--workers N] [--endpoint azureml/online/endpoint.yml]
    uvicorn app_score_api:app --host 127.0.0.1 --port 8000 --no-access-log

Routes: POST /predict, GET /health (liveness), GET /ready (readiness), GET /model, GET /metrics
(Prometheus), GET /docs (Swagger UI, offline). This module is the wiring; which deployment answers
is serving.py's and endpoint_router.py's, /predict endpoint_predict.py's, the settings
endpoint_settings.py's, the log, key guard and JSON endpoint_http.py's, the schemas
endpoint_schemas.py's, metrics endpoint_metrics.py's, data collection endpoint_collection.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import swagger_ui_bundle  # the Swagger UI files, pinned in requirements.txt
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

import endpoint_settings
import settings
from endpoint_collection import Collection
from endpoint_http import (ApiKeyGuard, DirectRoutes, PlainRoute, RequestLog, ensure_log_handler, error, json_response,
                           log_in_background, note)
from endpoint_metrics import InFlight, Metrics
from endpoint_predict import VERSION_HEADER, Deadlines, mirror_copy, predict
from endpoint_router import Mirror
from endpoint_schemas import (EXAMPLE_RECORD, NOT_READY, PREDICT_DOC, SECURED, UNAUTHORIZED, HealthResponse,
                              ModelResponse, ReadyResponse, openapi)
from endpoint_settings import ENV_COLLECT_DATA, ENV_ENDPOINT, ENV_MAX_RECORDS, ENV_MODEL_VERSION, ENV_RELOAD_SECONDS
from endpoint_spec import EndpointSpecError, effective, load_endpoint
from registry import RegistryError, parse_version_spec
from serving import NO_MODEL, Endpoint, model_info

__all__ = ["EXAMPLE_RECORD", "NO_MODEL", "app", "create_app", "main"]


# ----- routes (the API key is checked by endpoint_http.ApiKeyGuard, before any of them) --
async def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url, title=request.app.title + " - docs",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon-32x32.png",
    )


async def health() -> Response:
    return json_response({"status": "alive"})


async def ready(request: Request) -> Response:
    endpoint: Endpoint = request.app.state.serving
    if endpoint.spec is not None:  # ready when every deployment with traffic above 0 has its model
        body = endpoint.readiness()
        return json_response(body, 200 if body["status"] == "ready" else 503)
    deployment, service = endpoint.service_for(None)
    if service is None:
        return json_response({"status": "not ready", "detail": deployment.reason}, 503)
    note(request, model=service.version)
    return json_response({"status": "ready", "model_version": service.version},
                         headers={VERSION_HEADER: service.version})


async def model(request: Request) -> Response:
    endpoint: Endpoint = request.app.state.serving
    if endpoint.spec is not None:  # every deployment: its traffic, its version and that version's model
        return json_response(endpoint.overview())
    deployment, service = endpoint.service_for(None)
    if service is None:
        return error(503, deployment.reason)
    note(request, model=service.version)
    return json_response({"model_version": service.version, "pinned": deployment.pinned is not None,
                          **model_info(service)}, headers={VERSION_HEADER: service.version})


async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=Metrics.content_type)


# ----- the app ---------------------------------------------------------------------------
def _lifespan(**overrides: Any):
    """Read the settings once, load the endpoint's deployments, poll the registry while serving."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ensure_log_handler()
        config = endpoint_settings.load(**overrides)
        if config.endpoint is not None:  # EndpointSpecError stops the start, naming file and field
            endpoint = Endpoint.from_spec(load_endpoint(config.endpoint, config.registry_dir), config)
        else:
            endpoint = Endpoint.from_settings(config)
        endpoint.start()
        collection = Collection.for_endpoint(endpoint, collect_plain=config.collect_data)
        collection.start()
        app.state.collection = collection
        app.state.metrics = Metrics(collection.exporter(), InFlight(endpoint.deployments))
        mirror = app.state.mirror = Mirror(partial(mirror_copy, app), app.state.metrics.dropped)
        mirror.start()
        deadlines = app.state.deadlines = Deadlines()  # the request timeouts' watchdog
        deadlines.start()
        # Everything loaded so far lives as long as the process: keep it out of the collector's
        # generations so a collection during a request does not walk it (shorter latency tails).
        gc.collect()
        gc.freeze()
        app.state.serving = endpoint
        poller = asyncio.create_task(endpoint.poll())
        try:
            yield
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            await mirror.stop()
            await deadlines.stop()
            await asyncio.to_thread(collection.stop)  # what is still queued is written (SIGTERM included)

    return lifespan


def create_app(registry_dir: Path | str | None = None, model_version: str | None = None,
               max_records: int | None = None, reload_seconds: float | None = None,
               collect_data: bool | None = None, endpoint: Path | str | None = None) -> FastAPI:
    """The endpoint. Arguments left as None are read from the environment when the app starts."""
    app = FastAPI(
        title="Risk classifier online endpoint",
        description="Scores records with the registered risk classifier (a local stand-in for an "
                    "Azure ML managed online endpoint).",
        version="1.0", docs_url=None, redoc_url=None,
        # No OpenTelemetry: the endpoint's metrics are its own (/metrics); checking for a configured
        # provider on every request costs about a twentieth of a one-record /predict.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        lifespan=_lifespan(registry_dir=registry_dir, model_version=model_version, max_records=max_records,
                           reload_seconds=reload_seconds, collect_data=collect_data, endpoint=endpoint),
    )
    app.add_middleware(DirectRoutes, routes={("POST", "/predict"): predict})  # innermost: after the key check
    app.add_middleware(ApiKeyGuard)  # added before RequestLog, so RequestLog (outermost) logs its 401s
    app.add_middleware(RequestLog)
    app.router.add_api_route("/predict", predict, methods=["POST"], route_class_override=PlainRoute, **PREDICT_DOC)
    app.add_api_route("/docs", docs, include_in_schema=False)
    app.add_api_route("/health", health, response_model=HealthResponse, summary="Liveness: the process answers")
    app.add_api_route("/ready", ready, response_model=ReadyResponse, summary="Readiness: a model is loaded",
                      responses={503: {"description": "no model loaded", "model": ReadyResponse}})
    app.add_api_route("/metrics", metrics, summary="Prometheus metrics (per worker process)",
                      responses={401: UNAUTHORIZED}, openapi_extra=SECURED)
    app.add_api_route("/model", model, response_model=ModelResponse, summary="The served version's metadata "
                      "and metrics", responses={401: UNAUTHORIZED, 503: NOT_READY}, openapi_extra=SECURED)
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path, check_dir=False),
              name="docs-assets")
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app


app = create_app()


# ----- CLI -------------------------------------------------------------------------------
def build_parser(env: endpoint_settings.EndpointSettings | None = None) -> argparse.ArgumentParser:
    """The flags; their defaults are the settings read from the environment."""
    env = env or endpoint_settings.EndpointSettings.model_construct()
    parser = argparse.ArgumentParser(description="Serve the registered risk classifier over HTTP (POST /predict).",
                                     formatter_class=settings.HelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--registry-dir", type=Path, default=None,
                        help="registry folder (default: $LOCAL_REGISTRY_DIR or ./local_registry)")
    parser.add_argument("--model-version", default=env.model_version,
                        help=f"latest (follow new versions), or pin one: 2 or v002 (env {ENV_MODEL_VERSION})")
    parser.add_argument("--max-records", type=int, default=env.max_records,
                        help=f"most records per request; more gets 413 (env {ENV_MAX_RECORDS})")
    parser.add_argument("--reload-seconds", type=float, default=env.reload_seconds,
                        help=f"how often to look for a new version (env {ENV_RELOAD_SECONDS})")
    parser.add_argument("--collect-data", action="store_true", default=env.collect_data,
                        help=f"collect every request's inputs and outputs as Azure's data collector does, under "
                             f"$DATA_COLLECTOR_DIR or collected/ (env {ENV_COLLECT_DATA})")
    parser.add_argument("--endpoint", type=Path, default=env.endpoint,
                        help=f"serve this endpoint YAML's deployments with its traffic (e.g. azureml/online/endpoint.yml; "
                             f"changed live by python endpoint.py update); --model-version then does not apply "
                             f"(env {ENV_ENDPOINT})")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log level; info logs one line per request")
    return parser


def _check(args: argparse.Namespace) -> str | None:
    """The first bad flag, as the error line to print, or None."""
    try:
        parse_version_spec(args.model_version)
    except RegistryError as exc:
        return str(exc)
    for flag, value in (("--workers", args.workers), ("--max-records", args.max_records), ("--port", args.port)):
        if value < 1 or (flag == "--port" and value > 65535):
            return f"{flag} must be {'a port number' if flag == '--port' else 'at least 1'}, got {value}"
    if not args.reload_seconds > 0:
        return f"--reload-seconds must be positive, got {args.reload_seconds}"
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        env = endpoint_settings.load()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser(env).parse_args(argv)
    problem = _check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    config = endpoint_settings.load(
        registry_dir=(args.registry_dir or env.registry_dir).resolve(), model_version=args.model_version,
        max_records=args.max_records, reload_seconds=args.reload_seconds, collect_data=args.collect_data,
        endpoint=args.endpoint.resolve() if args.endpoint else None)
    try:  # a bad endpoint spec or traffic state: no server, one line saying why
        if config.endpoint is not None:
            effective(load_endpoint(config.endpoint, config.registry_dir))
    except EndpointSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.update(config.to_env())  # workers import the app afresh and read these back
    log_in_background(args.log_level.upper())  # the request log's lines are written by a thread, in batches

    import endpoint_workers  # uvicorn; several workers each get a listening socket of their own

    endpoint_workers.run("app_score_api:app", host=args.host, port=args.port, workers=args.workers,
                         log_level=args.log_level, access_log=False, app_dir=str(Path(__file__).resolve().parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
