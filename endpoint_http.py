"""The online endpoint's HTTP plumbing: the request log, the API key guard and the fast JSON path.

Both middlewares are plain ASGI (no per-request objects beyond what the server builds). Bodies
are parsed with orjson (Python's json when orjson refuses, so NaN/Infinity reach validation and
are rejected there by name); answers are encoded with msgspec, echoing each record's own JSON
text when the body allows it.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import logging.handlers
import sys
import threading
import time
from typing import Any, Callable, TextIO

import msgspec
import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from endpoint_settings import ENV_API_KEY
from score import ModelService

log = logging.getLogger("app_score_api")

OPEN_PATHS = frozenset({"/health", "/ready"})  # liveness and readiness never need the key
_LOG_KEY = "app_score_api.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WRITE_INTERVAL = 0.05  # seconds between the log writer's batches
YIELD_EVERY = 64  # log lines the writer formats before it lets the serving thread run


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


class PlainRoute(APIRoute):
    """A route documented like any other (OpenAPI from its declared models) whose handler takes the
    Request and returns a Response itself: FastAPI's per-request dependency solving and response
    validation, which such a handler does not use, are skipped (about a tenth of a one-record
    /predict's CPU time). DirectRoutes answers it ahead of the router when the app adds it."""

    def get_route_handler(self):
        return self.endpoint


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


class DirectRoutes:
    """ASGI middleware, the innermost: the routes in `routes` ({(method, path): handler(Request) ->
    Response}) are answered here, ahead of the router. POST /predict is one: the router's matching,
    its exception and exit-stack layers and FastAPI's request wrapper cost as much as scoring a
    record, and the handler needs none of them (it answers every error itself; an exception still
    reaches Starlette's ServerErrorMiddleware, a 500). The route stays declared on the app for
    its OpenAPI schema."""

    def __init__(self, app, routes: dict[tuple[str, str], Callable[[Request], Any]]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        handler = self.routes.get((scope.get("method"), scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)


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
        log_in_background(logging.INFO)


class _Lines(collections.deque):
    """The records waiting to be written; QueueHandler puts into it without waking anyone."""

    put_nowait = collections.deque.append


class _LineWriter(threading.Thread):
    """Every WRITE_INTERVAL, formats the records waiting and writes them with one write and one
    flush. logging.StreamHandler pays a write and a flush per line on the serving thread, and a
    QueueListener wakes its thread for every record (a GIL hand-over per request): hence this
    small thread, which wakes on its own clock instead."""

    def __init__(self, lines: _Lines, stream: TextIO, formatter: logging.Formatter):
        super().__init__(name="log-writer", daemon=True)
        self.lines, self.stream, self.formatter = lines, stream, formatter
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(WRITE_INTERVAL):
            self.write()
        self.write()

    def write(self) -> None:
        text = []
        while self.lines:
            record = self.lines.popleft()
            try:
                text.append(self.formatter.format(record))
            except Exception:  # a record that cannot be formatted must not stop the log
                text.append(f"{record.levelname} {record.name}: unformattable log record {record.msg!r}")
            if len(text) % YIELD_EVERY == 0:
                # Let the serving thread have the GIL: formatting a 50 ms batch at thousands of
                # requests/s holds it for over a millisecond, which showed as the p99 at concurrency 1.
                time.sleep(0)
        if text:
            try:
                self.stream.write("\n".join(text) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed at shutdown: nothing left to tell
                pass

    def stop(self) -> None:
        """Write what is waiting, then end (registered with atexit)."""
        self.stopping.set()
        self.join(timeout=5)


def log_in_background(level: int | str, fmt: str = LOG_FORMAT, stream: TextIO | None = None) -> None:
    """Log through a queue: the serving thread only queues each record (the request log's line
    costs it no write); a writer thread formats and writes them in batches to stderr."""
    lines = _Lines()
    writer = _LineWriter(lines, stream or sys.stderr, logging.Formatter(fmt))
    writer.start()
    atexit.register(writer.stop)
    # The logging HOWTO's "Optimization": no caller lookup, thread or process names (the format
    # shows none of them), computed for every record otherwise.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.addHandler(_QueuedRecords(lines))
    root.setLevel(level)


class _QueuedRecords(logging.handlers.QueueHandler):
    """Queues the record itself: the writer is its only reader and formats it (QueueHandler's own
    prepare formats and copies every record on the serving thread)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


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
    inputs, predicted, probability = service.predict_records(records)
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
