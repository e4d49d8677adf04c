"""The online endpoint's production data collection: which deployments collect, and each request's id.

A deployment collects when its YAML's `data_collector` section turns a collection on (as on
Azure); the plain endpoint (no endpoint YAML) collects when started with `--collect-data`
($SCORING_COLLECT_DATA), as endpoint `local-endpoint`, deployment `default`. Files go where
collector.py puts them ($DATA_COLLECTOR_DIR, or blob storage with $STORAGE_BACKEND=blob).

Every /predict answer carries `x-request-id`: the caller's own header when it sent one (Azure
passes it through), else a new id. The collected lines keep it as `xrequestid`.

    collection = Collection.for_endpoint(endpoint, collect_plain=config.collect_data)
    collection.start()                       # lifespan start; collection.stop() flushes at shutdown
    record = collection.recorder(deployment.name, request_id, service.version)   # None: not collected
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable, Sequence

import collector
from collector import CollectionSettings, DataCollector

log = logging.getLogger("app_score_api")

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is kept when it is short printable text; anything else gets a new id.
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")

Recorder = Callable[[Sequence[Any], Sequence[int] | None, Sequence[float] | None], None]


def request_id(headers: Any) -> str:
    """The request's x-request-id if it sent a usable one, else a new UUID."""
    given = headers.get(REQUEST_ID_HEADER)
    return given if given and _REQUEST_ID.fullmatch(given) else collector.uuid4_string()


class Collection:
    """The endpoint's data collectors, by deployment name."""

    def __init__(self, collectors: dict[str, DataCollector] | None = None):
        self.collectors = dict(collectors or {})

    @classmethod
    def for_endpoint(cls, endpoint: Any, collect_plain: bool = False, sink: Any = None) -> "Collection":
        """One collector per deployment whose YAML collects; the plain endpoint's with `collect_plain`."""
        spec = getattr(endpoint, "spec", None)
        found: dict[str, DataCollector] = {}
        if spec is None:
            if collect_plain:
                for name in endpoint.deployments:
                    found[name] = DataCollector(sink or collector.get_sink(), collector.LOCAL_ENDPOINT, name)
            return cls(found)
        for name, deployment in spec.deployments.items():
            settings = CollectionSettings.from_deployment({"data_collector": deployment.data_collector})
            if settings is not None and settings.enabled:
                found[name] = DataCollector(sink or collector.get_sink(), spec.name, name, settings)
        return cls(found)

    def __iter__(self) -> Iterable[DataCollector]:
        return iter(list(self.collectors.values()))

    def start(self) -> None:
        for name, c in self.collectors.items():
            c.start()
            where = getattr(c.sink, "root", None) or c.sink.kind
            log.info("collecting %s's inputs and outputs (sampling %g) into %s", name, c.settings.sampling_rate, where)

    def stop(self) -> None:
        """Stop the writers and write what is still queued (called at shutdown: SIGTERM loses nothing)."""
        for c in self.collectors.values():
            try:
                c.stop()
            except Exception:  # one deployment's problem must not keep the others' data unwritten
                log.exception("data collection for %s could not finish writing", c.deployment)

    def recorder(self, deployment: str, rid: str, model_version: str) -> Recorder | None:
        """What /predict calls with a request's inputs and, when scored, its predictions; None when not collected."""
        c = self.collectors.get(deployment)
        if c is None:
            return None

        def record(inputs: Sequence[Any], predictions: Sequence[int] | None,
                   probabilities: Sequence[float] | None) -> None:
            outputs = None
            if predictions is not None and probabilities is not None:
                def outputs() -> list[dict[str, Any]]:
                    return [{"prediction": p, "probability": q} for p, q in zip(predictions, probabilities)]
            c.collect(inputs, outputs, request_id=rid, model_version=model_version)

        return record

    def exporter(self) -> "MetricsExporter":
        """The collectors' counters for a prometheus-client registry."""
        return MetricsExporter(lambda: list(self.collectors.values()))


# ----- Prometheus ------------------------------------------------------------------------
class MetricsExporter:
    """A prometheus-client collector over some DataCollectors: `registry.register(MetricsExporter(...))`."""

    def __init__(self, collectors: Callable[[], Iterable[DataCollector]] | Iterable[DataCollector]):
        self._collectors = collectors

    def _each(self) -> list[DataCollector]:
        found = self._collectors() if callable(self._collectors) else self._collectors
        return list(found)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["endpoint", "deployment"]
        requests = CounterMetricFamily("data_collector_requests", "requests seen by the data collector, by outcome",
                                       labels=labels + ["outcome"])
        lines = CounterMetricFamily("data_collector_lines", "collected lines, written or lost to a failed write",
                                    labels=labels + ["collection", "outcome"])
        failures = CounterMetricFamily("data_collector_write_failures", "writes of collected data that failed",
                                       labels=labels)
        queued = GaugeMetricFamily("data_collector_queue_length", "requests waiting to be written", labels=labels)
        for c in self._each():
            base = [c.endpoint, c.deployment]
            s = c.stats()
            requests.add_metric(base + ["sampled"], s["sampled"])
            requests.add_metric(base + ["dropped"], s["dropped"])
            requests.add_metric(base + ["not_sampled"], s["requests"] - s["sampled"] - s["dropped"])
            for collection in collector.COLLECTIONS:
                lines.add_metric(base + [collection, "written"], s[f"written_{collection}"])
                lines.add_metric(base + [collection, "lost"], s[f"lost_{collection}"])
            failures.add_metric(base, s["write_failures"])
            queued.add_metric(base, s["queued"])
        yield from (requests, lines, failures, queued)

    def describe(self):
        return []  # registered without a describe-time collect (the collectors may not exist yet)
