"""The curated file's CSV text, as both batch engines write it (batch_score.py, spark_engine.py).

A helper module: it imports nothing of ours. Rows are written with pyarrow; a row's cells are
quoted only when one of its text cells needs it, so the bytes of a row do not depend on which
chunk or Spark partition it was written with.
"""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

import numpy as np

_NEEDS_QUOTES = r'[",\r\n]'


def header_line(names: list[str]) -> bytes:
    """The header as csv.writer writes it, newline-terminated."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(names)
    return buffer.getvalue().encode("utf-8")


def text_columns(names: list[str], schema) -> list[int]:
    """Output columns whose cells may need quotes: the input's columns other than numeric features
    (a number cannot hold a comma, a quote or a newline), category features included, and
    model_version. `schema` is the model's feature_schema.Schema; the output is names + 3 columns."""
    numeric = {f.name for f in schema.features if not f.is_category}
    return [i for i, n in enumerate(names) if n not in numeric] + [len(names) + 2]


def write_rows(table, sink: BinaryIO, quoted_columns: list[int]) -> None:
    """Append a table's rows as CSV (no header), quoting row by row."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    flags = np.zeros(table.num_rows, dtype=bool)
    for i in quoted_columns:
        mask = pc.match_substring_regex(table.column(i), _NEEDS_QUOTES)
        if pc.any(mask).as_py():
            flags |= mask.to_numpy(zero_copy_only=False)
    cuts = [0, *(np.flatnonzero(np.diff(flags)) + 1).tolist(), table.num_rows]
    for start, end in zip(cuts[:-1], cuts[1:]):
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed" if flags[start] else "none")
        pacsv.write_csv(table.slice(start, end - start), sink, options)
