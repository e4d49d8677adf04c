"""Figures the reliability suites measure, for `make reliability` to print as a table.

Each test that measures something calls `record(key, **figures)` or `add(key, **counters)`. When
$RELIABILITY_FIGURES_DIR is set, the figures go to `<dir>/<key>.json` (written atomically, one
file per key, so parallel tests never share a file); when it is not set, nothing is written.
Sizes come from environment variables so a local run can go bigger than CI:
`count("RELIABILITY_FUZZ_EXAMPLES", 1200)`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

ENV_DIR = "RELIABILITY_FIGURES_DIR"


def count(env: str, default: int) -> int:
    """A size from the environment (a positive whole number), else the CI default."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{env} must be at least 1, got {value}")
    return value


def record(key: str, **figures: Any) -> None:
    """Set figures of one suite (merged into what the same key saved before)."""
    _update(key, figures, add=False)


def add(key: str, **counters: int) -> None:
    """Add to counters of one suite (for figures summed over several tests)."""
    _update(key, counters, add=True)


def _update(key: str, figures: dict[str, Any], add: bool) -> None:
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return
    path = Path(folder) / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    for name, value in figures.items():
        if add:
            data[name] = data.get(name, 0) + value
        else:
            data[name] = value
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
