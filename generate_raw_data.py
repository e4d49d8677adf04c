"""Generate nightly raw files: new, unlabelled rows sampled from the source data with noise.

Reads the training data (day1_breast_cancer.csv, else scikit-learn's copy, or --data) and
writes `new_data_YYYYMMDD.csv` into the raw zone (local raw/ or the blob container `raw`)
for one date or a date range: an `account_id` column, then the feature columns, no target.
Each row is a source row picked at random plus Gaussian noise (`--noise` standard deviations
of each feature); `--drift` shifts some features (`--drift-features`) by that many standard
deviations, so that monitoring has something to find. The same seed and date give the same
file; different dates give different rows. Files are written atomically.

    python generate_raw_data.py --date 2026-11-26
    python generate_raw_data.py --start 2026-11-24 --end 2026-11-25 --rows 500
    python generate_raw_data.py --date 2026-11-26 --drift 1.5 --storage blob
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

import cli
import settings
import storage
import training_data

log = logging.getLogger("generate_raw_data")

ID_COLUMN = "account_id"
DEFAULT_ROWS = 200
DEFAULT_NOISE = 0.05
DEFAULT_SEED = 42
DEFAULT_DRIFT_FEATURES = ("mean radius", "mean texture", "mean perimeter", "mean area", "mean concavity")
CHUNK_ROWS = 250_000


class GenerateError(ValueError):
    """Arguments or source data the generator cannot use; the message says what to change."""


def load_source(data: Path | None = None):
    """The source features (no target) as a DataFrame: --data, else the training data."""
    import pandas as pd

    try:
        frame = training_data.load_table(data, what="source data")
    except training_data.TrainingDataError as exc:
        raise GenerateError(str(exc)) from None
    features = frame.drop(columns=[settings.TARGET], errors="ignore")
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric or features.empty:
        raise GenerateError(f"source data must have numeric feature columns; not numeric: {', '.join(non_numeric) or '(none)'}")
    return features.astype("float64")


def generate_chunks(source, day: dt.date, rows: int, *, noise: float = DEFAULT_NOISE, seed: int = DEFAULT_SEED,
                    drift: float = 0.0, drift_features: Sequence[str] = DEFAULT_DRIFT_FEATURES,
                    chunk_rows: int = CHUNK_ROWS) -> Iterator[Any]:
    """The day's rows as pyarrow tables of at most `chunk_rows` rows (deterministic per seed and date)."""
    import pyarrow as pa

    columns = list(source.columns)
    unknown = [f for f in drift_features if f not in columns]
    if drift and unknown:
        raise GenerateError(f"--drift-features not in the source data: {', '.join(unknown)}")
    values = source.to_numpy()
    std = values.std(axis=0)
    low = np.where(values.min(axis=0) >= 0, 0.0, -np.inf)  # non-negative features stay non-negative
    shift = np.zeros(len(columns))
    if drift:
        for name in drift_features:
            shift[columns.index(name)] = drift * std[columns.index(name)]
    # About five significant digits, as the source data has, whatever each feature's scale.
    scale = np.median(np.abs(values), axis=0)
    decimals = [max(0, 4 - int(np.floor(np.log10(s)))) if s > 0 else 6 for s in scale]
    rng = np.random.default_rng([seed, int(f"{day:%Y%m%d}")])
    for first in range(0, rows, chunk_rows):
        n = min(chunk_rows, rows - first)
        picked = values[rng.integers(0, len(values), n)]
        picked = np.maximum(picked + rng.normal(0.0, 1.0, picked.shape) * (noise * std) + shift, low)
        ids = pa.array([f"ACC{i:08d}" for i in range(first + 1, first + n + 1)])
        arrays = [ids] + [pa.array(np.round(picked[:, j], decimals[j])) for j in range(len(columns))]
        yield pa.table(arrays, names=[ID_COLUMN] + columns)


def write_day(sink: BinaryIO, chunks: Iterator[Any]) -> int:
    """Write the chunks as one CSV (a header, then plain unquoted values); returns the row count."""
    import pyarrow.csv as pacsv

    rows = 0
    for index, table in enumerate(chunks):
        if index == 0:
            sink.write((",".join(table.column_names) + "\n").encode("utf-8"))
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        rows += table.num_rows
    return rows


def generate(days: Sequence[dt.date], *, rows: int = DEFAULT_ROWS, noise: float = DEFAULT_NOISE,
             seed: int = DEFAULT_SEED, drift: float = 0.0, drift_features: Sequence[str] = DEFAULT_DRIFT_FEATURES,
             store=None, data: Path | None = None) -> list[tuple[str, int]]:
    """Write one raw file per day into the raw zone; returns [(location, rows)]."""
    if rows < 1:
        raise GenerateError("--rows must be at least 1")
    if noise < 0:
        raise GenerateError("--noise must not be negative")
    store = store if store is not None else storage.get_storage()
    source = load_source(data)
    written = []
    for day in days:
        name = storage.raw_name(day)
        chunks = generate_chunks(source, day, rows, noise=noise, seed=seed, drift=drift, drift_features=drift_features)
        with store.write_raw(name) as sink:
            count = write_day(sink, chunks)
        written.append((store.location(storage.RAW, name), count))
        log.info("wrote %s rows to %s", count, name)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write raw new_data_YYYYMMDD.csv files (no target) sampled from the source data.",
        formatter_class=settings.HelpFormatter,
    )
    cli.add_date_options(parser)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows per day")
    parser.add_argument("--noise", type=float, default=DEFAULT_NOISE,
                        help="Gaussian noise added to each feature, in that feature's standard deviations")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (combined with each date)")
    parser.add_argument("--drift", type=float, default=0.0,
                        help="shift of the drift features, in standard deviations (0: no drift)")
    parser.add_argument("--drift-features", default=",".join(DEFAULT_DRIFT_FEATURES),
                        help="comma-separated feature names that --drift shifts")
    cli.add_storage_option(parser, help_text="raw zone to write to (default: $STORAGE_BACKEND, else local)")
    parser.add_argument("--data", type=Path, default=None,
                        help="source CSV (default: $TRAINING_DATA or ./day1_breast_cancer.csv, else scikit-learn's copy)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        days = cli.parse_days(args.date, args.start, args.end)
        drift_features = [f.strip() for f in args.drift_features.split(",") if f.strip()]
        written = generate(days, rows=args.rows, noise=args.noise, seed=args.seed, drift=args.drift,
                           drift_features=drift_features, store=storage.get_storage(args.storage), data=args.data)
    except (cli.UsageError, GenerateError, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for location, count in written:
        print(f"wrote {count} rows to {storage.display(location)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
