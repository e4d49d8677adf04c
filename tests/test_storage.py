"""storage.py: names, the local zones and the blob containers (on a real Azurite)."""

from __future__ import annotations

import os

import pytest

import cli
import storage
from conftest import free_port


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b.csv", "..", ".hidden.csv", "", "x y.csv",
                                  "caf\u00e9.csv", "a\\b.csv", "new_data_..csv", "a" * 201, None])
def test_bad_names_are_rejected(name):
    with pytest.raises(storage.StorageError, match="invalid file name"):
        storage.validate_name(name)


def test_names_and_dates():
    assert storage.validate_name("new_data_20261126.csv") == "new_data_20261126.csv"
    day = cli.parse_date("2026-11-26")
    assert storage.raw_name(day) == "new_data_20261126.csv"
    assert storage.curated_name(day) == "predictions_20261126.csv"
    assert storage.date_of("predictions_20261126.csv") == day
    assert storage.date_of("new_data_20261399.csv") is None and storage.date_of("notes.csv") is None
    for bad in ["../x", "2026-02-30", "2026-1-5", " 2026-11-26", "2026-11-26\n"]:
        with pytest.raises(cli.UsageError, match="invalid date"):
            cli.parse_date(bad)


def test_get_storage_chooses_by_argument_then_environment(monkeypatch):
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    assert storage.get_storage().kind == "local"
    monkeypatch.setenv("STORAGE_BACKEND", "blob")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    chosen = storage.get_storage()
    assert chosen.kind == "blob" and chosen.connection_string == storage.AZURITE_CONNECTION_STRING
    assert storage.get_storage("local").kind == "local"
    with pytest.raises(storage.StorageError, match="unknown storage 'ftp'"):
        storage.get_storage("ftp")


def test_local_zones_list_read_and_write_atomically(tmp_path):
    store = storage.LocalStorage(tmp_path / "raw", tmp_path / "curated")
    assert store.list_raw() == [] and store.list_curated() == []
    with store.write_raw("new_data_20261126.csv") as sink:
        sink.write(b"a,b\n1,2\n")
    with store.write_curated("predictions_20261126.csv") as sink:
        sink.write(b"old")
    assert store.list_raw() == ["new_data_20261126.csv"]
    with store.open_raw("new_data_20261126.csv") as handle:
        assert handle.read() == b"a,b\n1,2\n"
    assert oct((tmp_path / "raw" / "new_data_20261126.csv").stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    with pytest.raises(RuntimeError):
        with store.write_curated("predictions_20261126.csv") as sink:
            sink.write(b"half of a new")
            raise RuntimeError("failed half way")
    with store.open_curated("predictions_20261126.csv") as handle:
        assert handle.read() == b"old"  # the old file stays whole
    assert sorted(os.listdir(tmp_path / "curated")) == ["predictions_20261126.csv"]  # no temp left

    with store.write_curated("predictions_20261126.csv") as sink:
        sink.write(b"new")
    assert (tmp_path / "curated" / "predictions_20261126.csv").read_bytes() == b"new"
    assert store.exists_curated("predictions_20261126.csv") and not store.exists_raw("nope.csv")
    with pytest.raises(storage.StorageNotFound, match="nope.csv does not exist"):
        store.open_raw("nope.csv")
    with pytest.raises(storage.StorageError, match="invalid file name"):
        store.open_curated("../raw/new_data_20261126.csv")
    assert store.delete_curated("predictions_20261126.csv") and not store.delete_curated("predictions_20261126.csv")


def test_blob_zones_on_azurite(blob_connection):
    store = storage.BlobStorage(blob_connection, block_size=64 * 1024)
    assert store.list_raw() == [] and store.list_curated() == []  # containers created when missing
    names = {c.name for c in store.service.list_containers()}
    assert {"raw", "curated"} <= names

    payload = os.urandom(300 * 1024)  # five blocks of 64 KiB
    with store.write_raw("new_data_20261126.csv") as sink:
        for i in range(0, len(payload), 1000):
            sink.write(payload[i:i + 1000])
    assert store.list_raw() == ["new_data_20261126.csv"]
    blocks = store._blob("raw", "new_data_20261126.csv").get_block_list("committed")[0]
    assert len(blocks) == 5
    with store.open_raw("new_data_20261126.csv") as handle:
        assert handle.read(10) == payload[:10]
        assert handle.read() == payload[10:]

    with store.write_curated("predictions_20261126.csv") as sink:
        sink.write(b"old")
    with pytest.raises(RuntimeError):
        with store.write_curated("predictions_20261126.csv") as sink:
            sink.write(os.urandom(200 * 1024))  # blocks staged, never committed
            raise RuntimeError("failed half way")
    with store.open_curated("predictions_20261126.csv") as handle:
        assert handle.read() == b"old"
    with pytest.raises(RuntimeError):
        with store.write_curated("predictions_20261127.csv") as sink:
            sink.write(b"partial")
            raise RuntimeError("failed")
    assert store.list_curated() == ["predictions_20261126.csv"]
    assert not store.exists_curated("predictions_20261127.csv")

    with store.write_curated("empty.csv"):
        pass
    with store.open_curated("empty.csv") as handle:
        assert handle.read() == b""
    with pytest.raises(storage.StorageNotFound, match="does not exist"):
        store.open_raw("new_data_20990101.csv").read()
    assert store.location("curated", "x.csv").endswith("/devstoreaccount1/curated/x.csv")
    assert store.delete_curated("empty.csv") and not store.delete_curated("empty.csv")


def test_blob_unreachable_is_one_clear_error():
    port = free_port()
    store = storage.BlobStorage(storage.AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", f"127.0.0.1:{port}"))
    with pytest.raises(storage.StorageError) as info:
        store.list_raw()
    message = str(info.value)
    assert message.startswith(f"blob storage unreachable at http://127.0.0.1:{port}/devstoreaccount1")
    assert "make azurite" in message and "\n" not in message


def test_invalid_connection_string_is_a_storage_error():
    with pytest.raises(storage.StorageError, match="AZURE_STORAGE_CONNECTION_STRING"):
        storage.BlobStorage("not a connection string").list_raw()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
