"""The online endpoint: FastAPI around score.py, a local managed online endpoint.

Reads model versions from the local registry ($LOCAL_REGISTRY_DIR or ./local_registry) and
serves the latest one, or the version pinned by --model-version / $MODEL_VERSION. A version
registered while the app runs is served within about a second, without a restart; requests
already in flight finish on the version they started with. Writes nothing to disk: one log
line per request goes to stderr.

    python app_score_api.py --host 127.0.0.1 --port 8000 [--workers N]
    uvicorn app_score_api:app --host 127.0.0.1 --port 8000 --no-access-log

Routes: POST /predict, GET /health (liveness), GET /ready (readiness), GET /model, GET /docs
(Swagger UI served from the app itself, so it works offline).

Environment: SCORING_API_KEY (when set, every route but /health and /ready needs
`Authorization: Bearer <key>`, /docs and /openapi.json included), MODEL_VERSION (pin), SCORING_MAX_RECORDS (default 10000), SCORING_RELOAD_SECONDS
(registry poll interval, default 1), LOCAL_REGISTRY_DIR.

Azure ML counterpart: a managed online endpoint with key auth and one deployment; the
served version is in the `x-model-version` response header (Azure routes by the
`azureml-model-deployment` request header).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hmac
import json
import logging
import os
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

import settings
from registry import Registry, RegistryError, parse_version_spec, version_label
from score import ModelService, RecordError, ScoringError, extract_records

log = logging.getLogger("app_score_api")

ENV_API_KEY = "SCORING_API_KEY"
ENV_MODEL_VERSION = "MODEL_VERSION"  # the same variable score.init() reads
ENV_MAX_RECORDS = "SCORING_MAX_RECORDS"
ENV_RELOAD_SECONDS = "SCORING_RELOAD_SECONDS"
DEFAULT_MAX_RECORDS = 10_000
DEFAULT_RELOAD_SECONDS = 1.0
VERSION_HEADER = "x-model-version"
NO_MODEL = "no model registered: run python train.py"
# Bodies are capped before parsing: generous room per record, so the record limit decides.
BYTES_PER_RECORD = 4096
# Larger requests are validated and scored off the event loop so small ones keep flowing.
THREAD_OFFLOAD_RECORDS = 500
_LOG_KEY = "app_score_api.log"

# One real row of the training data (row 0 of day1_breast_cancer.csv), for the docs.
EXAMPLE_RECORD: dict[str, float] = {
    "mean radius": 17.99, "mean texture": 10.38, "mean perimeter": 122.8, "mean area": 1001.0,
    "mean smoothness": 0.1184, "mean compactness": 0.2776, "mean concavity": 0.3001,
    "mean concave points": 0.1471, "mean symmetry": 0.2419, "mean fractal dimension": 0.07871,
    "radius error": 1.095, "texture error": 0.9053, "perimeter error": 8.589, "area error": 153.4,
    "smoothness error": 0.006399, "compactness error": 0.04904, "concavity error": 0.05373,
    "concave points error": 0.01587, "symmetry error": 0.03003, "fractal dimension error": 0.006193,
    "worst radius": 25.38, "worst texture": 17.33, "worst perimeter": 184.6, "worst area": 2019.0,
    "worst smoothness": 0.1622, "worst compactness": 0.6656, "worst concavity": 0.7119,
    "worst concave points": 0.2654, "worst symmetry": 0.4601, "worst fractal dimension": 0.1189,
}


# ----- documented shapes (the /predict route parses its body itself, for speed) -------------
class PredictRequest(BaseModel):
    """A batch of records to score; each record maps every model feature to a finite number."""

    records: list[dict[str, float]] = Field(
        min_length=1, description="records to score (at most SCORING_MAX_RECORDS, default 10000)"
    )
    model_config = {"json_schema_extra": {"examples": [{"records": [EXAMPLE_RECORD]}]}}


class PredictResult(BaseModel):
    input: dict[str, Any] = Field(description="the record as sent")
    prediction: int = Field(description="predicted class, 0 or 1")
    probability: float = Field(description="probability of class 1")


class PredictResponse(BaseModel):
    results: list[PredictResult]
    model_version: str = Field(description="the registry version that scored the request, e.g. v002")
    model_config = {"json_schema_extra": {"examples": [{
        "results": [{"input": EXAMPLE_RECORD, "prediction": 0, "probability": 1.4e-11}],
        "model_version": "v002",
    }]}}


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong and what to do")
    record: int | None = Field(default=None, description="index of the offending record")
    feature: str | None = Field(default=None, description="the offending feature")


class HealthResponse(BaseModel):
    status: str = "alive"


class ReadyResponse(BaseModel):
    status: str = Field(description="ready or not ready")
    model_version: str | None = None
    detail: str | None = Field(default=None, description="why the app is not ready")


class ModelResponse(BaseModel):
    model_version: str
    pinned: bool = Field(description="true when a version is pinned rather than following latest")
    metadata: dict[str, Any]
    metrics: dict[str, Any]


# ----- serving state --------------------------------------------------------------------
class ServingState:
    """Which model is served; swapped as one reference so a request sees one version throughout."""

    def __init__(self, registry_dir: Path | str | None, version_spec: str | None, max_records: int,
                 reload_seconds: float, api_key: str | None):
        self.registry = Registry(registry_dir)
        self.pinned = parse_version_spec(version_spec)
        self.max_records = max_records
        self.max_body_bytes = max(1 << 20, max_records * BYTES_PER_RECORD)
        self.reload_seconds = reload_seconds
        self._api_key = api_key.encode() if api_key else None
        self.service: ModelService | None = None
        self.number = 0
        self.reason = NO_MODEL
        self.rejected: set[int] = set()

    def authorized(self, header: str | None) -> bool:
        if self._api_key is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._api_key)

    def refresh(self) -> None:
        """Serve the pinned version, or the newest version that loads; keep the current one otherwise."""
        available = self.registry.versions()
        if not available:
            if self.service is None:
                self.reason = NO_MODEL
            return
        if self.pinned is not None:
            if self.service is not None or self.pinned in self.rejected:
                return
            if self.pinned not in available:
                shown = ", ".join(version_label(v) for v in available)
                self.reason = f"model version {version_label(self.pinned)} not found in {self.registry.root} (available: {shown})"
                return
            target = self.pinned
        else:
            candidates = [v for v in available if v not in self.rejected]
            if not candidates:
                return
            target = candidates[-1]
            if target <= self.number:
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

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(self.reload_seconds)
            if self.pinned is not None and self.service is not None:
                return  # a pinned version never changes
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("registry check failed; still serving %s",
                              self.service.version if self.service else "no model")


# ----- helpers ---------------------------------------------------------------------------
def _dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # e.g. an extra field holding an integer beyond 64 bits
        return json.dumps(data).encode()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(data), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return _json({"detail": detail, **extra}, status, headers)


def _parse(body: bytes) -> Any:
    """orjson for speed; Python's json when orjson refuses, so NaN/Infinity reach validation."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise RuntimeError(f"{name} must be at least 1, got {value}")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise RuntimeError(f"{name} must be positive, got {value}")
    return value


class RequestLog:
    """ASGI middleware: one line per request (method, path, status, records, model, latency)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        info = {"status": 500, "records": "-", "model": "-"}
        scope[_LOG_KEY] = info

        async def send_status(message):
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log.info("%s %s %s records=%s model=%s %.2fms", scope["method"], scope["path"], info["status"],
                     info["records"], info["model"], (time.perf_counter() - start) * 1000)


def _note(request: Request, **fields: Any) -> None:
    info = request.scope.get(_LOG_KEY)
    if info is not None:
        info.update(fields)


# ----- the app ---------------------------------------------------------------------------
def create_app(registry_dir: Path | str | None = None, model_version: str | None = None,
               max_records: int | None = None, reload_seconds: float | None = None) -> FastAPI:
    """The endpoint. Arguments left as None are read from the environment when the app starts."""

    holder: dict[str, ServingState] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not log.handlers and not logging.getLogger().handlers:
            # Started by a bare `uvicorn app_score_api:app`: give the request log somewhere to go.
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        state = ServingState(
            registry_dir if registry_dir is not None else settings.registry_dir(),
            model_version if model_version is not None else os.environ.get(ENV_MODEL_VERSION) or "latest",
            max_records if max_records is not None else _env_int(ENV_MAX_RECORDS, DEFAULT_MAX_RECORDS),
            reload_seconds if reload_seconds is not None else _env_float(ENV_RELOAD_SECONDS, DEFAULT_RELOAD_SECONDS),
            os.environ.get(ENV_API_KEY) or None,
        )
        state.refresh()
        if state.service is None:
            log.warning("not ready: %s", state.reason)
        # Everything loaded so far lives as long as the process: keep it out of the collector's
        # generations so a collection during a request does not walk it (shorter latency tails).
        gc.collect()
        gc.freeze()
        holder["state"] = state
        app.state.serving = state
        poller = asyncio.create_task(state.poll())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    app = FastAPI(
        title="Risk classifier online endpoint",
        description="Scores records with the registered risk classifier (a local stand-in for an "
                    "Azure ML managed online endpoint).",
        version="1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    class DocsGuard:
        """With a key set, the schema and the docs need it too: only the health routes are open."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http" and scope["path"].startswith(("/docs", "/openapi.json")):
                state = holder.get("state")
                header = dict(scope["headers"]).get(b"authorization")
                if state is not None and not state.authorized(header.decode("latin-1") if header else None):
                    await _unauthorized()(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    app.add_middleware(DocsGuard)  # added first, so RequestLog (outermost) logs its 401s
    app.add_middleware(RequestLog)

    unauthorized = {"description": "SCORING_API_KEY is set and the Bearer key is missing or wrong",
                    "model": ErrorResponse}
    not_ready = {"description": "no model is loaded (e.g. " + NO_MODEL + ")", "model": ErrorResponse}

    @app.post(
        "/predict",
        summary="Score records",
        description='`{"records": [{feature: number, ...}, ...]}`: every feature of the model, finite '
                    "numbers only. Answers one result per record, in order, and the model version "
                    "(also in the `x-model-version` header).",
        response_model=PredictResponse,
        responses={
            400: {"description": "the body is not valid JSON", "model": ErrorResponse},
            401: unauthorized,
            413: {"description": "more records than SCORING_MAX_RECORDS (default 10000)", "model": ErrorResponse},
            422: {"description": "the body or a record is invalid (names the record and the feature)",
                  "model": ErrorResponse},
            503: not_ready,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictRequest"},
                    "example": {"records": [EXAMPLE_RECORD]},
                }},
            },
            "security": [{"apiKey": []}],
        },
    )
    async def predict(request: Request) -> Response:
        # The body is parsed and validated here rather than by pydantic: per-record models and
        # DataFrames cost more than the model itself. score.ModelService does the validation.
        state = holder["state"]
        if not state.authorized(request.headers.get("authorization")):
            return _unauthorized()
        service = state.service  # this request's version, whatever is swapped in meanwhile
        if service is None:
            return _error(503, state.reason)
        _note(request, model=service.version)
        headers = {VERSION_HEADER: service.version}
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > state.max_body_bytes:
            return _error(413, f"request body too large: {declared} bytes (at most {state.max_body_bytes}; "
                               f"send at most {state.max_records} records per request)", headers)
        body = await request.body()
        if len(body) > state.max_body_bytes:
            return _error(413, f"request body too large: {len(body)} bytes (at most {state.max_body_bytes}; "
                               f"send at most {state.max_records} records per request)", headers)
        try:
            payload = _parse(body)
        except ValueError as exc:
            return _error(400, f"request body is not valid JSON: {exc}", headers)
        except RecursionError:
            return _error(400, "request body is not valid JSON: nested too deeply", headers)
        if not isinstance(payload, dict):
            kind = "a list" if isinstance(payload, list) else type(payload).__name__
            return _error(422, f'request body must be a JSON object {{"records": [...]}}, got {kind}', headers)
        try:
            records = extract_records(payload)
        except ScoringError as exc:
            return _error(422, str(exc), headers)
        count = len(records)
        _note(request, records=count)
        if count > state.max_records:
            return _error(413, f"too many records: {count} (at most {state.max_records} per request; "
                               f"split the batch)", headers)
        try:
            if count > THREAD_OFFLOAD_RECORDS:
                answer = await asyncio.to_thread(_score, service, records, body)
            else:
                answer = _score(service, records, body)
        except RecordError as exc:
            return _error(422, str(exc), headers, record=exc.index, feature=exc.feature)
        return Response(answer, media_type="application/json", headers=headers)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=app.title + " - docs",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/health", response_model=HealthResponse, summary="Liveness: the process answers")
    async def health() -> Response:
        return _json({"status": "alive"})

    @app.get("/ready", response_model=ReadyResponse, summary="Readiness: a model is loaded",
             responses={503: {"description": "no model loaded", "model": ReadyResponse}})
    async def ready(request: Request) -> Response:
        state = holder["state"]
        service = state.service
        if service is None:
            return _json({"status": "not ready", "detail": state.reason}, 503)
        _note(request, model=service.version)
        return _json({"status": "ready", "model_version": service.version}, headers={VERSION_HEADER: service.version})

    @app.get("/model", response_model=ModelResponse, summary="The served version's metadata and metrics",
             responses={401: unauthorized, 503: not_ready}, openapi_extra={"security": [{"apiKey": []}]})
    async def model(request: Request) -> Response:
        state = holder["state"]
        if not state.authorized(request.headers.get("authorization")):
            return _unauthorized()
        service = state.service
        if service is None:
            return _error(503, state.reason)
        _note(request, model=service.version)
        return _json({"model_version": service.version, "pinned": state.pinned is not None,
                      "metadata": service.metadata, "metrics": service.metrics},
                     headers={VERSION_HEADER: service.version})

    import swagger_ui_bundle  # the Swagger UI files, pinned in requirements.txt

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path, check_dir=False),
              name="docs-assets")

    def _unauthorized() -> Response:
        return _error(401, f"missing or invalid API key: send Authorization: Bearer <key> ({ENV_API_KEY})",
                      {"www-authenticate": "Bearer"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["PredictRequest"] = PredictRequest.model_json_schema()
            components["securitySchemes"] = {"apiKey": {
                "type": "http", "scheme": "bearer",
                "description": f"needed only when {ENV_API_KEY} is set on the server",
            }}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class _RawRecords(msgspec.Struct):
    """A request's records as their own JSON text."""

    records: list[msgspec.Raw]


_RAW_RECORDS = msgspec.json.Decoder(_RawRecords)
_ENCODER = msgspec.json.Encoder()


def _raw_records(body: bytes | None, records: list[Any], inputs: list[Any]) -> list[Any] | None:
    """Each record's JSON text as sent, to echo it without encoding its numbers again.

    Only for {"records": [objects]} bodies that split into as many records as were validated;
    otherwise None and the parsed records are encoded instead.
    """
    if body is None or not inputs or inputs[0] is not records[0]:
        return None  # Azure's "data" rows: the echoed inputs are built, not sent
    try:
        raw = _RAW_RECORDS.decode(body).records
    except msgspec.DecodeError:
        return None
    return raw if len(raw) == len(records) else None


def _score(service: ModelService, records: list[Any], body: bytes | None = None) -> bytes:
    """The encoded answer for validated-on-the-way records (a RecordError when one is bad)."""
    matrix, inputs = service.records_matrix(records)
    predictions, probabilities = service.predict(matrix)
    raw = _raw_records(body, records, inputs)
    result = {
        "results": [
            {"input": record, "prediction": p, "probability": q}
            for record, p, q in zip(raw or inputs, predictions.tolist(), probabilities.tolist())
        ],
        "model_version": service.version,
    }
    return _ENCODER.encode(result) if raw is not None else _dumps(result)


app = create_app()


# ----- CLI -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Serve the registered risk classifier over HTTP (POST /predict).",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--registry-dir", type=Path, default=None,
                        help="registry folder (default: $LOCAL_REGISTRY_DIR or ./local_registry)")
    parser.add_argument("--model-version", default=os.environ.get(ENV_MODEL_VERSION) or "latest",
                        help=f"latest (follow new versions), or pin one: 2 or v002 (env {ENV_MODEL_VERSION})")
    parser.add_argument("--max-records", type=int, default=DEFAULT_MAX_RECORDS,
                        help=f"most records per request; more gets 413 (env {ENV_MAX_RECORDS})")
    parser.add_argument("--reload-seconds", type=float, default=DEFAULT_RELOAD_SECONDS,
                        help=f"how often to look for a new version (env {ENV_RELOAD_SECONDS})")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log level; info logs one line per request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parse_version_spec(args.model_version)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for flag, value in (("--workers", args.workers), ("--max-records", args.max_records), ("--port", args.port)):
        if value < 1 or (flag == "--port" and value > 65535):
            print(f"error: {flag} must be {'a port number' if flag == '--port' else 'at least 1'}, got {value}",
                  file=sys.stderr)
            return 2
    if not args.reload_seconds > 0:
        print(f"error: --reload-seconds must be positive, got {args.reload_seconds}", file=sys.stderr)
        return 2
    # Workers import the app afresh, so the settings travel as environment variables.
    if args.registry_dir is not None:
        os.environ["LOCAL_REGISTRY_DIR"] = str(args.registry_dir.resolve())
    os.environ[ENV_MODEL_VERSION] = args.model_version
    os.environ[ENV_MAX_RECORDS] = str(args.max_records)
    os.environ[ENV_RELOAD_SECONDS] = str(args.reload_seconds)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    uvicorn.run("app_score_api:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, access_log=False, app_dir=str(Path(__file__).resolve().parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
