"""The online endpoint's HTTP plumbing: the request log, the API key guard and the fast JSON path.

Both middlewares are plain ASGI (no per-request objects beyond what the server builds). Bodies
are parsed with orjson (Python's json when orjson refuses, so NaN/Infinity reach validation and
are rejected there by name); answers are encoded with msgspec, echoing each record's own JSON
text when the body allows it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from endpoint_settings import ENV_API_KEY
from score import ModelService

log = logging.getLogger("app_score_api")

OPEN_PATHS = frozenset({"/health", "/ready"})  # liveness and readiness never need the key
_LOG_KEY = "app_score_api.log"


# ----- responses -------------------------------------------------------------------------
def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # e.g. an extra field holding an integer beyond 64 bits
        return json.dumps(data).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


def error(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return json_response({"detail": detail, **extra}, status, headers)


def unauthorized() -> Response:
    return error(401, f"missing or invalid API key: send Authorization: Bearer <key> ({ENV_API_KEY})",
                 {"www-authenticate": "Bearer"})


def parse(body: bytes) -> Any:
    """orjson for speed; Python's json when orjson refuses, so NaN/Infinity reach validation."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


# ----- middlewares -----------------------------------------------------------------------
class ApiKeyGuard:
    """ASGI middleware, the one place the API key is checked: with a key set on the endpoint
    (`app.state.serving`), every path but /health and /ready needs it, the docs and schema included."""

    def __init__(self, app, open_paths: frozenset[str] = OPEN_PATHS):
        self.app = app
        self.open_paths = open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            endpoint = getattr(scope["app"].state, "serving", None)
            if endpoint is not None and endpoint.protected:
                header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
                if not endpoint.authorized(header.decode("latin-1") if header is not None else None):
                    await unauthorized()(scope, receive, send)
                    return
        await self.app(scope, receive, send)


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


def ensure_log_handler() -> None:
    """Started by a bare `uvicorn app_score_api:app` (no logging set up): give the request log somewhere to go."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def note(request: Request, **fields: Any) -> None:
    """Add fields (records=, model=) to this request's log line."""
    info = request.scope.get(_LOG_KEY)
    if info is not None:
        info.update(fields)


# ----- the scored answer -----------------------------------------------------------------
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


def score(service: ModelService, records: list[Any], body: bytes | None = None,
          on_scored: Callable[[list[Any], list[int], list[float]], None] | None = None) -> bytes:
    """The encoded answer for validated-on-the-way records (a RecordError when one is bad).

    `on_scored(inputs, predictions, probabilities)` is told the scored rows (data collection).
    """
    matrix, inputs = service.records_matrix(records)
    predictions, probabilities = service.predict(matrix)
    predicted, probability = predictions.tolist(), probabilities.tolist()
    if on_scored is not None:
        on_scored(inputs, predicted, probability)
    raw = _raw_records(body, records, inputs)
    result = {
        "results": [
            {"input": record, "prediction": p, "probability": q}
            for record, p, q in zip(raw or inputs, predicted, probability)
        ],
        "model_version": service.version,
    }
    return _ENCODER.encode(result) if raw is not None else dumps(result)
