"""The batch scorer's second engine: score a CSV file with Apache Spark (PySpark).

Reads a raw CSV (`--input`) with Spark and writes the same curated file as batch_score.py's
streaming engine (`--output`): the input's columns with their original text, then
`prediction`, `score` and `model_version`, one header, rows in input order. Prints the same
JSON summary on stdout.

    python spark_engine.py --input raw/new_data_20261126.csv --output curated/predictions_20261126.csv
    python batch_score.py --engine spark --input raw/new_data_20261126.csv --output out.csv
    python pipeline_run_batch.py --date 2026-11-26 --engine spark --spark-master 'local[2]'

How: Spark reads the file as text columns and splits it into partitions; the registered model
is broadcast once; each partition goes through `mapInArrow` to batch_score.score_batch (the
streaming engine's own validation and score.ModelService, not a second implementation),
renders its rows with csv_rows (the streaming engine's CSV text) and ends with one line
holding its partial summary and drift profile. Spark writes the partitions into a hidden
temporary folder next to the output; the driver then merges the partials (batch summary,
monitoring.DriftAccumulator) and assembles header + partitions, in order, into one file,
atomically (storage.write_file; for a URI, a hidden name then a rename). A killed run leaves only hidden `.NAME.*.tmp` entries, which the pipeline's next run of that
date removes. A bad cell fails the run naming the file, row, column and value, with no output.

Storage: local paths, or URIs through the session's Hadoop file systems (abfss:// on Azure;
spark_files.py); the project's blob zones (--storage blob) are refused, see BLOB_REFUSED.
Spark's logging is set to errors only (spark/log4j2.properties) and its progress bars are off.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

import batch_score
import csv_rows
import monitoring
import settings
import spark_files
import storage
from exact_sum import ExactSum
from registry import RegistryError
from score import ModelService

log = logging.getLogger("spark_engine")

ENV_MASTER = "SPARK_MASTER"
DEFAULT_MASTER = "local[*]"
LOG4J_CONFIG = settings.ROOT / "spark" / "log4j2.properties"
BLOB_REFUSED = (
    "--engine spark does not read the blob zones: Spark reaches Blob Storage through Hadoop's hadoop-azure "
    "connector, which pyspark's wheel does not include; use the default engine with --storage blob here, and on "
    "Azure give spark_engine.py abfss:// URIs on Synapse, Databricks or Azure ML serverless Spark (docs/spark.md)"
)
# The last line of every partition's output: this mark, then its Partial, pickled and base64-encoded.
PARTIAL_MARK = b"\x00partial:"
HEADER_BYTES = 1 << 22  # the header line is read from the file's first 4 MiB
# The JVM prints this on every start (Spark enables the incubating vector API); it is not news.
_JVM_NOISE = (b"WARNING: Using incubator modules",)
# pyspark 4.3 warns about pandas 3 on the driver and in every worker; the engine hands Arrow
# batches to the scorer and never converts through pandas.
_PANDAS_NOTICE = "PySpark does not yet fully support pandas"


def spark_master(value: str | None = None) -> str:
    return value or os.environ.get(ENV_MASTER) or DEFAULT_MASTER


# ----- the session ----------------------------------------------------------------------------------
def _pump_stderr(stream, sink) -> None:
    for line in iter(stream.readline, b""):
        if not line.startswith(_JVM_NOISE):
            sink.write(line)
            sink.flush()


def start_session(master: str | None = None, conf: dict[str, str] | None = None):
    """A new quiet SparkSession (errors only, no progress bars, no UI) running the project's Python."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings_ = {
        "spark.master": spark_master(master),
        "spark.app.name": "batch-score",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
        "spark.pyspark.python": os.environ["PYSPARK_PYTHON"],
        "spark.executorEnv.PYTHONPATH": os.pathsep.join(filter(None, [str(settings.ROOT), os.environ.get("PYTHONPATH")])),
        "spark.executorEnv.PYTHONWARNINGS": ",".join(
            filter(None, [os.environ.get("PYTHONWARNINGS"), f"ignore:{_PANDAS_NOTICE}:FutureWarning"])),
        "spark.sql.caseSensitive": "true",  # CSV headers may hold names that differ only in case
        **(conf or {}),
    }
    spark_conf = SparkConf()
    for key, value in settings_.items():
        spark_conf.set(key, value)
    gateway = launch_gateway(spark_conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(target=_pump_stderr, args=(gateway.proc.stderr, sys.stderr.buffer), daemon=True).start()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_NOTICE)
        SparkContext(conf=spark_conf, gateway=gateway)
        return SparkSession.builder.getOrCreate()


class SparkEngine:
    """Scores files on a SparkSession: the active one (a notebook's, a test's), else one it starts.

    The session starts on first use and is stopped on exit only if this engine started it.
    """

    def __init__(self, master: str | None = None, session: Any = None):
        self.master = master
        self._session = session
        self._owned = False

    @property
    def session(self):
        if self._session is None:
            from pyspark.sql import SparkSession

            self._session = SparkSession.getActiveSession()
            if self._session is None:
                started = time.perf_counter()
                self._session = start_session(self.master)
                self._owned = True
                log.info("Spark %s started on %s in %.1f s", self._session.version,
                         self._session.sparkContext.master, time.perf_counter() - started)
        return self._session

    def __enter__(self) -> "SparkEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned and self._session is not None:
            self._session.stop()
        self._session, self._owned = None, False

    def score_named(self, store, raw: str, curated: str, service: ModelService, *,
                    monitor: monitoring.DriftMonitor | None = None, block_size: int | None = None) -> batch_score.BatchSummary:
        """Score the raw zone's `raw` into the curated zone's `curated` (local zones only)."""
        check_storage(store)
        return self.score_file(store.path(storage.RAW, raw), store.path(storage.CURATED, curated), service,
                               monitor=monitor)

    def score_file(self, input_path: str | Path, output_path: str | Path, service: ModelService, *,
                   monitor: monitoring.DriftMonitor | None = None, block_size: int | None = None) -> batch_score.BatchSummary:
        """Score a CSV into a CSV with Spark (paths or URIs); `block_size` is the streaming engine's, unused."""
        return score_file(self.session, input_path, output_path, service, monitor=monitor)


def check_storage(store) -> None:
    """A StorageError (BLOB_REFUSED) unless `store` is the local disk."""
    if not isinstance(store, storage.LocalStorage):
        raise storage.StorageError(BLOB_REFUSED)


# ----- one partition (runs in Spark's Python workers) -----------------------------------------------
@dataclass
class Partial:
    """What one partition saw: its row count and score statistics, its drift profile, its first error."""

    partition: int
    rows: int = 0
    positives: int = 0
    low: float = np.inf
    high: float = -np.inf
    total: ExactSum = field(default_factory=ExactSum)
    drift: monitoring.DriftAccumulator | None = None
    bad_cell: tuple[int, str, str, str] | None = None  # (row within the partition, column, value, reason)
    error: str | None = None

    def add(self, chunk: batch_score.ScoredChunk) -> None:
        self.rows += len(chunk.scores)
        self.positives += int(chunk.predictions.sum())
        self.low, self.high = min(self.low, float(chunk.scores.min())), max(self.high, float(chunk.scores.max()))
        self.total.add(chunk.scores)
        if self.drift is not None:
            self.drift.update(chunk.matrix, chunk.scores)


_worker_services: dict[str, ModelService] = {}


def _service(job: dict[str, Any]) -> ModelService:
    """The job's model, built once per Python worker (workers are reused across tasks)."""
    key = job["key"]
    if key not in _worker_services:
        _worker_services.clear()
        _worker_services[key] = ModelService(job["model"], job["version"], job["features"], job["metadata"])
    return _worker_services[key]


def _as_text(batch):
    """Spark's batch as the streaming engine sees a block: string columns, an empty cell as ''."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [pc.fill_null(c.cast(pa.string()), "") if c.null_count else c.cast(pa.string()) for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def score_partition(job_broadcast, batches: Iterator[Any]) -> Iterator[Any]:
    """mapInArrow's function: score one partition's batches, yield CSV text then the Partial line."""
    import pyarrow as pa
    from pyspark import TaskContext

    job = job_broadcast.value
    service = _service(job)
    partition = TaskContext.get().partitionId()
    partial = Partial(partition)
    if job["profile"] is not None:
        partial.drift = monitoring.DriftAccumulator(job["profile"], seed=partition)
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            chunk = batch_score.score_batch(_as_text(batch), job["positions"], service, job["source"], partial.rows)
            partial.add(chunk)
            text = io.BytesIO()
            csv_rows.write_rows(chunk.table, text, job["text_columns"])
            # Spark's text writer ends every value with a newline: hand it the block without its last one.
            yield pa.RecordBatch.from_arrays([pa.array([text.getvalue()[:-1].decode("utf-8")])], names=["value"])
    except batch_score.BatchRowError as exc:
        partial.bad_cell = (exc.row, exc.column, exc.value, exc.reason)
    except (batch_score.BatchError, ValueError) as exc:
        partial.error = str(exc)
    line = PARTIAL_MARK + base64.b64encode(pickle.dumps(partial, protocol=pickle.HIGHEST_PROTOCOL))
    yield pa.RecordBatch.from_arrays([pa.array([line.decode("ascii")])], names=["value"])


# ----- the driver ----------------------------------------------------------------------------------
def score_file(spark, input_path: str | Path, output_path: str | Path, service: ModelService, *,
               monitor: monitoring.DriftMonitor | None = None) -> batch_score.BatchSummary:
    """Score `input_path` into `output_path` (written atomically) with Spark; returns the summary.

    Each is a local path or a URI that the session's Hadoop file systems read (spark_files).
    """
    started = time.perf_counter()
    source = str(input_path)
    files = spark_files.for_location(spark, output_path)
    reader = spark_files.for_location(spark, input_path)
    names = batch_score.read_header(io.BytesIO(reader.head(input_path, HEADER_BYTES)), source)
    batch_score.check_columns(names, service.features, source)
    scratch = spark_files.sibling(output_path, f".{spark_files.name_of(output_path)}.spark-{uuid.uuid4().hex}.tmp")
    try:
        _run_job(spark, reader.spark_path(input_path), files.spark_path(scratch), names, service, monitor, source)
        parts = [(part, *_read_partial(files, part, size)) for part, size in files.parts(scratch)]
        partials = sorted((partial for _, partial, _ in parts), key=lambda p: p.partition)
        _raise_first_error(partials, source)
        files.assemble(output_path, csv_rows.header_line(names + list(batch_score.OUTPUT_COLUMNS)),
                       [(part, rows_end) for part, _, rows_end in parts])
    finally:
        files.remove_tree(scratch)
    if monitor is not None:
        for partial in partials:
            if partial.drift is not None:
                monitor.merge(partial.drift)
    return _summary(partials, source, str(output_path), service, time.perf_counter() - started)


def _job(input_path: str, names: list[str], service: ModelService, monitor) -> dict[str, Any]:
    profile = monitor.accumulator.profile if monitor is not None and monitor.accumulator is not None else None
    return {
        "key": uuid.uuid4().hex, "model": service.model, "version": service.version,
        "features": service.features, "metadata": service.metadata, "profile": profile,
        "positions": [names.index(f) for f in service.features], "source": str(input_path),
        "text_columns": csv_rows.text_columns(names, service.schema),
    }


def _run_job(spark, input_uri: str, scratch_uri: str, names: list[str], service: ModelService, monitor,
             source: str) -> None:
    """Run the Spark job: `input_uri` scored into part files (one per partition) under `scratch_uri`."""
    from pyspark.errors import PySparkException
    from pyspark.sql.types import StringType, StructField, StructType
    from py4j.protocol import Py4JError

    spark.conf.set("spark.sql.caseSensitive", "true")
    schema = StructType([StructField(name, StringType()) for name in names])
    job = spark.sparkContext.broadcast(_job(source, names, service, monitor))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PANDAS_NOTICE)
            frame = (spark.read.schema(schema).option("header", True).option("escape", '"')
                     .option("mode", "FAILFAST").option("encoding", "UTF-8").csv(input_uri))
            scored = frame.mapInArrow(lambda batches: score_partition(job, batches), "value string")
            scored.write.text(scratch_uri)
    except (PySparkException, Py4JError) as exc:
        raise batch_score.BatchError(f"{source}: {_spark_reason(exc)}") from None
    finally:
        job.destroy()


def _spark_reason(exc: Exception) -> str:
    """One line from a Spark failure: the malformed record or the first line of the cause."""
    text = str(exc)
    if "MALFORMED_RECORD_IN_PARSING" in text or "Malformed" in text:
        record = text.split("Malformed records are detected in record parsing", 1)[-1]
        return "malformed row (not as many values as header columns, or a broken quote): Spark read " + \
            " ".join(record.split())[:160]
    # A Python worker's failure: its traceback's last line (the exception) says the most.
    raised = [line for line in re.findall(r"^(\w[\w.]*(?:Error|Exception)\b.*)$", text, re.MULTILINE)
              if not line.startswith(("org.", "java.", "py4j.", "scala."))]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = raised[-1] if raised else lines[0] if lines else type(exc).__name__
    return "Spark job failed: " + reason[:300]


def _read_partial(files, part: str, size: int) -> tuple[Partial, int]:
    """The Partial on the last line of a part file, and the offset where that line starts."""
    window = 1 << 16
    while True:
        start = max(0, size - window)
        tail = files.read_range(part, start, size - start)
        at = tail.rfind(b"\n" + PARTIAL_MARK)
        if at >= 0 or start == 0:
            break
        window *= 8
    begin = at + 1 if at >= 0 else 0
    if not tail.startswith(PARTIAL_MARK, begin):
        raise batch_score.BatchError(f"{part}: a partition's output has no partial summary (an incomplete Spark job?)")
    return pickle.loads(base64.b64decode(tail[begin + len(PARTIAL_MARK):])), start + begin


def _raise_first_error(partials: list[Partial], source: str) -> None:
    """The earliest partition's error, its row counted from the file's first data row."""
    before = 0
    for partial in partials:
        if partial.bad_cell is not None:
            row, column, value, reason = partial.bad_cell
            raise batch_score.BatchRowError(source, before + row, column, value, reason)
        if partial.error is not None:
            raise batch_score.BatchError(partial.error)
        before += partial.rows


def _summary(partials: list[Partial], source: str, output: str, service: ModelService,
             duration: float) -> batch_score.BatchSummary:
    """The merged partials as the streaming engine's summary (the same numbers, exactly)."""
    rows = sum(p.rows for p in partials)
    total = ExactSum()
    for partial in partials:
        total.merge(partial.total)
    return batch_score.BatchSummary(
        input=source, output=output, row_count=rows,
        min_score=min(p.low for p in partials) if rows else None,
        max_score=max(p.high for p in partials) if rows else None,
        mean_score=total.mean(rows), predicted_positive=sum(p.positives for p in partials),
        model_version=service.version, duration_s=round(duration, 3),
    )


# ----- CLI (the entry point of a Spark job on Azure) ------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score one CSV file with Apache Spark: the same output as batch_score.py, written atomically.",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--input", required=True, help="CSV to score: a local path or a URI (abfss://..., file://...)")
    parser.add_argument("--output", required=True, help="CSV to write: a local path or a URI")
    parser.add_argument("--registry-dir", type=Path, default=None,
                        help="registry folder (default: $LOCAL_REGISTRY_DIR or ./local_registry)")
    parser.add_argument("--model-version", default="latest", help="latest, 2, or v002")
    parser.add_argument("--model-dir", default=None,
                        help="a registered model's folder (a path or a URI), instead of the registry")
    parser.add_argument("--spark-master", default=None,
                        help=f"Spark master (default: ${ENV_MASTER}, else {DEFAULT_MASTER}; ignored inside a running session)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with SparkEngine(args.spark_master) as engine:
            if args.model_dir is None:
                service = ModelService.from_registry(args.registry_dir, args.model_version)
            elif spark_files.is_uri(args.model_dir):  # copied to the driver's disk, then loaded as usual
                copy = spark_files.HadoopFiles(engine.session).local_copy(args.model_dir)
                try:
                    service = ModelService.from_model_dir(copy)
                finally:
                    shutil.rmtree(copy, ignore_errors=True)
            else:
                service = ModelService.from_model_dir(args.model_dir)
            summary = engine.score_file(args.input, args.output, service)
    except (RegistryError, storage.StorageError, batch_score.BatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Spark pickles score_partition and Partial by
    # reference, and its Python workers can import `spark_engine` but not this script's __main__.
    import spark_engine

    raise SystemExit(spark_engine.main())
