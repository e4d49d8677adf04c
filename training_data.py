"""The training table: the training CSV when there is one, else scikit-learn's copy of the data.

train.py fits on it, generate_raw_data.py samples new rows from it and score.py --sample
scores its first rows. The table is returned as read (every column, the target included);
what a caller needs of it (numeric features, a binary target) the caller checks; check_stray_text
finds a numeric column with a few text cells.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any, Sequence

import settings

SKLEARN_SOURCE = "sklearn.datasets.load_breast_cancer"


class TrainingDataError(ValueError):
    """The training table cannot be read; the message names the file and the reason."""


def load_table(path: Path | None = None, *, nrows: int | None = None, what: str = "data file",
               missing_ok: bool = False, categorical: Sequence[str] = ()) -> Any:
    """The table at `path`, else settings.data_csv() when present, else scikit-learn's copy.

    A `path` given but missing is an error ("<what> <path> does not exist") unless `missing_ok`,
    which falls back to scikit-learn's copy. The DataFrame's attrs["source"] says where it came
    from (a path or SKLEARN_SOURCE); `nrows` reads only the first rows. Only empty cells are
    missing ("NA" or "none" are values, as they are to the scorers); the `categorical` columns
    are read as text.
    """
    import pandas as pd

    chosen = path if path is not None else settings.data_csv()
    if chosen.is_file():
        try:
            frame = pd.read_csv(chosen, nrows=nrows, keep_default_na=False, na_values=[""],
                                dtype={c: str for c in categorical} or None)
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"cannot read {chosen}: {exc}") from None
        frame.attrs["source"] = str(chosen)
        return frame
    if path is not None and not missing_ok:
        raise TrainingDataError(f"{what} {chosen} does not exist")
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame = frame.head(nrows) if nrows is not None else frame
    frame.attrs["source"] = SKLEARN_SOURCE
    return frame


def table_sha256(frame: Any) -> str:
    """The SHA-256 of the table's source file, or of its CSV text when it came from scikit-learn."""
    source = frame.attrs.get("source", SKLEARN_SOURCE)
    if source != SKLEARN_SOURCE and Path(source).is_file():
        from registry import sha256_file

        return sha256_file(Path(source))
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


# A text column whose non-empty cells are at least this share numbers is a numeric column with typos.
MOSTLY_NUMERIC = 0.95


def check_stray_text(features, source: str, categorical: Sequence[str] = ()) -> None:
    """A TrainingDataError for a feature column of numbers with a few text cells (e.g. one "n/a"), which
    would otherwise become a category with a level per distinct number; --categorical allows it."""
    import pandas as pd

    for name in features.columns:
        column = features[name]
        if str(name) in categorical or pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        filled = column.dropna()
        numbers = pd.to_numeric(filled.astype(str).str.strip(), errors="coerce")
        bad = numbers.isna()
        if len(filled) == 0 or not bad.any() or (len(filled) - int(bad.sum())) / len(filled) < MOSTLY_NUMERIC:
            continue
        first = int(features.index.get_loc(bad.idxmax())) + 1
        raise TrainingDataError(f"feature column {name!r} in {source} holds numbers but {int(bad.sum())} cell(s) are "
                                f"not (first at data row {first}: {filled[bad.idxmax()]!r}); fix it, leave it empty "
                                f"for missing, or pass --categorical {shlex.quote(str(name))}")
