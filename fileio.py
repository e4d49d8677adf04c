"""Atomic file writes: the one way every module writes a file a reader may look at.

A write goes to a hidden temporary file in the target's folder, is flushed and fsynced, and
is renamed over the target only when the block exits cleanly; on any error the temporary
file is removed and the old target (if any) is left as it was. The new file gets the usual
permissions (0666 minus the umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

BUFFER_SIZE = 1024 * 1024


@contextlib.contextmanager
def atomic_write(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` only when the block exits cleanly (temp + fsync + rename).

    The parent folder is created when missing; OSError from creating it or the temporary
    file propagates (callers turn it into their own one-line error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb", buffering=BUFFER_SIZE) as handle:
            yield handle  # type: ignore[misc]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path | str, data: bytes | str) -> Path:
    """Write `data` (text is UTF-8 encoded, newlines kept as given) to `path` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_write(path) as handle:
        handle.write(payload)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
