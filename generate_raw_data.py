"""Generate nightly raw files: new, unlabelled rows sampled from the source data with noise.

Reads the training data (day1_breast_cancer.csv, else scikit-learn's copy, or any table
given by --data, whose --target column is dropped) and writes `new_data_YYYYMMDD.csv` into
the raw zone (local raw/ or the blob container `raw`) for one date or a date range: an
`account_id` column, then the feature columns, no target. Each row is a source row picked
at random plus Gaussian noise on its numbers (`--noise` standard deviations of each
feature; whole-number columns stay whole); category values come with their row, so they
follow the source's frequencies, and empty cells appear at the source's rate. `--drift`
shifts the numeric drift features (`--drift-features`) by that many standard deviations
and, for categorical ones, redraws a share min(1, drift/2) of their values from the
reversed frequencies (rare categories become common), so that monitoring has something to
find. The same seed and date give the same file; different dates give different rows.
Files are written atomically.

    python generate_raw_data.py --date 2026-11-26
    python generate_raw_data.py --start 2026-11-24 --end 2026-11-25 --rows 500
    python generate_raw_data.py --date 2026-11-26 --drift 1.5 --storage blob
    python generate_raw_data.py --date 2026-11-26 --data data/german_credit.csv --target creditability
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


def load_source(data: Path | None = None, target: str = settings.TARGET, categorical: Sequence[str] = ()):
    """The source features (no target) as a DataFrame: numbers as float64 (NaN for empty
    cells), categories (text columns and `categorical`) as text (None for empty cells)."""
    import pandas as pd

    try:
        frame = training_data.load_table(data, what="source data", categorical=categorical)
    except training_data.TrainingDataError as exc:
        raise GenerateError(str(exc)) from None
    features = frame.drop(columns=[target], errors="ignore")
    if features.empty:
        raise GenerateError(f"source data {frame.attrs.get('source')} has no feature columns")
    for name in features.columns:
        column = features[name]
        if name in categorical or not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            features[name] = pd.Series([None if v != v else str(v) for v in column.tolist()], dtype=object)
        else:
            features[name] = column.astype("float64")
    return features


def generate_chunks(source, day: dt.date, rows: int, *, noise: float = DEFAULT_NOISE, seed: int = DEFAULT_SEED,
                    drift: float = 0.0, drift_features: Sequence[str] = DEFAULT_DRIFT_FEATURES,
                    chunk_rows: int = CHUNK_ROWS) -> Iterator[Any]:
    """The day's rows as pyarrow tables of at most `chunk_rows` rows (deterministic per seed and date)."""
    import pyarrow as pa

    all_columns = list(source.columns)
    unknown = [f for f in drift_features if f not in all_columns]
    if drift and unknown:
        shown = ", ".join(all_columns[:6]) + (", ..." if len(all_columns) > 6 else "")
        raise GenerateError(f"--drift-features not in the source data: {', '.join(unknown)} "
                            f"(its columns: {shown})")
    categories = [c for c in all_columns if source[c].dtype == object]
    columns = [c for c in all_columns if c not in categories]
    values = source[columns].to_numpy(dtype=np.float64)
    gaps = bool(np.isnan(values).any())  # the nan-aware statistics only when needed: same numbers otherwise
    std = np.nanstd(values, axis=0) if gaps else values.std(axis=0)
    low = np.where((np.nanmin(values, axis=0) if gaps else values.min(axis=0)) >= 0, 0.0, -np.inf)
    shift = np.zeros(len(columns))
    if drift:
        for name in drift_features:
            if name in columns:
                shift[columns.index(name)] = drift * std[columns.index(name)]
    # About five significant digits, as the source data has, whatever each feature's scale;
    # whole-number columns (counts, ages, amounts) stay whole.
    scale = np.nanmedian(np.abs(values), axis=0) if gaps else np.median(np.abs(values), axis=0)
    decimals = [max(0, 4 - int(np.floor(np.log10(s)))) if s > 0 else 6 for s in scale]
    decimals = [0 if _whole(values[:, j]) else d for j, d in enumerate(decimals)]
    texts = {c: source[c].to_numpy(dtype=object) for c in categories}
    redraw = {c: _reversed_frequencies(texts[c]) for c in categories if drift and c in drift_features}
    rng = np.random.default_rng([seed, int(f"{day:%Y%m%d}")])
    for first in range(0, rows, chunk_rows):
        n = min(chunk_rows, rows - first)
        index = rng.integers(0, len(values), n)
        picked = values[index]
        picked = np.maximum(picked + rng.normal(0.0, 1.0, picked.shape) * (noise * std) + shift, low)
        ids = pa.array([f"ACC{i:08d}" for i in range(first + 1, first + n + 1)])
        numbers = {c: pa.array(np.round(picked[:, j], decimals[j]), from_pandas=True) for j, c in enumerate(columns)}
        text = {c: pa.array(_drifted(texts[c][index], redraw.get(c), min(1.0, drift / 2), rng), pa.string())
                for c in categories}
        arrays = [ids] + [numbers[c] if c in numbers else text[c] for c in all_columns]
        yield pa.table(arrays, names=[ID_COLUMN] + all_columns)


def _whole(column: np.ndarray) -> bool:
    finite = column[np.isfinite(column)]
    return finite.size > 0 and bool((finite == np.round(finite)).all())


def _reversed_frequencies(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(categories, probabilities) with the source's frequencies reversed: the rarest category
    gets the commonest one's share, and so on."""
    present = np.array([v for v in values if v is not None], dtype=object)
    names, counts = np.unique(present.astype(str), return_counts=True)
    order = np.argsort(counts, kind="stable")
    probabilities = np.empty(len(names))
    probabilities[order] = counts[order[::-1]] / counts.sum()
    return names, probabilities


def _drifted(values: np.ndarray, redraw, share: float, rng: np.random.Generator) -> list:
    """The picked category values, with a share of them redrawn from `redraw` (when drifting)."""
    if redraw is None:
        return values.tolist()
    names, probabilities = redraw
    chosen = rng.random(len(values)) < share
    out = values.copy()
    out[chosen] = rng.choice(names, int(chosen.sum()), p=probabilities)
    return out.tolist()


def write_day(sink: BinaryIO, chunks: Iterator[Any]) -> int:
    """Write the chunks as one CSV (a header, then plain values: quoted only in category columns
    other than the ID, where a value may hold a comma); returns the row count."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows = 0
    for index, table in enumerate(chunks):
        if index == 0:
            sink.write((",".join(table.column_names) + "\n").encode("utf-8"))
        text = any(pa.types.is_string(f.type) for f in table.schema if f.name != ID_COLUMN)
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed" if text else "none"))
        rows += table.num_rows
    return rows


def generate(days: Sequence[dt.date], *, rows: int = DEFAULT_ROWS, noise: float = DEFAULT_NOISE,
             seed: int = DEFAULT_SEED, drift: float = 0.0, drift_features: Sequence[str] = DEFAULT_DRIFT_FEATURES,
             store=None, data: Path | None = None, target: str = settings.TARGET,
             categorical: Sequence[str] = ()) -> list[tuple[str, int]]:
    """Write one raw file per day into the raw zone; returns [(location, rows)]."""
    if rows < 1:
        raise GenerateError("--rows must be at least 1")
    if noise < 0:
        raise GenerateError("--noise must not be negative")
    store = store if store is not None else storage.get_storage()
    source = load_source(data, target, categorical)
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
    parser.add_argument("--target", default=settings.TARGET, help="the source's target column, left out of the files")
    parser.add_argument("--categorical", default="", metavar="COL,...",
                        help="numeric-looking columns to treat as categories, as given to train.py")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        days = cli.parse_days(args.date, args.start, args.end)
        drift_features = [f.strip() for f in args.drift_features.split(",") if f.strip()]
        written = generate(days, rows=args.rows, noise=args.noise, seed=args.seed, drift=args.drift,
                           drift_features=drift_features, store=storage.get_storage(args.storage), data=args.data,
                           target=args.target, categorical=[c.strip() for c in args.categorical.split(",") if c.strip()])
    except cli.UsageError as exc:  # a bad date or range: 2, as in pipeline_run_batch.py and monitor.py
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (GenerateError, storage.StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for location, count in written:
        print(f"wrote {count} rows to {storage.display(location)}")
    return 0


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
