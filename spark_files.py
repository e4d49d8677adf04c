"""Where the Spark engine reads and writes: local paths, or URIs through Hadoop's FileSystem.

A local path (`raw/new_data_20261126.csv`) goes through Python's file API and the project's
atomic writer; a URI (`abfss://raw@ACCOUNT.dfs.core.windows.net/...` on Synapse, Databricks or
Azure ML serverless Spark, `file:///...` anywhere) goes through the Hadoop FileSystem of the
running Spark session; the copy into the output runs inside the JVM, so no byte of the rows
crosses into Python. A helper module: it imports no stage script.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import storage


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def for_location(spark, location: str | Path) -> "LocalFiles | HadoopFiles":
    """The file API for `location`: Hadoop's for a URI, else the local disk's."""
    return HadoopFiles(spark) if is_uri(location) else LocalFiles()


def sibling(location: str | Path, name: str) -> str | Path:
    """`name` in the same folder as `location` (a Path for a path, a string for a URI)."""
    if is_uri(location):
        return f"{str(location).rstrip('/').rsplit('/', 1)[0]}/{name}"
    return Path(location).parent / name


def name_of(location: str | Path) -> str:
    return str(location).rstrip("/").rsplit("/", 1)[-1]


class LocalFiles:
    """Local paths: Python's file API and storage.write_file (temporary name, then rename)."""

    def spark_path(self, location: str | Path) -> str:
        return Path(location).resolve().as_uri()

    def head(self, location: str | Path, size: int) -> bytes:
        try:
            with open(location, "rb") as handle:
                return handle.read(size)
        except FileNotFoundError:
            raise storage.StorageNotFound(f"{location} does not exist") from None
        except OSError as exc:
            raise storage.StorageError(f"cannot read {location}: {exc.strerror}") from None

    def parts(self, folder: str | Path) -> list[tuple[str, int]]:
        """The non-empty part-* files of a Spark output folder, in name (= partition) order."""
        found = sorted(Path(folder).glob("part-*"), key=lambda p: p.name)
        return [(str(p), size) for p in found if (size := p.stat().st_size)]

    def read_range(self, location: str, start: int, size: int) -> bytes:
        with open(location, "rb") as handle:
            handle.seek(start)
            return handle.read(size)

    def assemble(self, output: str | Path, header: bytes, pieces: list[tuple[str, int]]) -> None:
        """Write header + the first `length` bytes of each piece into `output`, atomically."""
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with storage.write_file(Path(output)) as sink:
            sink.write(header)
            for piece, length in pieces:
                _copy(piece, length, sink)

    def remove_tree(self, folder: str | Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def local_copy(self, folder: str | Path) -> Path:
        return Path(folder)


def _copy(piece: str, length: int, sink) -> None:
    """Copy the first `length` bytes of the file `piece` into `sink`."""
    with open(piece, "rb") as source:
        while length > 0:
            block = source.read(min(length, 1 << 20))
            if not block:
                raise storage.StorageError(f"{piece} is shorter than Spark reported")
            sink.write(block)
            length -= len(block)


class HadoopFiles:
    """URIs, through the session's Hadoop FileSystem (abfss://, wasbs://, dbfs:/, file://)."""

    def __init__(self, spark):
        self.jvm = spark.sparkContext._jvm
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, location: str):
        path = self.jvm.org.apache.hadoop.fs.Path(str(location))
        fs = path.getFileSystem(self.conf)
        fs.setWriteChecksum(False)  # no .crc files beside the output on file:// (a checksummed file system)
        return fs, path

    def spark_path(self, location: str | Path) -> str:
        return str(location)

    def head(self, location: str | Path, size: int) -> bytes:
        fs, path = self._fs(location)
        if not fs.exists(path):
            raise storage.StorageNotFound(f"{location} does not exist")
        return self.read_range(str(location), 0, min(size, fs.getFileStatus(path).getLen()))

    def parts(self, folder: str | Path) -> list[tuple[str, int]]:
        fs, path = self._fs(folder)
        found = [(s.getPath().getName(), s.getPath().toString(), s.getLen()) for s in fs.listStatus(path)]
        return [(uri, size) for name, uri, size in sorted(found) if name.startswith("part-") and size]

    def read_range(self, location: str, start: int, size: int) -> bytes:
        fs, path = self._fs(location)
        stream = fs.open(path)
        try:
            stream.seek(start)
            return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream, size))
        finally:
            stream.close()

    def assemble(self, output: str | Path, header: bytes, pieces: list[tuple[str, int]]) -> None:
        """Write into a hidden name beside `output`, then rename (atomic on ADLS Gen2 and local disks)."""
        fs, target = self._fs(output)
        hidden = self.jvm.org.apache.hadoop.fs.Path(str(sibling(output, f".{name_of(output)}.assembling.tmp")))
        sink = fs.create(hidden, True)
        try:
            sink.write(bytearray(header))
            for piece, length in pieces:
                piece_fs, piece_path = self._fs(piece)
                source = piece_fs.open(piece_path)
                try:
                    # commons-io's (in, out, offset, length): Hadoop's copyBytes has an int overload py4j would pick
                    self.jvm.org.apache.commons.io.IOUtils.copyLarge(source, sink, 0, length)
                finally:
                    source.close()
            sink.close()
            if fs.exists(target):
                fs.delete(target, False)
            if not fs.rename(hidden, target):
                raise storage.StorageError(f"cannot rename the assembled file to {output}")
        except BaseException:
            fs.delete(hidden, False)
            raise

    def remove_tree(self, folder: str | Path) -> None:
        fs, path = self._fs(folder)
        fs.delete(path, True)

    def local_copy(self, folder: str | Path) -> Path:
        """A folder copied under a new temporary folder on the driver's disk (the caller removes it)."""
        fs, path = self._fs(folder)
        target = Path(tempfile.mkdtemp(prefix="spark-model-"))
        fs.copyToLocalFile(False, path, self.jvm.org.apache.hadoop.fs.Path(target.as_uri()), True)
        return target

