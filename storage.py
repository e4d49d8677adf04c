"""The raw and curated zones, on the local disk or on Azure Blob Storage (Azurite locally).

Local (the default): files under raw/ and curated/ (settings.raw_dir(), settings.curated_dir()).
Blob: containers `raw` and `curated`, created when missing, holding blobs named as the local
files are (`new_data_YYYYMMDD.csv` at the root of `raw`, `predictions_YYYYMMDD.csv` at the
root of `curated`). The connection string comes from $AZURE_STORAGE_CONNECTION_STRING and
defaults to Azurite's development account; against a real storage account only that string
changes.

    store = get_storage()            # $STORAGE_BACKEND, else "local"
    store.list_raw()                 # ["new_data_20261126.csv", ...]
    with store.open_raw(name) as f:  # a readable binary file object
        ...
    with store.write_curated(name) as out:   # appears only when the block exits cleanly
        out.write(b"...")

Writes are atomic on both backends: local writes go to a hidden temporary file in the same
folder, fsynced and renamed over the target; blob writes stage blocks and commit the block
list only at the end, so readers see the old blob or the whole new one, never a part.
Nothing here touches the disk or the network at import.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import io
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

import fileio
import settings

RAW = "raw"
CURATED = "curated"
ZONES = (RAW, CURATED)
KINDS = ("local", "blob")
ENV_BACKEND = "STORAGE_BACKEND"
ENV_CONNECTION = "AZURE_STORAGE_CONNECTION_STRING"
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)

# A name is one plain file name: no folders, no "..", no hidden files, no odd characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
RAW_PREFIX = "new_data_"
CURATED_PREFIX = "predictions_"
_DATED = re.compile(r"(new_data_|predictions_)(\d{8})\.csv")
BLOCK_SIZE = 8 * 1024 * 1024  # bytes per staged block (Azure allows up to 4000 MiB, 50,000 blocks)


class StorageError(Exception):
    """A storage problem a user can act on (bad name, missing file, unreachable service)."""


class StorageNotFound(StorageError, FileNotFoundError):
    """The named file or blob does not exist in its zone."""


def raw_name(day: _dt.date) -> str:
    """The raw zone's file for a date: new_data_YYYYMMDD.csv."""
    return f"{RAW_PREFIX}{day:%Y%m%d}.csv"


def curated_name(day: _dt.date) -> str:
    """The curated zone's file for a date: predictions_YYYYMMDD.csv."""
    return f"{CURATED_PREFIX}{day:%Y%m%d}.csv"


def date_of(name: str) -> _dt.date | None:
    """The date in a zone file name (new_data_20261126.csv -> 2026-11-26), else None."""
    match = _DATED.fullmatch(name)
    if not match:
        return None
    try:
        return _dt.datetime.strptime(match.group(2), "%Y%m%d").date()
    except ValueError:
        return None


def display(location: str) -> str:
    """A location for the terminal: a local path under the working folder is shown relative."""
    if "://" in location:
        return location
    try:
        return os.path.relpath(location) if Path(location).resolve().is_relative_to(Path.cwd()) else location
    except (OSError, ValueError):
        return location


def validate_name(name: str) -> str:
    """`name` if it is a plain file name usable in a zone, else StorageError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise StorageError(
            f"invalid file name {name!r}: expected a plain name of letters, digits, '.', '_' or '-' "
            "(no folders, no '..')"
        )
    return name


class Storage(Protocol):
    kind: str

    def list_raw(self) -> list[str]: ...
    def list_curated(self) -> list[str]: ...
    def open_raw(self, name: str) -> BinaryIO: ...
    def open_curated(self, name: str) -> BinaryIO: ...
    def exists_raw(self, name: str) -> bool: ...
    def exists_curated(self, name: str) -> bool: ...
    def write_raw(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...
    def write_curated(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...
    def delete_curated(self, name: str) -> bool: ...
    def location(self, zone: str, name: str) -> str: ...


def get_storage(kind: str | None = None) -> "LocalStorage | BlobStorage":
    """The backend named `kind` ('local' or 'blob'); default $STORAGE_BACKEND, else 'local'."""
    chosen = (kind or os.environ.get(ENV_BACKEND) or "local").strip().lower()
    if chosen == "local":
        return LocalStorage()
    if chosen == "blob":
        return BlobStorage()
    raise StorageError(f"unknown storage {chosen!r}: choose one of {', '.join(KINDS)}")


# ----- local disk ------------------------------------------------------------------------
class LocalStorage:
    """raw/ and curated/ folders on the local disk."""

    kind = "local"

    def __init__(self, raw_dir: Path | str | None = None, curated_dir: Path | str | None = None):
        self.dirs = {
            RAW: Path(raw_dir) if raw_dir is not None else settings.raw_dir(),
            CURATED: Path(curated_dir) if curated_dir is not None else settings.curated_dir(),
        }

    def path(self, zone: str, name: str) -> Path:
        return self.dirs[_zone(zone)] / validate_name(name)

    def location(self, zone: str, name: str) -> str:
        return str(self.path(zone, name))

    def _list(self, zone: str) -> list[str]:
        folder = self.dirs[zone]
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and _NAME.fullmatch(p.name))

    def list_raw(self) -> list[str]:
        return self._list(RAW)

    def list_curated(self) -> list[str]:
        return self._list(CURATED)

    def _open(self, zone: str, name: str) -> BinaryIO:
        path = self.path(zone, name)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise StorageNotFound(f"{path} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None

    def open_raw(self, name: str) -> BinaryIO:
        return self._open(RAW, name)

    def open_curated(self, name: str) -> BinaryIO:
        return self._open(CURATED, name)

    def exists_raw(self, name: str) -> bool:
        return self.path(RAW, name).is_file()

    def exists_curated(self, name: str) -> bool:
        return self.path(CURATED, name).is_file()

    def _write(self, zone: str, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return write_file(self.path(zone, name))

    def write_raw(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._write(RAW, name)

    def write_curated(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._write(CURATED, name)

    def delete_curated(self, name: str) -> bool:
        try:
            self.path(CURATED, name).unlink()
            return True
        except FileNotFoundError:
            return False


@contextlib.contextmanager
def write_file(path: Path) -> Iterator[BinaryIO]:
    """fileio.atomic_write, with a folder or temporary file that cannot be made as a StorageError."""
    writer = fileio.atomic_write(path)
    try:
        handle = writer.__enter__()
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    with contextlib.ExitStack() as stack:
        stack.push(writer)  # the write's own exit: rename on success, remove the temporary file on error
        yield handle


# ----- Azure Blob Storage ----------------------------------------------------------------
class BlobStorage:
    """Containers `raw` and `curated` in one storage account (Azurite by default)."""

    kind = "blob"

    def __init__(self, connection_string: str | None = None, *, timeout: float = 10.0, retries: int = 2,
                 block_size: int = BLOCK_SIZE):
        self.block_size = block_size
        self.connection_string = connection_string or os.environ.get(ENV_CONNECTION) or AZURITE_CONNECTION_STRING
        self.timeout = timeout
        self.retries = retries
        self._service = None
        self._ready: set[str] = set()

    # The client is made on first use, so that building a BlobStorage touches no network.
    @property
    def service(self):
        if self._service is None:
            from azure.storage.blob import BlobServiceClient, LinearRetry

            # The SDK's default retry waits 15 s and more between tries; a nightly run that
            # cannot reach its storage should say so within seconds.
            retry = LinearRetry(backoff=0.5, random_jitter_range=0.25, retry_total=self.retries)
            try:
                self._service = BlobServiceClient.from_connection_string(
                    self.connection_string, connection_timeout=self.timeout, read_timeout=max(self.timeout, 60),
                    retry_policy=retry,
                )
            except ValueError as exc:
                raise StorageError(f"invalid ${ENV_CONNECTION}: {exc}") from None
        return self._service

    @property
    def endpoint(self) -> str:
        return self.service.url.rstrip("/")

    def location(self, zone: str, name: str) -> str:
        return f"{self.endpoint}/{_zone(zone)}/{validate_name(name)}"

    def _container(self, zone: str):
        """The container client for a zone, creating the container the first time."""
        zone = _zone(zone)
        client = self.service.get_container_client(zone)
        if zone not in self._ready:
            from azure.core.exceptions import ResourceExistsError

            with self._errors(f"container {zone!r}"):
                try:
                    client.create_container()
                except ResourceExistsError:
                    pass
            self._ready.add(zone)
        return client

    def _blob(self, zone: str, name: str):
        return self._container(zone).get_blob_client(validate_name(name))

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn the SDK's exceptions into one-line StorageErrors."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError, ServiceRequestError

        try:
            yield
        except ResourceNotFoundError:
            raise StorageNotFound(f"{what} does not exist at {self.endpoint}") from None
        except ServiceRequestError as exc:
            raise StorageError(
                f"blob storage unreachable at {self.endpoint} ({_first_line(exc)}); "
                f"start Azurite with `make azurite` or set ${ENV_CONNECTION}"
            ) from None
        except AzureError as exc:
            raise StorageError(f"blob storage error on {what}: {_first_line(exc)}") from None

    def _list(self, zone: str) -> list[str]:
        with self._errors(f"container {zone!r}"):
            return sorted(b.name for b in self._container(zone).list_blobs() if _NAME.fullmatch(b.name))

    def list_raw(self) -> list[str]:
        return self._list(RAW)

    def list_curated(self) -> list[str]:
        return self._list(CURATED)

    def _open(self, zone: str, name: str) -> BinaryIO:
        blob = self._blob(zone, name)
        with self._errors(f"blob {zone}/{name}"):
            downloader = blob.download_blob(max_concurrency=1)
        return io.BufferedReader(_DownloadReader(downloader, self, f"blob {zone}/{name}"), buffer_size=1024 * 1024)  # type: ignore[return-value]

    def open_raw(self, name: str) -> BinaryIO:
        return self._open(RAW, name)

    def open_curated(self, name: str) -> BinaryIO:
        return self._open(CURATED, name)

    def _exists(self, zone: str, name: str) -> bool:
        blob = self._blob(zone, name)
        with self._errors(f"blob {zone}/{name}"):
            return bool(blob.exists())

    def exists_raw(self, name: str) -> bool:
        return self._exists(RAW, name)

    def exists_curated(self, name: str) -> bool:
        return self._exists(CURATED, name)

    @contextlib.contextmanager
    def _write(self, zone: str, name: str) -> Iterator[BinaryIO]:
        blob = self._blob(zone, name)
        writer = _BlockWriter(blob, self, f"blob {zone}/{name}", self.block_size)
        try:
            yield writer  # type: ignore[misc]
            writer.commit()
        finally:
            writer.discard()  # uncommitted blocks are never visible; Azure drops them after a week

    def write_raw(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._write(RAW, name)

    def write_curated(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._write(CURATED, name)

    def delete_curated(self, name: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blob(CURATED, name)
        with self._errors(f"blob {CURATED}/{name}"):
            try:
                blob.delete_blob()
                return True
            except ResourceNotFoundError:
                return False


class _DownloadReader(io.RawIOBase):
    """A blob download as a raw binary stream, read chunk by chunk (memory stays flat)."""

    def __init__(self, downloader, store: BlobStorage, what: str):
        self._downloader = downloader
        self._store = store
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with self._store._errors(self._what):
            data = self._downloader.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


class _BlockWriter(io.RawIOBase):
    """Buffers writes and stages them as blocks; nothing is visible until commit()."""

    def __init__(self, blob, store: BlobStorage, what: str, block_size: int = BLOCK_SIZE):
        self._blob = blob
        self._store = store
        self._what = what
        self._block_size = block_size
        self._buffer = bytearray()
        self._blocks: list[str] = []
        self._prefix = uuid.uuid4().hex
        self._written = 0
        self._committed = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a closed blob writer")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= self._block_size:
            self._stage(bytes(self._buffer[: self._block_size]))
            del self._buffer[: self._block_size]
        return len(view)

    def tell(self) -> int:
        return self._written

    def _stage(self, data: bytes) -> None:
        # Block ids must all have the same length: a per-write prefix plus a fixed-width index.
        block_id = base64.b64encode(f"{self._prefix}-{len(self._blocks):08d}".encode()).decode()
        with self._store._errors(self._what):
            self._blob.stage_block(block_id, data, length=len(data))
        self._blocks.append(block_id)

    def commit(self) -> None:
        from azure.storage.blob import BlobBlock, ContentSettings

        if self._buffer or not self._blocks:
            self._stage(bytes(self._buffer))
            self._buffer.clear()
        with self._store._errors(self._what):
            self._blob.commit_block_list(
                [BlobBlock(block_id=b) for b in self._blocks],
                content_settings=ContentSettings(content_type="text/csv"),
            )
        self._committed = True
        super().close()

    def discard(self) -> None:
        self._buffer.clear()
        self._blocks.clear()
        if not self.closed:
            super().close()

    def close(self) -> None:
        # pyarrow closes its sink when a writer finishes; committing is the context manager's job.
        pass


def _zone(zone: str) -> str:
    if zone not in ZONES:
        raise StorageError(f"unknown zone {zone!r}: expected one of {', '.join(ZONES)}")
    return zone


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
