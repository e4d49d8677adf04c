"""A bounded soak of the online endpoint on loopback, while new versions are registered.

A real `python app_score_api.py` (uvicorn, API key set) on a free 127.0.0.1 port takes a few
thousand /predict requests from concurrent clients while the registry gets a new version every
couple of seconds, the first of them tampered (the load goes on until two good ones have come
too). Every request must answer 200 from a version that was
registered (never the tampered one), the served version must move forward to the newest good
one without a restart, and the key must never appear in the server's log. p50/p99 latency are
reported (not asserted: speed targets belong in bench/).

Sizes: RELIABILITY_SOAK_REQUESTS (default 3000), RELIABILITY_SOAK_CONCURRENCY (default 16),
RELIABILITY_SOAK_REGISTER_SECONDS (default 2).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time

import httpx
import numpy as np
import pytest

import reliability_figures as figures
from conftest import ApiServer, register_copy, register_tampered, wait_until
from registry import Registry, version_label

API_KEY = "soak-key-3b9f61d2c7"
REQUESTS = figures.count("RELIABILITY_SOAK_REQUESTS", 3000)
CONCURRENCY = figures.count("RELIABILITY_SOAK_CONCURRENCY", 16)
REGISTER_SECONDS = float(os.environ.get("RELIABILITY_SOAK_REGISTER_SECONDS", "2"))




@pytest.fixture(scope="module")
def soak_server(tmp_path_factory, trained_registry):
    base = tmp_path_factory.mktemp("soak")
    registry = base / "registry"
    registry.mkdir()
    shutil.copytree(trained_registry / "model_v001", registry / "model_v001")
    server = ApiServer(registry, base / "server.log", {"SCORING_API_KEY": API_KEY}, "--reload-seconds", "0.2")
    try:
        server.wait_ready("/health")
        yield server, registry
    finally:
        server.stop()


async def _load(url: str, body: bytes, total: int, concurrency: int, headers: dict[str, str],
                keep_going=lambda: False):
    """Send `total` requests (more while keep_going() says so) from `concurrency` workers.

    Returns (latencies in s, answers).
    """
    latencies: list[float] = []
    answers: list[tuple[int, str | None, str | None, int]] = []
    sent = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total or (keep_going() and sent < total * 10):
            sent += 1
            start = time.perf_counter()
            try:
                response = await client.post(f"{url}/predict", content=body, headers=headers)
            except httpx.HTTPError as exc:  # a failed request is a finding, not a crash of the test
                latencies.append(time.perf_counter() - start)
                answers.append((0, None, f"{type(exc).__name__}: {exc}", 0))
                continue
            latencies.append(time.perf_counter() - start)
            version, results = None, 0
            if response.status_code == 200:
                data = response.json()
                version, results = data.get("model_version"), len(data.get("results", []))
                if response.headers.get("x-model-version") != version:
                    version = f"header {response.headers.get('x-model-version')} != body {version}"
            answers.append((response.status_code, version, None if response.status_code == 200 else response.text,
                            results))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, answers


def test_soak_while_versions_are_registered(soak_server, sample_records):
    server, registry = soak_server
    records = sample_records[:3]
    body = json.dumps({"records": records}).encode()
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    registered = {version_label(v) for v in Registry(registry).versions()}
    tampered: set[str] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def register_every_few_seconds() -> None:
        try:
            while not stop.wait(REGISTER_SECONDS):
                if not tampered:  # first a tampered version: it must never be served
                    tampered.add(version_label(register_tampered(registry)))
                else:
                    registered.add(version_label(register_copy(registry)))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    registrar = threading.Thread(target=register_every_few_seconds, daemon=True)
    started = time.perf_counter()
    registrar.start()
    try:
        # On a fast machine the requests could all be sent before the registrations happen:
        # keep the load on until a tampered and two good versions have been registered under it.
        latencies, answers = asyncio.run(_load(server.url, body, REQUESTS, CONCURRENCY, headers,
                                               keep_going=lambda: len(registered) < 3 and not errors))
    finally:
        stop.set()
        registrar.join(timeout=30)
    elapsed = time.perf_counter() - started
    assert not errors, errors

    failures = [a for a in answers if a[0] != 200 or a[3] != len(records)]
    unknown = [a for a in answers if a[0] == 200 and a[1] not in registered]
    served = sorted({a[1] for a in answers if a[0] == 200 and a[1] in registered})
    ms = np.array(latencies) * 1000
    figures.record("soak", requests=len(answers), failures=len(failures), unknown_versions=len(unknown),
                   concurrency=CONCURRENCY, p50_ms=round(float(np.percentile(ms, 50)), 2),
                   p99_ms=round(float(np.percentile(ms, 99)), 2), max_ms=round(float(ms.max()), 2),
                   seconds=round(elapsed, 1), requests_per_second=round(len(answers) / elapsed, 1),
                   versions_registered=len(registered) - 1 + len(tampered), versions_served=served,
                   tampered_versions=sorted(tampered))
    print(f"\nsoak: {len(answers)} requests at concurrency {CONCURRENCY} in {elapsed:.1f}s, "
          f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, served {served}")

    assert len(answers) >= REQUESTS
    assert not failures, failures[:5]
    assert not unknown, unknown[:5]
    assert not {a[1] for a in answers} & tampered, "a tampered version was served"
    assert len(registered) >= 3 and tampered
    assert len(served) >= 2, served  # the served version moved forward under load

    # After the soak the newest good version is served, never the tampered one.
    newest = max(registered)
    wait_until(lambda: httpx.get(f"{server.url}/ready").json().get("model_version") == newest, 30,
               f"/ready to name {newest}", detail=lambda: httpx.get(f"{server.url}/ready").text)
    log_text = server.log_path.read_text()
    for label in tampered:
        assert f"not serving {label}" in log_text


def test_key_is_never_in_the_server_log(soak_server):
    server, _ = soak_server
    for headers in ({"authorization": f"Bearer {API_KEY}x"}, {"authorization": API_KEY},
                    {"authorization": f"Basic {API_KEY}"}, {"x-api-key": API_KEY}):
        assert httpx.post(f"{server.url}/predict", json={"records": []}, headers=headers).status_code == 401
    assert httpx.get(f"{server.url}/model", headers={"authorization": f"Bearer {API_KEY}"}).status_code == 200
    log_text = server.log_path.read_text()
    assert "POST /predict 401" in log_text and "POST /predict 200" in log_text
    assert API_KEY not in log_text and API_KEY[:8] not in log_text
