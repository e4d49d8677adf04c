"""Write the Azure ML environments' conda files from the project's pinned requirements.

Reads requirements.txt and requirements-azureml.txt; writes
azureml/environments/project-conda.yml (training job and batch deployment) and
azureml/environments/score-conda.yml (online deployments, with Azure ML's inference
server). `--check` writes nothing and fails when a conda file is out of date.

    python scripts/azureml_conda.py            # regenerate
    python scripts/azureml_conda.py --check    # what the tests run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.11"  # the version CI and the Makefile's venvs use
# conda file -> (environment name, requirements file it is generated from)
TARGETS = {
    "azureml/environments/project-conda.yml": ("risk-env", "requirements.txt"),
    "azureml/environments/score-conda.yml": ("risk-score-env", "requirements-azureml.txt"),
}


class RequirementsError(ValueError):
    """A requirements line the generator cannot carry over (not pinned with ==)."""


def read_pins(path: Path) -> list[str]:
    """The `name==version` lines of a requirements file, in order; `-r` includes are followed."""
    pins: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins.extend(read_pins(path.parent / line[3:].strip()))
            continue
        if "==" not in line or line.startswith("-"):
            raise RequirementsError(f"{path.name} line {number}: expected name==version, got {line!r}")
        pins.append(line)
    return pins


def render(name: str, requirements: str, root: Path = ROOT) -> str:
    """The conda file's text for one environment."""
    lines = [
        f"# Generated from {requirements} by scripts/azureml_conda.py: do not edit by hand,",
        "# run `make azureml-conda` after changing the pins.",
        f"name: {name}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON_VERSION}",
        "  - pip",
        "  - pip:",
        *(f"      - {pin}" for pin in read_pins(root / requirements)),
    ]
    return "\n".join(lines) + "\n"


def stale_files(root: Path = ROOT) -> list[str]:
    """Conda files whose content differs from what the requirements give."""
    stale = []
    for target, (name, requirements) in TARGETS.items():
        path = root / target
        if not path.is_file() or path.read_text(encoding="utf-8") != render(name, requirements, root):
            stale.append(target)
    return stale


def write_all(root: Path = ROOT) -> list[str]:
    """Regenerate every conda file (atomically); returns the ones that changed."""
    changed = stale_files(root)
    for target in changed:
        name, requirements = TARGETS[target]
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(render(name, requirements, root))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return changed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Generate azureml/environments/*-conda.yml from the pinned requirements files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a conda file is out of date")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check:
            stale = stale_files()
            if stale:
                print(f"error: out of date: {', '.join(stale)}; run make azureml-conda", file=sys.stderr)
                return 1
            print("conda files match the requirements")
            return 0
        changed = write_all()
    except (OSError, RequirementsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(f"wrote {target}" for target in changed) or "conda files already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
