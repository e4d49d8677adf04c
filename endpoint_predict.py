"""POST /predict: route the request, hold Azure's limits, score, count, mirror.

The route asks the endpoint (serving.py) which deployment answers (endpoint_router.py's rules),
then, as a managed online deployment does:

    503  the deployment has no model loaded (names the deployment and why)
    429  more than max_in_flight (2 x max_concurrent_requests_per_instance x instance_count)
         requests are already in flight on that deployment; `retry-after: 1`
    408  the handling (reading, parsing, validating, scoring, encoding) took longer than
         request_timeout_ms: the caller gets the 408 at the deadline (within Deadlines.TICK);
         the work may finish

The plain endpoint (no endpoint YAML) has no such limits, as before. Every answer carries
`azureml-model-deployment` and `x-request-id`; a scored one also `x-model-version`. The body is
parsed and validated here rather than by pydantic: per-record models and DataFrames cost more
than the model itself; score.ModelService does the validation.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from endpoint_collection import REQUEST_ID_HEADER, request_id
from endpoint_http import error, note, parse, score
from endpoint_metrics import NO_DEPLOYMENT
from endpoint_router import DEPLOYMENT_HEADER, RouteError
from score import RecordError, ScoringError, extract_records
from serving import Deployment, Endpoint

VERSION_HEADER = "x-model-version"
# Larger requests are validated and scored off the event loop so small ones keep flowing.
THREAD_OFFLOAD_RECORDS = 500
TOO_LARGE = "request body too large: {} bytes (at most {}; send at most {} records per request)"


async def predict(request: Request) -> Response:
    state = request.app.state
    endpoint: Endpoint = state.serving
    rid = request_id(request.headers)
    start = perf_counter()
    try:
        deployment, mirror = endpoint.choose(request.headers.get(DEPLOYMENT_HEADER))
    except RouteError as exc:
        state.metrics.answered(NO_DEPLOYMENT, exc.status, perf_counter() - start)
        return error(exc.status, exc.detail, {REQUEST_ID_HEADER: rid})
    headers = {DEPLOYMENT_HEADER: deployment.name, REQUEST_ID_HEADER: rid}
    service, body, records = deployment.service, None, 0  # this request's version, whatever is swapped in meanwhile
    limit = deployment.max_in_flight
    if service is None and endpoint.spec is None:
        response = error(503, deployment.reason, headers)
    elif service is None:
        response = error(503, f"deployment {deployment.name} is not ready: {deployment.reason}", headers,
                         deployment=deployment.name)
    elif limit is not None and deployment.in_flight >= limit:
        response = error(429, f"too many pending requests: deployment {deployment.name} already has {limit} "
                              f"requests in flight (2 x max_concurrent_requests_per_instance x instance_count); "
                              f"retry later", headers | {"retry-after": "1"}, deployment=deployment.name)
    else:
        deployment.in_flight += 1
        try:
            response, body, records = await _within_timeout(request, endpoint, deployment, service, headers, rid, start)
        finally:
            deployment.in_flight -= 1
    state.metrics.answered(deployment.name, response.status_code, perf_counter() - start, records)
    if mirror is not None and body is not None:
        state.mirror.offer(mirror.name, body, rid)  # never waits: a full queue drops the copy (counted)
    return response


async def _within_timeout(request: Request, endpoint: Endpoint, deployment: Deployment, service: Any,
                          headers: dict[str, str], rid: str, start: float) -> tuple[Response, bytes | None, int]:
    """_handle under the deployment's request timeout: past it, a 408 (also when the work ran on past it)."""
    timeout = deployment.timeout_s
    if timeout is None:
        return await _handle(request, endpoint, deployment, service, headers, rid)
    deadlines: Deadlines = request.app.state.deadlines
    task = asyncio.current_task()
    deadlines.watch(task, start + timeout)  # no await from here to the try: the watchdog cancels only inside it
    try:
        result = await _handle(request, endpoint, deployment, service, headers, rid)
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise  # not ours: the server is stopping or the caller went away
        task.uncancel()
        result = None
    finally:
        deadlines.forget(task)
    if result is None or perf_counter() - start > timeout:
        assert deployment.spec is not None
        message = (f"request timed out: deployment {deployment.name} did not answer within "
                   f"request_timeout_ms={deployment.spec.request_timeout_ms}")
        return error(408, message, headers, deployment=deployment.name), None, 0
    return result


class Deadlines:
    """The request timeouts' watchdog: one task that, every TICK, cancels the requests past their
    deadline (each is then answered 408 at the await it was waiting on). A timer per request
    (asyncio.timeout) cost about a tenth of a one-record request's CPU time; a dict entry costs
    next to nothing. A 408 comes at most TICK after the deadline."""

    TICK = 0.02

    def __init__(self) -> None:
        self._deadlines: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None

    def watch(self, task: Any, deadline: float) -> None:
        self._deadlines[task] = deadline

    def forget(self, task: Any) -> None:
        self._deadlines.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: Any) -> bool:
        return task in self._expired

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            now = perf_counter()
            for task, deadline in list(self._deadlines.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()


async def _handle(request: Request, endpoint: Endpoint, deployment: Deployment, service: Any,
                  headers: dict[str, str], rid: str) -> tuple[Response, bytes | None, int]:
    """(answer, the body as read or None, records scored) for one request on one deployment's service."""
    note(request, model=service.version if endpoint.spec is None else f"{deployment.name}/{service.version}")
    headers = headers | {VERSION_HEADER: service.version}
    limit = endpoint.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return error(413, TOO_LARGE.format(declared, limit, endpoint.max_records), headers), None, 0
    body = await request.body()
    if len(body) > limit:
        return error(413, TOO_LARGE.format(len(body), limit, endpoint.max_records), headers), None, 0
    record = request.app.state.collection.recorder(deployment.name, rid, service.version)
    response, count = await answer(endpoint, service, body, headers, record)
    if count:
        note(request, records=count)
    return response, body, count if response.status_code == 200 else 0


async def answer(endpoint: Endpoint, service: Any, body: bytes, headers: dict[str, str],
                 record: Any = None) -> tuple[Response, int]:
    """(answer, records in the body or 0) for a body already read: parse, validate, score, encode."""
    try:
        payload = parse(body)
    except ValueError as exc:
        return error(400, f"request body is not valid JSON: {exc}", headers), 0
    except RecursionError:
        return error(400, "request body is not valid JSON: nested too deeply", headers), 0
    if not isinstance(payload, dict):
        kind = "a list" if isinstance(payload, list) else type(payload).__name__
        return error(422, f'request body must be a JSON object {{"records": [...]}}, got {kind}', headers), 0
    try:
        records = extract_records(payload)
    except ScoringError as exc:
        return error(422, str(exc), headers), 0
    count = len(records)
    if count > endpoint.max_records:
        return error(413, f"too many records: {count} (at most {endpoint.max_records} per request; "
                          f"split the batch)", headers), count
    try:
        if count > THREAD_OFFLOAD_RECORDS:
            scored = await asyncio.to_thread(score, service, records, body, record)
        else:
            scored = score(service, records, body, record)
    except RecordError as exc:
        if record is not None:
            record(records, None, None)  # rejected inputs are collected too: they are what data quality sees
        return error(422, str(exc), headers, record=exc.index, feature=exc.feature), count
    return Response(scored, media_type="application/json", headers=headers), count


async def mirror_copy(app: Any, name: str, body: bytes, rid: str) -> int:
    """Score a mirrored copy on deployment `name` (Mirror's scorer): counted, collected, answer discarded."""
    endpoint: Endpoint = app.state.serving
    deployment = endpoint.deployments[name]
    service, records = deployment.service, 0
    if service is None:
        code = 503
    else:
        record = app.state.collection.recorder(name, rid, service.version)
        response, records = await answer(endpoint, service, body, {}, record)
        code = response.status_code
    app.state.metrics.mirrored(name, code, records if code == 200 else 0)
    return code
