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

from bisect import bisect_left
from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

NO_DEPLOYMENT = "none"
# Latency buckets for a local endpoint: most answers take about a millisecond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The counters of one app, kept as plain numbers and turned into Prometheus families when
    scraped (a prometheus-client custom collector). Counting a request is a few dict and list
    updates on the event loop, the only place that counts; prometheus-client's own Counter and
    Histogram take a lock per update and walk the buckets in Python (a tenth of a one-record
    request's time)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *extra: Any):
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)  # (deployment, code, mirror)
        self._records: dict[tuple[str, str], int] = defaultdict(int)  # (deployment, mirror)
        self._dropped: dict[str, int] = defaultdict(int)
        # by deployment: [count in each bucket (the last one past BUCKETS[-1]), sum of seconds]
        self._duration: dict[str, list[Any]] = {}
        self.registry.register(self)
        for collector in extra:
            self.registry.register(collector)

    def answered(self, deployment: str, code: int, seconds: float, records: int = 0) -> None:
        """A live answer: its status, how long it took, how many records it scored (200 only)."""
        self._requests[deployment, str(code), "false"] += 1
        histogram = self._duration.get(deployment)
        if histogram is None:
            histogram = self._duration[deployment] = [[0] * (len(BUCKETS) + 1), 0.0]
        histogram[0][bisect_left(BUCKETS, seconds)] += 1  # le: a value on a bound counts in that bucket
        histogram[1] += seconds
        if records:
            self._records[deployment, "false"] += records

    def mirrored(self, deployment: str, code: int, records: int = 0) -> None:
        self._requests[deployment, str(code), "true"] += 1
        if records:
            self._records[deployment, "true"] += records

    def dropped(self, deployment: str) -> None:
        self._dropped[deployment] += 1

    def collect(self):
        """The families, read when /metrics is scraped."""
        requests = CounterMetricFamily("scoring_requests", "answers by deployment, status code and mirror",
                                       labels=["deployment", "code", "mirror"])
        for labels, value in list(self._requests.items()):
            requests.add_metric(labels, value)
        duration = HistogramMetricFamily("scoring_request_duration_seconds", "time to answer a caller, by deployment",
                                         labels=["deployment"])
        for deployment, (counts, total) in list(self._duration.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*map(floatToGoString, BUCKETS), "+Inf"), counts):
                cumulative += count
                buckets.append((bound, cumulative))
            duration.add_metric([deployment], buckets, total)
        records = CounterMetricFamily("scoring_records", "records scored, by deployment and mirror",
                                      labels=["deployment", "mirror"])
        for labels, value in list(self._records.items()):
            records.add_metric(labels, value)
        dropped = CounterMetricFamily("scoring_mirror_dropped", "mirrored copies dropped (queue full), by deployment",
                                      labels=["deployment"])
        for deployment, value in list(self._dropped.items()):
            dropped.add_metric([deployment], value)
        return [requests, duration, records, dropped]

    def describe(self):
        return []

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
