"""Export scikit-learn's breast_cancer data to day1_breast_cancer.csv.

Writes 569 rows: the 30 numeric feature columns under scikit-learn's names (for example
`mean radius`) and `target` (0/1). The file is written atomically.

Azure ML counterpart: registering a data asset (a uri_file) from a source system.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cli
import fileio
import settings


def export(path: Path) -> int:
    """Write the data set to `path`; returns the row count."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    fileio.write_atomic(path, frame.to_csv(index=False))
    return len(frame)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export scikit-learn's breast_cancer data set to a CSV file.",
        formatter_class=settings.HelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=None,
                        help="CSV to write (default: $TRAINING_DATA or ./day1_breast_cancer.csv)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.output or settings.data_csv()
    try:
        rows = export(path)
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {rows} rows to {path}")
    return 0


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
