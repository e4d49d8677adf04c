"""The online endpoint's collected traffic read back, summarised, and the monitor's kept results.

A helper module (it imports no stage script): collector.py writes the requests, monitor.py
reads a window of them (`read_events`) and keeps one JSON result per run here (`keep_result`),
and the report reads both back (`summarize`): requests and records per deployment per hour, the score distribution per
deployment, and each deployment's latest monitor run.

    store = collector.get_sink("local")
    traffic = online_traffic.summarize(store, since=now - timedelta(days=7))
    traffic.hours        # [{"deployment": "risk-endpoint/blue", "hour": "2026-12-01 05:00", "requests": 2, "records": 400}]
    traffic.scores       # [{"deployment": ..., "records": 400, "mean_score": 0.41, "low": ..., "medium": ..., "high": ...}]
    traffic.monitors     # [{"deployment": ..., "run_at": ..., "data_drift": "alert", ...}]
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

import collector

log = logging.getLogger("online_traffic")

RESULT_FOLDER = "modelMonitoring"
SIGNALS = ("data_drift", "prediction_drift", "data_quality")


# ----- reading a window back ------------------------------------------------------------------
def read_events(sink: Any, endpoint: str, deployment: str, collection: str,
                start: datetime, end: datetime) -> tuple[list[dict[str, Any]], int]:
    """The events of one collection with start <= time < end, and the count of unreadable lines.

    Only the hour folders that overlap the window are read; a line cut short by a writer
    that is still appending, or damaged, is skipped and counted.
    """
    prefix = f"{collector.ROOT_FOLDER}/{endpoint}/{deployment}/{collection}"
    first = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    events: list[dict[str, Any]] = []
    skipped = 0
    for path in sink.list(prefix):
        hour = _hour_of(path[len(prefix) + 1:])
        if hour is None or hour < first or hour >= end:
            continue
        for line in sink.read(path).splitlines():
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
                when = parse_time(event["time"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                skipped += 1
                continue
            if start <= when < end:
                events.append(event)
    events.sort(key=lambda e: e["time"])
    return events, skipped


def _hour_of(rest: str) -> datetime | None:
    """The UTC hour of a path's `yyyy/MM/dd/HH/file` tail, else None."""
    parts = rest.split("/")
    if len(parts) != 5 or not all(p.isdigit() for p in parts[:4]):
        return None
    try:
        return datetime(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), tzinfo=timezone.utc)
    except ValueError:
        return None


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (a trailing Z allowed) as an aware UTC datetime; naive means UTC."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


# ----- the monitor's results ---------------------------------------------------------------------
def result_path(endpoint: str, deployment: str, run_at: str) -> str:
    stamp = run_at.replace(":", "").replace("-", "").replace(".", "")
    return f"{RESULT_FOLDER}/{endpoint}/{deployment}/{stamp}.json"


def keep_result(store: Any, result: dict[str, Any]) -> str:
    """Store a monitor run's result beside the collected data; returns its relative path."""
    path = result_path(result["endpoint"], result["deployment"], result["run_at"])
    store.write(path, json.dumps(result, indent=1).encode() + b"\n")
    return path


def latest_result(store: Any, endpoint: str, deployment: str) -> dict | None:
    """The newest kept monitor result of a deployment, or None."""
    names = [n for n in store.list(f"{RESULT_FOLDER}/{endpoint}/{deployment}") if n.endswith(".json")]
    return json.loads(store.read(names[-1])) if names else None


# ----- the traffic ---------------------------------------------------------------------------------
@dataclass
class Traffic:
    hours: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    monitors: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.hours or self.monitors)


def summarize(store: Any, since: datetime, medium: float = 0.3, high: float = 0.7) -> Traffic:
    """Every deployment's collected requests from `since` on, and its latest monitor run."""
    hourly: dict[tuple[str, str], dict[str, int]] = {}
    scores: dict[str, list[float]] = {}
    deployments: set[tuple[str, str]] = set()
    for path in store.list(collector.ROOT_FOLDER):
        parts = path.split("/")
        if len(parts) != 9 or parts[3] not in collector.COLLECTIONS or not all(p.isdigit() for p in parts[4:8]):
            continue
        endpoint, deployment, collection = parts[1], parts[2], parts[3]
        hour = datetime(*map(int, parts[4:8]), tzinfo=timezone.utc)
        if hour < since.replace(minute=0, second=0, microsecond=0):
            continue
        deployments.add((endpoint, deployment))
        name = f"{endpoint}/{deployment}"
        for line in store.read(path).splitlines():
            try:
                rows = orjson.loads(line).get("data") or []
            except (orjson.JSONDecodeError, AttributeError):
                continue  # a line still being written
            if collection == collector.INPUTS:
                counts = hourly.setdefault((name, f"{hour:%Y-%m-%d %H}:00"), {"requests": 0, "records": 0})
                counts["requests"] += 1
                counts["records"] += len(rows)
            else:
                scores.setdefault(name, []).extend(
                    float(r["probability"]) for r in rows if isinstance(r, dict) and _number(r.get("probability")))
    traffic = Traffic()
    traffic.hours = [{"deployment": d, "hour": h, **c} for (d, h), c in sorted(hourly.items())]
    for name, values in sorted(scores.items()):
        array = np.asarray(values)
        traffic.scores.append({"deployment": name, "records": int(array.size), "mean_score": float(array.mean()),
                               "low": float(np.mean(array < medium)),
                               "medium": float(np.mean((array >= medium) & (array < high))),
                               "high": float(np.mean(array >= high))})
    for endpoint, deployment in sorted(deployments | _monitored(store)):
        kept = latest_result(store, endpoint, deployment)
        if kept is not None:
            traffic.monitors.append({"deployment": f"{endpoint}/{deployment}", "run_at": kept["run_at"],
                                     "window": f"{kept['window_start']} to {kept['window_end']}",
                                     "records": kept["records"],
                                     **{s: kept["status"].get(s) or "-" for s in SIGNALS}})
    return traffic


def _monitored(store: Any) -> set[tuple[str, str]]:
    found = set()
    for path in store.list(RESULT_FOLDER):
        parts = path.split("/")
        if len(parts) == 4:
            found.add((parts[1], parts[2]))
    return found


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
