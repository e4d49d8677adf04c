"""The online endpoint's Prometheus metrics (prometheus-client), served by GET /metrics.

    scoring_requests_total{deployment, code, mirror}   answers by deployment and status; mirror="true"
                                                        for mirrored copies (their answers are discarded)
    scoring_request_duration_seconds{deployment}       time to answer a caller (histogram; live requests)
    scoring_records_total{deployment, mirror}          records scored
    scoring_mirror_dropped_total{deployment}           mirrored copies dropped because the queue was full
    scoring_requests_in_flight{deployment}             requests being handled now (read at scrape time)
    data_collector_*                                   the data collectors' counters (endpoint_collection.py)

Requests no deployment answers (404 from the routing rules) count under deployment="none".
Each app has its own registry (never the process-wide default), and each worker process its own
counters: with --workers N, a scrape reads the worker that took the connection (see
docs/online-endpoint.md).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

NO_DEPLOYMENT = "none"
# Latency buckets for a local endpoint: most answers take about a millisecond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The counters of one app; the children of each label set are kept, so counting is a dict lookup."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *extra: Any):
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter("scoring_requests", "answers by deployment, status code and mirror",
                                 ["deployment", "code", "mirror"], registry=self.registry)
        self._duration = Histogram("scoring_request_duration_seconds", "time to answer a caller, by deployment",
                                   ["deployment"], buckets=BUCKETS, registry=self.registry)
        self._records = Counter("scoring_records", "records scored, by deployment and mirror",
                                ["deployment", "mirror"], registry=self.registry)
        self._dropped = Counter("scoring_mirror_dropped", "mirrored copies dropped (queue full), by deployment",
                                ["deployment"], registry=self.registry)
        self._children: dict[tuple, Any] = {}
        for collector in extra:
            self.registry.register(collector)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def answered(self, deployment: str, code: int, seconds: float, records: int = 0) -> None:
        """A live answer: its status, how long it took, how many records it scored (200 only)."""
        self._child(self._requests, deployment, str(code), "false").inc()
        self._child(self._duration, deployment).observe(seconds)
        if records:
            self._child(self._records, deployment, "false").inc(records)

    def mirrored(self, deployment: str, code: int, records: int = 0) -> None:
        self._child(self._requests, deployment, str(code), "true").inc()
        if records:
            self._child(self._records, deployment, "true").inc(records)

    def dropped(self, deployment: str) -> None:
        self._child(self._dropped, deployment).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class InFlight:
    """A prometheus-client collector: each deployment's requests in flight, read when scraped (no per-request cost)."""

    def __init__(self, deployments: Any):
        self._deployments = deployments  # {name: serving.Deployment}

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily("scoring_requests_in_flight", "requests being handled now, by deployment",
                                  labels=["deployment"])
        for name, deployment in self._deployments.items():
            gauge.add_metric([name], deployment.in_flight)
        yield gauge

    def describe(self):
        return []
