"""Print the reliability suites' figures as a Markdown table.

Reads the JSON files the tests wrote into a folder (tests/reliability_figures.py, one file per
suite, under $RELIABILITY_FIGURES_DIR); writes the table to stdout. `make reliability` runs
the suites and then this.

    python scripts/reliability_table.py /tmp/figures
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Print the reliability figures the tests wrote as a Markdown table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="folder holding the suites' JSON files")
    return parser


def _load(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def _n(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def rows(data: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(suite, tried, bad outcomes, detail) for each suite that reported."""
    out = []
    if "endpoint_fuzz" in data:
        d = data["endpoint_fuzz"]
        out.append(("endpoint fuzzing (hypothesis)", f"{_n(d.get('requests', 0))} requests",
                    f"{_n(d.get('status_5xx', 0))} 5xx",
                    f"{_n(d.get('status_200', 0))} 200 ({_n(d.get('off_schema_200', 0))} off-schema), "
                    f"{_n(d.get('status_4xx', 0))} 4xx ({_n(d.get('bad_4xx', 0))} without a JSON message)"))
    if "endpoint_fuzz_categorical" in data:
        d = data["endpoint_fuzz_categorical"]
        out.append(("endpoint fuzzing, category features", f"{_n(d.get('requests', 0))} requests",
                    f"{_n(d.get('status_5xx', 0))} 5xx",
                    f"{_n(d.get('status_200', 0))} 200, {_n(d.get('status_4xx', 0))} 4xx "
                    f"({_n(d.get('bad_4xx', 0))} without a JSON message)"))
    if "batch_fuzz" in data:
        d = data["batch_fuzz"]
        out.append(("batch CSV fuzzing", f"{_n(d.get('cases', 0))} CSV cases",
                    f"{_n(d.get('partial_files', 0))} partial files left",
                    f"{_n(d.get('scored', 0))} scored, {_n(d.get('rejected', 0))} rejected cleanly, "
                    f"{_n(d.get('tracebacks', 0))} tracebacks"))
    if "faults" in data:
        d = data["faults"]
        kinds = data.get("faults_by_kind", {})
        detail = ", ".join(f"{_n(v)} {k}" for k, v in sorted(kinds.items()))
        out.append(("fault injection", f"{_n(d.get('injected', 0))} faults injected",
                    f"{_n(d.get('data_lost', 0))} data lost", detail))
    if "soak" in data:
        d = data["soak"]
        out.append(("soak on loopback (uvicorn)", f"{_n(d.get('requests', 0))} requests",
                    f"{_n(d.get('failures', 0))} failures",
                    f"p50 {_n(d.get('p50_ms', 0.0))} ms, p99 {_n(d.get('p99_ms', 0.0))} ms, concurrency "
                    f"{_n(d.get('concurrency', 0))}, {_n(d.get('versions_registered', 0))} versions registered "
                    f"during the run, {_n(d.get('unknown_versions', 0))} answers from an unregistered version"))
    if "batch_concurrency" in data:
        d = data["batch_concurrency"]
        out.append(("batch runs at once", f"{_n(d.get('runs', 0))} runs",
                    f"{_n(d.get('failed', 0))} failed",
                    f"{_n(d.get('log_rows', 0))} log rows, {_n(d.get('malformed_rows', 0))} malformed"))
    if "security" in data:
        d = data["security"]
        out.append(("security", f"{_n(d.get('checks', 0))} checks", f"{_n(d.get('failed', 0))} failed",
                    "API key on every route but /health and /ready, key never logged, escaping "
                    "dates, names and versions refused"))
    return out


def format_table(data: dict[str, dict[str, Any]]) -> str:
    table = [("suite", "tried", "bad outcomes", "detail"), *rows(data)]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder: run make reliability", file=sys.stderr)
        return 1
    data = _load(args.folder)
    if not data:
        print(f"error: no figures in {args.folder}: the suites wrote nothing", file=sys.stderr)
        return 1
    print(format_table(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
