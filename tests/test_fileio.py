"""fileio.py: atomic writes replace the target only on success and leave no temporary file."""

from __future__ import annotations

import os
import stat

import pytest

import fileio


def test_write_atomic_text_and_bytes(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    assert fileio.write_atomic(target, "a,b\n1,2\n") == target
    assert target.read_bytes() == b"a,b\n1,2\n"
    fileio.write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with fileio.atomic_write(target) as handle:
            handle.write(b"half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        fileio.write_atomic(tmp_path / "f", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640
