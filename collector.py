"""Production data collection: an online deployment's inputs and outputs, kept as Azure keeps them.

The local stand-in for Azure ML's data collector (package azureml-ai-monitoring, the
deployment YAML's `data_collector` section). A helper module: it imports no stage script.

Every scored request can be collected as two JSON lines, one in `model_inputs` (the records
as sent) and one in `model_outputs` (`prediction` and `probability` per record), joined by
the same `correlationid`. They land in Azure's layout, under the collection root:

    modelDataCollector/{endpoint}/{deployment}/{model_inputs|model_outputs}/{yyyy}/{MM}/{dd}/{HH}/{instance}.jsonl

(UTC hours of the request's time). The root is $DATA_COLLECTOR_DIR (default `collected/`)
on the local disk, or the same paths in the blob container `workspaceblobstore` (Azurite
by default; $AZURE_STORAGE_CONNECTION_STRING as for storage.py).

A request never waits for the disk or the network: `collect()` only samples and queues
(a bounded queue; what does not fit is dropped and counted). A background thread writes
the queue every 0.2 s (FLUSH_SECONDS), and `stop()` writes what is left (the app calls it at
shutdown, so SIGTERM loses nothing; a SIGKILL loses at most the last 0.2 s). A write that
fails (full disk, read-only folder, storage unreachable) loses that batch: it is counted and
logged at most once a minute, never raised into the request. online_traffic.py reads the files
back (`read_events`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import orjson

import fileio
import settings

log = logging.getLogger("collector")

ROOT_FOLDER = "modelDataCollector"
INPUTS = "model_inputs"
OUTPUTS = "model_outputs"
COLLECTIONS = (INPUTS, OUTPUTS)
LOCAL_ENDPOINT = "local-endpoint"  # the plain endpoint's names (no --endpoint YAML)
LOCAL_DEPLOYMENT = "default"
BLOB_CONTAINER = "workspaceblobstore"  # the name of the workspace's default datastore in Azure
SPECVERSION = "1.0"
DATACONTENTTYPE = "application/json"
COLLECTDATATYPE = "pandas.core.frame.DataFrame"  # what Azure's collector records for a DataFrame
AGENT = "risk-endpoint-collector/1.0"
DEFAULT_QUEUE_SIZE = 10_000  # requests waiting to be written
FLUSH_SECONDS = 0.2  # small batches: the writer holds the interpreter lock for a few ms at most
FAILURE_LOG_SECONDS = 60.0
APPEND_BLOCK_MAX = 4 * 1024 * 1024  # Azure's limit for one append block


class CollectorError(Exception):
    """A data_collector section or a collection setting the collector cannot use."""


# ----- settings from a deployment YAML ---------------------------------------------------
@dataclass(frozen=True)
class CollectionSettings:
    """Which collections are on and at what sampling rate (a deployment's `data_collector`)."""

    inputs: bool = True
    outputs: bool = True
    sampling_rate: float = 1.0

    def __post_init__(self) -> None:
        rate = self.sampling_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise CollectorError(f"data_collector.sampling_rate must be a number from 0 to 1, got {rate!r}")

    @property
    def enabled(self) -> bool:
        return self.inputs or self.outputs

    @classmethod
    def from_deployment(cls, spec: Mapping[str, Any] | None) -> "CollectionSettings | None":
        """The settings of a deployment YAML's `data_collector` section, or None when it has none."""
        section = (spec or {}).get("data_collector")
        if not section:
            return None
        if not isinstance(section, Mapping):
            raise CollectorError("data_collector must be a mapping with `collections` and `sampling_rate`")
        collections = section.get("collections") or {}
        unknown = sorted(set(collections) - set(COLLECTIONS))
        if unknown:
            raise CollectorError(
                f"data_collector.collections.{unknown[0]} is not collected here: use {' and '.join(COLLECTIONS)}")
        flags = {name: _enabled(name, collections.get(name)) for name in COLLECTIONS}
        return cls(flags[INPUTS], flags[OUTPUTS], section.get("sampling_rate", 1.0))


def _enabled(name: str, collection: Any) -> bool:
    if collection is None:
        return False
    value = collection.get("enabled", "True") if isinstance(collection, Mapping) else collection
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise CollectorError(f"data_collector.collections.{name}.enabled must be 'True' or 'False', got {value!r}")
    return text == "true"


# ----- layout and events -----------------------------------------------------------------
def file_path(endpoint: str, deployment: str, collection: str, when: datetime, instance: str) -> str:
    """The relative path (also the blob name) of the file an event collected at `when` goes to."""
    when = when.astimezone(timezone.utc)
    return (f"{ROOT_FOLDER}/{endpoint}/{deployment}/{collection}/"
            f"{when.year:04d}/{when.month:02d}/{when.day:02d}/{when.hour:02d}/{instance}.jsonl")


def uuid4_strings(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, from one read of the system's random source.

    The same values uuid.uuid4() gives, at a fraction of its cost per id (the writer makes three
    per request).
    """
    raw = bytearray(os.urandom(16 * count))
    out = []
    for i in range(0, len(raw), 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # the RFC 4122 variant
        h = raw[i:i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


_SPARE_UUIDS: list[str] = []
os.register_at_fork(after_in_child=_SPARE_UUIDS.clear)  # a forked child must not hand out its parent's ids


def uuid4_string() -> str:
    """One random (version 4) UUID as text, drawn from ids made 256 at a time (one system call per
    256 ids instead of one per id: the endpoint gives every request an id)."""
    try:
        return _SPARE_UUIDS.pop()
    except IndexError:
        _SPARE_UUIDS.extend(uuid4_strings(256))
        return _SPARE_UUIDS.pop()


# The line's fields, in Azure's order; the constant ones are filled in once per collector and
# collection, the rest per event (bytes formatting: a fraction of building and encoding a dict).
FIELDS = ("specversion", "id", "source", "type", "datacontenttype", "time", "data", "correlationid",
          "xrequestid", "modelversion", "collectdatatype", "agent", "contentrange")


def line_template(endpoint: str, deployment: str, collection: str) -> bytes:
    """The JSON line of one collection with %-slots for id, time, data, correlationid, xrequestid,
    modelversion and the content range."""
    def text(value: str) -> bytes:
        return orjson.dumps(value).replace(b"%", b"%%")

    return (b'{"specversion":' + text(SPECVERSION) + b',"id":"%s","source":'
            + text(f"/onlineEndpoints/{endpoint}/deployments/{deployment}")
            + b',"type":' + text(f"azureml.inference.{collection}")
            + b',"datacontenttype":' + text(DATACONTENTTYPE)
            + b',"time":"%s","data":%s,"correlationid":"%s","xrequestid":%s,"modelversion":%s,"collectdatatype":'
            + text(COLLECTDATATYPE) + b',"agent":' + text(AGENT) + b',"contentrange":"bytes 0-%d/%d"}\n')


def event_line(template: bytes, payload: bytes, *, event_id: str, time_text: str, correlation_id: str,
               request_id: str, model_version: str) -> bytes:
    """One collected line (JSON and a newline) from `line_template`'s template and the rows' JSON."""
    return template % (event_id.encode(), time_text.encode(), payload, correlation_id.encode(),
                       orjson.dumps(request_id), orjson.dumps(model_version), len(payload) - 1, len(payload))


def utc_text(when: datetime) -> str:
    """A time as Azure's collector writes it: UTC, milliseconds, a trailing Z."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_instance() -> str:
    """This process's instance id: the host and the process, so workers never share a file."""
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in os.uname().nodename) or "host"
    return f"{host}-{os.getpid()}"


# ----- where files go --------------------------------------------------------------------
class Sink(Protocol):
    kind: str

    def append(self, path: str, data: bytes) -> None: ...


class LocalSink:
    """Files under a folder on the local disk (appended to; one writer per instance file)."""

    kind = "local"

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else settings.collected_dir()

    def append(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab", buffering=0) as handle:
            start = handle.seek(0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[handle.write(view):]
            except BaseException:
                # A line cut short (a full disk) would run into the next batch's first line: the
                # file goes back to where it ended, so every line in it stays whole.
                with contextlib.suppress(OSError):
                    handle.truncate(start)
                raise

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def list(self, prefix: str) -> list[str]:
        """Relative paths of the files under a folder prefix (sorted)."""
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file()
                      and not p.name.startswith("."))

    def write(self, path: str, data: bytes) -> None:
        """Replace a file atomically (monitor results)."""
        fileio.write_atomic(self.root / path, data)

    def location(self) -> str:
        return str(self.root)


class BlobSink:
    """Append blobs in one container, named by the same relative paths."""

    kind = "blob"

    def __init__(self, connection_string: str | None = None, container: str = BLOB_CONTAINER,
                 timeout: float = 5.0):
        import storage

        self.connection_string = (connection_string or settings.env_str(storage.ENV_CONNECTION)
                                  or storage.AZURITE_CONNECTION_STRING)
        self.container_name = container
        self.timeout = timeout
        self._container = None
        self._created: set[str] = set()

    @property
    def container(self):
        if self._container is None:
            from azure.core.exceptions import ResourceExistsError
            from azure.storage.blob import BlobServiceClient, LinearRetry

            # One quick retry: the collector's next flush comes within a second anyway.
            service = BlobServiceClient.from_connection_string(
                self.connection_string, connection_timeout=self.timeout, read_timeout=self.timeout,
                retry_policy=LinearRetry(backoff=0.2, random_jitter_range=0.1, retry_total=1))
            container = service.get_container_client(self.container_name)
            try:
                container.create_container()
            except ResourceExistsError:
                pass
            self._container = container
        return self._container

    def append(self, path: str, data: bytes) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._append(path, data)
        except ResourceNotFoundError:
            # The container or the blob went away (deleted, or a storage emulator restarted
            # empty): make them again, once.
            self._container = None
            self._created.discard(path)
            self._append(path, data)

    def _append(self, path: str, data: bytes) -> None:
        from azure.core.exceptions import ResourceExistsError

        blob = self.container.get_blob_client(path)
        if path not in self._created:
            try:
                blob.create_append_blob(if_none_match="*")
            except ResourceExistsError:
                pass
            self._created.add(path)
        for chunk in _line_chunks(data, APPEND_BLOCK_MAX):
            blob.append_block(chunk)

    def read(self, path: str) -> bytes:
        return self.container.get_blob_client(path).download_blob().readall()

    def list(self, prefix: str) -> list[str]:
        """Names of the blobs under a folder prefix (sorted)."""
        return sorted(b.name for b in self.container.list_blobs(name_starts_with=prefix.rstrip("/") + "/"))

    def write(self, path: str, data: bytes) -> None:
        """Replace a blob in one call (readers see the old blob or the new one)."""
        self.container.get_blob_client(path).upload_blob(data, overwrite=True)

    def location(self) -> str:
        return f"{self.container.url}"


def _line_chunks(data: bytes, limit: int) -> Iterable[bytes]:
    """`data` in pieces of at most `limit` bytes, cut after a newline where one is in reach."""
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        if end < len(data):
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else end
        yield data[start:end]
        start = end


def get_sink(kind: str | None = None, root: Path | str | None = None) -> LocalSink | BlobSink:
    """The collection store: 'local' (under `root` or $DATA_COLLECTOR_DIR) or 'blob'; default $STORAGE_BACKEND, else local."""
    import storage

    chosen = (kind or settings.env_str(storage.ENV_BACKEND) or "local").strip().lower()
    if chosen == "local":
        return LocalSink(root)
    if chosen == "blob":
        return BlobSink()
    raise CollectorError(f"unknown storage {chosen!r}: choose local or blob")


# ----- the collector ---------------------------------------------------------------------
Rows = Sequence[Any] | Callable[[], Sequence[Any]]
# A queued request: its time, its encoded inputs and outputs (or None), request id, model version.
_Pending = tuple[datetime, bytes | None, bytes | None, str, str]


def _encode(rows: Rows | None) -> bytes | None:
    if rows is None:
        return None
    return orjson.dumps(rows() if callable(rows) else rows, option=orjson.OPT_SERIALIZE_NUMPY)


class DataCollector:
    """Samples, queues and writes one deployment's collected requests (see the module docstring)."""

    def __init__(self, sink: Sink, endpoint: str = LOCAL_ENDPOINT, deployment: str = LOCAL_DEPLOYMENT,
                 collection: CollectionSettings | None = None, *, instance: str | None = None,
                 queue_size: int = DEFAULT_QUEUE_SIZE, flush_seconds: float = FLUSH_SECONDS,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic):
        self.sink = sink
        self.endpoint = endpoint
        self.deployment = deployment
        self.settings = collection or CollectionSettings()
        self.instance = instance or default_instance()
        self.queue_size = queue_size
        self.flush_seconds = flush_seconds
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._templates = {c: line_template(endpoint, deployment, c) for c in COLLECTIONS}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts: Counter[str] = Counter()  # see COUNTERS
        self._failures_unlogged = 0
        self._last_failure_log: float | None = None

    # The counters, by name: requests seen, kept by sampling, dropped (queue full); lines
    # written and lines lost to failed writes, per collection; failed writes.
    COUNTERS = ("requests", "sampled", "dropped", "written_model_inputs", "written_model_outputs",
                "lost_model_inputs", "lost_model_outputs", "write_failures")

    def collect(self, inputs: Rows | None, outputs: Rows | None = None, *,
                request_id: str, model_version: str, when: datetime | None = None) -> bool:
        """Queue one request's rows (never blocks, never raises); True when it was kept.

        Rows are a list of row objects, or a function returning one. A kept request's rows are
        encoded to JSON here: the queue then holds bytes, which the garbage collector never has
        to walk (a second's worth of live row dicts made every collection slower).
        """
        rate = self.settings.sampling_rate
        with self._lock:
            self.counts["requests"] += 1
            if rate <= 0 or (rate < 1 and self._rng.random() >= rate):
                return False
        try:
            item = (when or datetime.now(timezone.utc), _encode(inputs if self.settings.inputs else None),
                    _encode(outputs if self.settings.outputs else None), request_id, model_version)
        except TypeError as exc:  # orjson's JSONEncodeError: rows that are not JSON
            with self._lock:
                self.counts["dropped"] += 1
            log.debug("not collected: %s", exc)
            return False
        with self._lock:
            if len(self._pending) >= self.queue_size:
                self.counts["dropped"] += 1
                return False
            self._pending.append(item)
            self.counts["sampled"] += 1
        return True

    def queued(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write everything queued now; returns the number of lines written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            files: dict[tuple[str, str], list[bytes]] = {}
            paths: dict[tuple[str, int, int, int, int], str] = {}  # one path per collection and UTC hour
            ids = iter(uuid4_strings(3 * len(batch)))
            for moment, inputs, outputs, request_id, model_version in batch:
                correlation = next(ids)
                when = moment.astimezone(timezone.utc)
                stamp = utc_text(when)
                for collection, payload in ((INPUTS, inputs), (OUTPUTS, outputs)):
                    event_id = next(ids)
                    if payload is None:
                        continue
                    line = event_line(self._templates[collection], payload, event_id=event_id, time_text=stamp,
                                      correlation_id=correlation, request_id=request_id, model_version=model_version)
                    key = (collection, when.year, when.month, when.day, when.hour)
                    path = paths.get(key)
                    if path is None:
                        path = paths[key] = file_path(self.endpoint, self.deployment, collection, when, self.instance)
                    files.setdefault((collection, path), []).append(line)
            written = 0
            for (collection, path), lines in files.items():
                try:
                    self.sink.append(path, b"".join(lines))
                except Exception as exc:  # a collection problem must never reach a request
                    self._failed(collection, path, len(lines), exc)
                else:
                    self.counts[f"written_{collection}"] += len(lines)
                    written += len(lines)
            return written

    def _failed(self, collection: str, path: str, lines: int, exc: BaseException) -> None:
        self.counts["write_failures"] += 1
        self.counts[f"lost_{collection}"] += lines
        self._failures_unlogged += 1
        now = self._clock()
        if self._last_failure_log is None or now - self._last_failure_log >= FAILURE_LOG_SECONDS:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("data collection for %s/%s cannot write %s (%s: %s); %d failed writes since the last "
                        "message, %d lines lost in all; requests are not affected", self.endpoint,
                        self.deployment, path, type(exc).__name__, first, self._failures_unlogged,
                        self.counts["lost_model_inputs"] + self.counts["lost_model_outputs"])
            self._last_failure_log = now
            self._failures_unlogged = 0

    # ----- the background writer ---------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name=f"collector-{self.deployment}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # a bug here must not end collection silently for the process's life
                log.exception("data collection flush failed")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the writer and write what is still queued."""
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()

    def stats(self) -> dict[str, int]:
        """The counters (COUNTERS) and the current queue length."""
        return {**{name: int(self.counts[name]) for name in self.COUNTERS}, "queued": self.queued()}
