"""The local model registry: a folder stand-in for the Azure ML model registry.

Layout (reads and writes `local_registry/` by default):

    local_registry/
        model_v001/  model.joblib  metrics.json  metadata.json  [other files]
        model_v002/  ...

A version is immutable and appears whole or not at all: it is written into a hidden
staging folder and renamed into place, and the rename only succeeds onto a name nobody
holds, so two trainings at once never share a number. "latest" is the highest complete
version. Loading checks model.joblib's sha256 against metadata.json before unpickling it:
joblib files run code when loaded, so only files the registry wrote are ever opened.

    python registry.py list
    python registry.py show latest
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import cli
import fileio
import settings

MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
METADATA_FILE = "metadata.json"
REQUIRED_FILES = (MODEL_FILE, METRICS_FILE, METADATA_FILE)
# ASCII digits only: "\d" alone also matches other scripts' digits (v\u0661 would mean v1).
_VERSION_DIR = re.compile(r"^model_v(\d{3,})$", re.ASCII)
_VERSION_SPEC = re.compile(r"^(?:model_)?v?(\d{1,9})$", re.IGNORECASE | re.ASCII)


class RegistryError(Exception):
    """An expected registry failure, with a message fit for the user."""


def version_name(version: int) -> str:
    return f"model_v{version:03d}"


def version_label(version: int) -> str:
    return f"v{version:03d}"


def parse_version_spec(spec: str | int | None) -> int | None:
    """'latest'/None -> None; 'v002', '2', 'model_v002', 2 -> 2; anything else is an error."""
    if spec is None:
        return None
    if isinstance(spec, int) and not isinstance(spec, bool):
        number = spec
    else:
        text = str(spec).strip()
        if text.lower() == "latest":
            return None
        match = _VERSION_SPEC.match(text)
        if not match:
            raise RegistryError(
                f"invalid model version {str(spec)!r}: use 'latest', a number like 2, or v002"
            )
        number = int(match.group(1))
    if number < 1:
        raise RegistryError(f"invalid model version {spec!r}: versions start at 1")
    return number


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def _is_complete(path: Path, version: int) -> bool:
    """A version counts only if every file is there and its metadata names this version."""
    if not all((path / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        meta = _read_json(path / METADATA_FILE)
        _read_json(path / METRICS_FILE)
    except (OSError, ValueError):
        return False
    return meta.get("version") == version and isinstance(meta.get("model_sha256"), str)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fileio.write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@dataclass(frozen=True)
class ModelVersion:
    """One complete registered version."""

    version: int
    path: Path
    metadata: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def label(self) -> str:
        return version_label(self.version)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


class Registry:
    """A folder of immutable, numbered model versions."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else settings.registry_dir()

    # ----- reading -----------------------------------------------------------------
    def versions(self) -> list[int]:
        """Numbers of the complete versions, ascending; staging and broken folders are skipped."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _VERSION_DIR.match(entry.name)
            # A linked folder is not the registry's own: it could point anywhere.
            if match and entry.is_dir() and not entry.is_symlink() and _is_complete(entry, int(match.group(1))):
                found.append(int(match.group(1)))
        return sorted(found)

    def _highest_number(self) -> int:
        """The highest number taken by any version folder, complete or not."""
        if not self.root.is_dir():
            return 0
        numbers = [int(m.group(1)) for e in self.root.iterdir() if (m := _VERSION_DIR.match(e.name))]
        return max(numbers, default=0)

    def resolve(self, spec: str | int | None = "latest") -> int:
        """The version number that `spec` names; a clear RegistryError when there is none."""
        wanted = parse_version_spec(spec)
        available = self.versions()
        if not available:
            raise RegistryError(
                f"no model registered in {self.root}: run python train.py"
            )
        if wanted is None:
            return available[-1]
        if wanted not in available:
            shown = ", ".join(version_label(v) for v in available)
            raise RegistryError(
                f"model version {version_label(wanted)} not found in {self.root} (available: {shown})"
            )
        return wanted

    def get(self, spec: str | int | None = "latest") -> ModelVersion:
        version = self.resolve(spec)
        path = self.root / version_name(version)
        try:
            metadata = _read_json(path / METADATA_FILE)
            metrics = _read_json(path / METRICS_FILE)
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{version_label(version)} cannot be read: {exc}") from exc
        return ModelVersion(version, path, metadata, metrics)

    def load(self, spec: str | int | None = "latest") -> tuple[Any, ModelVersion]:
        """Verify and unpickle a version's model; returns (model, version)."""
        entry = self.get(spec)
        root = self.root.resolve()
        if not entry.model_path.resolve().is_relative_to(root):
            raise RegistryError(
                f"{entry.label}: {entry.model_path} links outside the registry ({root}); refusing to load it"
            )
        return load_verified_model(entry.path, entry.metadata, entry.label), entry

    # ----- writing -----------------------------------------------------------------
    def register(
        self,
        write_files: Callable[[Path], None],
        metadata: dict[str, Any],
    ) -> ModelVersion:
        """Register a new version.

        `write_files(staging_dir)` writes model.joblib, metrics.json and any other files into
        a private staging folder; this adds metadata.json (with the version number, the UTC
        registration time and model.joblib's sha256) and renames the folder into place.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            write_files(staging)
            for name in (MODEL_FILE, METRICS_FILE):
                if not (staging / name).is_file():
                    raise RegistryError(f"registration is missing {name}")
            model_sha = sha256_file(staging / MODEL_FILE)
            for attempt in range(1000):
                version = self._highest_number() + 1
                meta = {
                    "model_name": metadata.get("model_name", settings.MODEL_NAME),
                    "version": version,
                    "registered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    **{k: v for k, v in metadata.items() if k not in {"model_name", "version"}},
                    "model_sha256": model_sha,
                }
                _write_json(staging / METADATA_FILE, meta)
                _fsync_dir(staging)
                target = self.root / version_name(version)
                try:
                    # rename() onto an existing non-empty folder fails, so a number is
                    # taken by exactly one registration even when several race.
                    if target.exists():
                        continue
                    os.rename(staging, target)
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        continue
                    raise
                _fsync_dir(self.root)
                return self.get(version)
            raise RegistryError("could not find a free version number after 1000 attempts")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def load_verified_model(path: Path, metadata: dict[str, Any] | None, label: str) -> Any:
    """Unpickle path/model.joblib only if its sha256 matches the metadata's."""
    import joblib  # deferred: importing the registry to list versions needs no sklearn

    model_path = Path(path) / MODEL_FILE
    if not model_path.is_file():
        raise RegistryError(f"{label}: {model_path} is missing")
    expected = (metadata or {}).get("model_sha256")
    if not expected:
        raise RegistryError(f"{label}: metadata.json has no model_sha256; refusing to load {model_path}")
    actual = sha256_file(model_path)
    if actual != expected:
        raise RegistryError(
            f"{label}: {model_path} has been modified (sha256 {actual[:12]}... does not match "
            f"the registered {expected[:12]}...); refusing to load it"
        )
    try:
        return joblib.load(model_path)
    except Exception as exc:  # a checksum-valid file that still cannot be read
        raise RegistryError(f"{label}: {model_path} cannot be loaded: {exc}") from exc


# ----- CLI ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="List and inspect the versions in the local model registry.",
        formatter_class=settings.HelpFormatter,
    )
    cli.add_registry_options(parser, model_version=False)
    after = argparse.ArgumentParser(add_help=False)  # --registry-dir also after the subcommand
    after.add_argument("--registry-dir", type=Path, default=argparse.SUPPRESS,
                       help="registry folder (default: $LOCAL_REGISTRY_DIR or ./local_registry)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[after], help="one line per version with its key metrics")
    show = sub.add_parser("show", parents=[after], help="metadata and metrics of one version")
    show.add_argument("version", nargs="?", default="latest", help="latest, 2, or v002")
    return parser


TABLE_COLUMNS = (("version", "version", ""), ("registered_at", "registered_at (UTC)", ""),
                 ("accuracy", "accuracy", ""), ("roc_auc", "roc_auc", ""), ("mlflow_run_id", "mlflow_run_id", ""))


def format_table(reg: Registry) -> str:
    """One line per version: label, registration time, accuracy, ROC AUC, MLflow run id."""
    rows = []
    for number in reg.versions():
        entry = reg.get(number)
        rows.append({
            "version": entry.label,
            "registered_at": str(entry.metadata.get("registered_at", "")),
            # Formatted here, so the column stays left-aligned as it always was.
            "accuracy": f"{entry.metrics.get('accuracy', float('nan')):.4f}",
            "roc_auc": f"{entry.metrics.get('roc_auc', float('nan')):.4f}",
            "mlflow_run_id": str(entry.metadata.get("mlflow_run_id") or "-"),
        })
    return cli.format_table(rows, TABLE_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reg = Registry(args.registry_dir)
    try:
        if args.command == "list":
            reg.resolve("latest")  # clear error when empty
            print(format_table(reg))
        else:
            entry = reg.get(args.version)
            print(json.dumps({"path": str(entry.path), "metadata": entry.metadata,
                              "metrics": entry.metrics}, indent=2))
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.stdout_closed_ok()
    raise SystemExit(main())
