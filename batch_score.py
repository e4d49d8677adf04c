"""Score one CSV file with a registered model version, streaming it in chunks.

Reads a raw file (`raw/new_data_YYYYMMDD.csv`, or any CSV given by --input) and writes the
curated file (`curated/predictions_YYYYMMDD.csv`, or --output): the input's columns in
their order with their original text, then `prediction` (0/1), `score` (the probability
of class 1) and `model_version`. Features are taken by name, whatever the column order.
Prints a JSON summary (row count, min/max/mean score, model version) on stdout.

    python batch_score.py --input raw/new_data_20261126.csv --output curated/predictions_20261126.csv
    python batch_score.py --date 2026-11-26 --storage blob

The file is read and written in blocks with pyarrow, so memory stays flat however large
the file. Every feature cell is checked against the version's schema before anything is
written: a non-numeric number, an unknown category or an empty cell of a feature that had
none in training fails the run naming its row, column and value, and the output appears only
when the whole file has been scored (local: temporary name then rename; blob: staged
blocks committed at the end).

The same file is an Azure ML batch deployment's scoring script: `init()` loads the model
once and `run(mini_batch)` takes a list of file paths and returns a DataFrame of scored rows.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

import cli
import csv_rows
import settings
import storage
from exact_sum import ExactSum
from registry import RegistryError
from feature_schema import encode_columns, text_reason
from score import ModelService, load_service

log = logging.getLogger("batch_score")

OUTPUT_COLUMNS = ("prediction", "score", "model_version")
# Bytes of CSV per chunk (about 4,000 rows of 31 columns). Measured on 1M rows: 1 MiB keeps peak
# RSS near 270 MB at the best speed; 4 MiB blocks cost 430 MB and were no faster.
DEFAULT_BLOCK_SIZE = 1024 * 1024
PROGRESS_EVERY_S = 5.0

ChunkCallback = Callable[[np.ndarray, np.ndarray], None]


class BatchError(ValueError):
    """An input the batch scorer cannot accept; the message says which file, row and column."""


class BatchRowError(BatchError):
    """One cell is not a usable feature value; `row` is the data row number (header excluded)."""

    def __init__(self, source: str, row: int, column: str, value: str, reason: str):
        self.source, self.row, self.column, self.value, self.reason = source, row, column, value, reason
        super().__init__(f"{source}: row {row} (file line {row + 1}), column {column!r}: {reason}")


@dataclass
class BatchSummary:
    """What a scoring pass saw: the numbers a run log needs."""

    input: str
    output: str
    row_count: int
    min_score: float | None
    max_score: float | None
    mean_score: float | None
    predicted_positive: int
    model_version: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScoredChunk:
    """One block of the input, validated and scored."""

    table: Any  # pyarrow.Table: the input's columns as text, then prediction, score, model_version
    matrix: np.ndarray  # float64 features in the model's order
    predictions: np.ndarray
    scores: np.ndarray
    first_row: int  # data row number of the chunk's first row (1-based, header excluded)


# ----- reading and validating ----------------------------------------------------------------
def read_header(source: BinaryIO, source_name: str) -> list[str]:
    """The column names on the first line of `source`, leaving the stream at the first row."""
    line = source.readline()
    if not line.strip():
        raise BatchError(f"{source_name} is empty: expected a header line with the feature names")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BatchError(f"{source_name}: the header line is not UTF-8 text") from None
    try:
        names = next(csv.reader([text.rstrip("\r\n")]))
    except csv.Error as exc:  # e.g. a stray carriage return inside the header
        raise BatchError(f"{source_name}: the header line is not valid CSV: {exc}") from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BatchError(f"{source_name}: duplicate column names in the header: {', '.join(duplicates)}")
    return names


def check_columns(names: list[str], features: list[str], source_name: str) -> None:
    """Every feature present and no column the output would add; else BatchError naming them."""
    present = set(names)
    missing = [f for f in features if f not in present]
    if missing:
        raise BatchError(
            f"{source_name}: missing feature column(s) {', '.join(repr(m) for m in missing)}; "
            f"the model needs all of: {', '.join(features)}"
        )
    clash = [c for c in OUTPUT_COLUMNS if c in present]
    if clash:
        raise BatchError(f"{source_name}: input already has column(s) {', '.join(clash)}, which the output adds")


def open_scored(source: BinaryIO, service: ModelService, *, source_name: str = "input",
                block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[list[str], Iterator[ScoredChunk]]:
    """Read and check the header of `source` now; returns (column names, scored chunks)."""
    names = read_header(source, source_name)
    check_columns(names, service.features, source_name)
    return names, _iter_scored(source, names, service, source_name, block_size)


def _iter_scored(source: BinaryIO, names: list[str], service: ModelService, source_name: str,
                 block_size: int) -> Iterator[ScoredChunk]:
    # pyarrow decodes a malformed row as UTF-8 before it calls the row handler; when the row is
    # not UTF-8 it prints an "Exception ignored" traceback on stderr and the parse error that
    # follows names the row anyway. Keep stderr to the one-line error while this file is read.
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not (issubclass(unraisable.exc_type, UnicodeDecodeError)
                and getattr(unraisable.object, "__name__", "") == "on_invalid"):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield from _iter_scored_chunks(source, names, service, source_name, block_size)
    finally:
        sys.unraisablehook = previous


def _iter_scored_chunks(source: BinaryIO, names: list[str], service: ModelService, source_name: str,
                        block_size: int) -> Iterator[ScoredChunk]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    positions = [names.index(f) for f in service.features]
    bad_rows: list[Any] = []

    def on_invalid(row) -> str:
        bad_rows.append(row)
        return "error"

    def fail(exc: Exception, done: int) -> BatchError:
        if bad_rows:
            row = bad_rows[0]
            return BatchError(
                f"{source_name}: malformed row after row {done}: expected {row.expected_columns} "
                f"values, got {row.actual_columns}: {row.text[:80]!r}"
            )
        return BatchError(f"{source_name}: cannot parse CSV after row {done}: {exc}")

    # Every column is read as text: features are parsed below so that a bad cell can be named,
    # and the other columns pass through exactly as they were written.
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, block_size=block_size),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc) and not bad_rows:
            return  # a header and no rows
        raise fail(exc, 0) from None
    try:
        yield from _scored_batches(reader, positions, service, source_name, fail)
    finally:
        # Stop the reader's read-ahead before the error (or the end) travels on: a reader
        # left running while the interpreter exits can abort the process.
        reader.close()


def _scored_batches(reader, positions: list[int], service: ModelService, source_name: str,
                    fail) -> Iterator[ScoredChunk]:
    import pyarrow as pa

    done = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise fail(exc, done) from None
        if batch.num_rows:
            yield score_batch(batch, positions, service, source_name, done)
            done += batch.num_rows


def score_batch(batch, positions: list[int], service: ModelService, source_name: str, done: int) -> ScoredChunk:
    """Validate and score one block of text columns (data rows done + 1 ...); both engines use it."""
    import pyarrow as pa

    version = np.array([service.version])
    if not service.schema.plain_numbers:
        matrix = _schema_matrix(batch, positions, service.schema, source_name, done)
    else:
        matrix = np.empty((batch.num_rows, len(positions)), dtype=np.float64, order="F")
        try:
            for j, pos in enumerate(positions):
                matrix[:, j] = _to_float(batch.column(pos))
            valid = bool(np.isfinite(matrix).all())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            valid = False
        if not valid:  # name the first bad cell: the schema's general path says which and why
            _schema_matrix(batch, positions, service.schema, source_name, done)
            raise BatchError(f"{source_name}: cannot read the feature values after row {done}")
    predictions, scores = service.predict(matrix)
    return ScoredChunk(_with_outputs(batch, predictions, scores, version), matrix, predictions, scores, done + 1)


def _with_outputs(batch, predictions: np.ndarray, scores: np.ndarray, version: np.ndarray):
    """The chunk's input columns as read, then prediction, score and model_version."""
    import pyarrow as pa

    return pa.Table.from_batches([batch]).append_column("prediction", pa.array(predictions)).append_column(
        "score", pa.array(scores)).append_column("model_version", pa.array(np.repeat(version, batch.num_rows)))


def _schema_matrix(batch, positions: list[int], schema, source_name: str, done: int) -> np.ndarray:
    """The schema's encoding of a chunk, or the BatchRowError for its first cell the schema refuses."""
    matrix, bad = encode_columns(schema, [batch.column(pos) for pos in positions])
    if bad is not None:
        index, j = bad
        text = batch.column(positions[j])[index].as_py()
        raise BatchRowError(source_name, done + index + 1, schema.names[j], text, text_reason(schema.features[j], text))
    return matrix


def _to_float(column) -> np.ndarray:
    """A text column as float64; spaces around a number are allowed. Raises ArrowInvalid."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # the fast path failed: try again without surrounding spaces
        return pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(zero_copy_only=False)


# ----- writing -------------------------------------------------------------------------------
class _Progress:
    """Logs rows scored every few seconds, with the share of bytes read when the size is known."""

    def __init__(self, source: BinaryIO, name: str, total_bytes: int | None):
        self.source, self.name, self.total = source, name, total_bytes
        self.start = self.last = time.perf_counter()

    def update(self, rows: int) -> None:
        now = time.perf_counter()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        share = ""
        if self.total:
            try:
                share = f", {min(self.source.tell() / self.total, 1.0):.0%} of the file"
            except (OSError, ValueError, AttributeError):
                share = ""
        log.info("%s: %s rows scored in %.0f s%s", self.name, f"{rows:,}", now - self.start, share)


def score_stream(source: BinaryIO, sink: BinaryIO, service: ModelService, *,
                 on_chunk: ChunkCallback | None = None, source_name: str = "input", sink_name: str = "output",
                 block_size: int = DEFAULT_BLOCK_SIZE, total_bytes: int | None = None) -> BatchSummary:
    """Score a CSV stream into `sink`, chunk by chunk; returns the summary.

    `on_chunk(matrix, scores)` is called for every chunk with the validated float64 feature
    matrix (columns in `service.features` order) and the chunk's scores, so that monitoring
    can gather statistics in the same pass. The caller makes the sink atomic: when this
    raises, the sink holds a partial file that must be discarded.
    """
    started = time.perf_counter()
    rows = positives = 0
    low, high, total = np.inf, -np.inf, ExactSum()  # exact, so the Spark engine's partial sums give the same mean
    progress = _Progress(source, source_name, total_bytes)
    names, chunks = open_scored(source, service, source_name=source_name, block_size=block_size)
    sink.write(csv_rows.header_line(names + list(OUTPUT_COLUMNS)))
    text_columns = csv_rows.text_columns(names, service.schema)
    for chunk in chunks:
        if on_chunk is not None:
            on_chunk(chunk.matrix, chunk.scores)
        csv_rows.write_rows(chunk.table, sink, text_columns)
        n = len(chunk.scores)
        rows += n
        positives += int(chunk.predictions.sum())
        low, high = min(low, float(chunk.scores.min())), max(high, float(chunk.scores.max()))
        total.add(chunk.scores)
        progress.update(rows)
    return BatchSummary(
        input=source_name, output=sink_name, row_count=rows,
        min_score=low if rows else None, max_score=high if rows else None,
        mean_score=total.mean(rows), predicted_positive=positives,
        model_version=service.version, duration_s=round(time.perf_counter() - started, 3),
    )


def score_file(input_path: Path, output_path: Path, service: ModelService, *,
               on_chunk: ChunkCallback | None = None, block_size: int = DEFAULT_BLOCK_SIZE) -> BatchSummary:
    """Score a local CSV into a local CSV, written atomically (temporary name, then rename)."""
    try:
        source = open(input_path, "rb")
    except FileNotFoundError:
        raise storage.StorageNotFound(f"{input_path} does not exist") from None
    except OSError as exc:
        raise storage.StorageError(f"cannot read {input_path}: {exc.strerror}") from None
    with source, storage.write_file(Path(output_path)) as sink:
        return score_stream(
            source, sink, service, on_chunk=on_chunk, source_name=str(input_path), sink_name=str(output_path),
            block_size=block_size, total_bytes=os.fstat(source.fileno()).st_size,
        )


def score_named(store, raw: str, curated: str, service: ModelService, *,
                on_chunk: ChunkCallback | None = None, block_size: int = DEFAULT_BLOCK_SIZE) -> BatchSummary:
    """Score the raw zone's `raw` into the curated zone's `curated` on either backend."""
    source_name = storage.display(store.location(storage.RAW, raw))
    sink_name = storage.display(store.location(storage.CURATED, curated))
    with store.open_raw(raw) as source, store.write_curated(curated) as sink:
        return score_stream(source, sink, service, on_chunk=on_chunk, source_name=source_name,
                            sink_name=sink_name, block_size=block_size)


# ----- Azure ML batch deployment contract ----------------------------------------------------
_service: ModelService | None = None


def init() -> None:
    """Called once per worker: load from $AZUREML_MODEL_DIR, else the latest local version."""
    global _service
    _service = load_service()
    log.info("batch_score.init loaded model %s", _service.version)


def run(mini_batch: list[str]):
    """Score each file of the mini-batch; returns one DataFrame row per scored input row."""
    import pandas as pd
    import pyarrow as pa

    if _service is None:
        init()
    assert _service is not None
    frames = []
    for path in mini_batch:
        with open(path, "rb") as source:
            _, scored = open_scored(source, _service, source_name=str(path))
            chunks = list(scored)
        if not chunks:
            continue
        frame = pa.concat_tables([c.table for c in chunks]).to_pandas()
        # Numbers as numbers; category cells keep their text (the matrix holds their codes).
        numbers = [j for j, f in enumerate(_service.schema.features) if not f.is_category]
        frame[[_service.features[j] for j in numbers]] = np.vstack([c.matrix[:, numbers] for c in chunks])
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*_service.features, *OUTPUT_COLUMNS])
    # Azure's append_row writes the rows with no header, so every call answers the same
    # columns in the same order whatever each file's own order: the features as the model
    # lists them, any other input columns, then the outputs.
    merged = pd.concat(frames, ignore_index=True)
    others = [c for c in merged.columns if c not in _service.features and c not in OUTPUT_COLUMNS]
    return merged[[*_service.features, *others, *OUTPUT_COLUMNS]]


# ----- CLI -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score one CSV file with a registered model version (streaming, atomic output).",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--input", type=Path, default=None, help="CSV to score (a local path)")
    parser.add_argument("--output", type=Path, default=None,
                        help="CSV to write (a local path; default with a dated --input: the curated zone's "
                             "predictions_YYYYMMDD.csv)")
    parser.add_argument("--date", default=None, metavar="YYYY-MM-DD",
                        help="score the raw zone's new_data_YYYYMMDD.csv into the curated zone instead")
    cli.add_storage_option(parser, help_text="zones for --date (default: $STORAGE_BACKEND, else local)")
    cli.add_registry_options(parser)
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="bytes of CSV per chunk")
    parser.add_argument("--engine", choices=("stream", "spark"), default="stream",
                        help="stream: this process, in chunks; spark: PySpark, same output (docs/spark.md)")
    parser.add_argument("--spark-master", default=None,
                        help="Spark master for --engine spark (default: $SPARK_MASTER, else local[*])")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.setup_logging()
    log.setLevel(logging.INFO)  # progress on long files; the storage SDK's request logs stay quiet
    if (args.input is None) == (args.date is None):
        parser.error("give either --input (with --output) or --date")
    if args.block_size < 4096:
        parser.error("--block-size must be at least 4096")
    if args.output is not None and str(args.output) == "-":
        print("error: --output - (stdout) is not supported: stdout carries the run's summary; give a file path "
              "such as predictions.csv", file=sys.stderr)
        return 2
    errors: list[type[Exception]] = [RegistryError, storage.StorageError, BatchError, cli.UsageError]
    try:
        with contextlib.ExitStack() as stack:
            summary = _run(args, stack, errors)
    except tuple(errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def _run(args: argparse.Namespace, stack: contextlib.ExitStack, errors: list) -> BatchSummary:
    service = ModelService.from_registry(args.registry_dir, args.model_version)
    one_file, one_day = score_file, score_named
    if args.engine == "spark":
        import spark_engine  # imports this file under its module name: catch that copy's errors too

        errors.append(spark_engine.batch_score.BatchError)
        engine = stack.enter_context(spark_engine.SparkEngine(args.spark_master))
        one_file, one_day = engine.score_file, engine.score_named
    if args.date is not None:
        day = cli.parse_date(args.date)
        return one_day(storage.get_storage(args.storage), storage.raw_name(day), storage.curated_name(day),
                       service, block_size=args.block_size)
    output = args.output
    if output is None:
        day = storage.date_of(args.input.name)
        if day is None or not args.input.name.startswith(storage.RAW_PREFIX):
            raise BatchError("--output is required unless --input is named new_data_YYYYMMDD.csv")
        output = settings.curated_dir() / storage.curated_name(day)
    return one_file(args.input, output, service, block_size=args.block_size)


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
