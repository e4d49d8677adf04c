"""scripts/azurite.py: the one Azurite launcher of the fixtures and `make demo-blob`."""

from __future__ import annotations

import os
import re
import socket
import sys

import pytest
from azure.storage.blob import BlobServiceClient

from conftest import run_script
from scripts.azurite import Azurite, running_azurite


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_running_azurite_serves_blobs_and_stops(tmp_path):
    with running_azurite(tmp_path / "data", log=tmp_path / "azurite.log") as connection:
        port = int(re.search(r"BlobEndpoint=http://127\.0\.0\.1:(\d+)/devstoreaccount1;", connection)[1])
        service = BlobServiceClient.from_connection_string(connection)
        service.create_container("raw")
        assert [c.name for c in service.list_containers()] == ["raw"]
    assert refuses(port)


def test_a_stopped_service_comes_back_with_its_data_on_the_same_port(tmp_path):
    azurite = Azurite(tmp_path / "data", log=tmp_path / "azurite.log")
    azurite.start()
    try:
        BlobServiceClient.from_connection_string(azurite.connection_string).create_container("curated")
        azurite.stop()
        assert not azurite.running and refuses(azurite.port)
        azurite.start()
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        assert [c.name for c in service.list_containers()] == ["curated"]
    finally:
        azurite.stop()


def test_the_cli_runs_a_command_against_it_and_stops_it(tmp_path):
    show = "import os; print(os.environ['AZURE_STORAGE_CONNECTION_STRING']); raise SystemExit(3)"
    done = run_script("-m", "scripts.azurite", "--in-memory", "--", sys.executable, "-c", show)
    assert done.returncode == 3, done.stderr  # the command's own exit code
    ours = [line for line in done.stdout.splitlines() if not line.startswith(("Azurite Blob", "In-memory"))]
    assert len(ours) == 3, done.stdout
    started = re.fullmatch(r"Azurite pid (\d+) on http://127\.0\.0\.1:(\d+) "
                           r"\(containers raw and curated are created on first use\)", ours[0])
    pid, port = int(started[1]), int(started[2])
    assert ours[1].startswith("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;")
    assert ours[1].endswith(f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    assert ours[2] == f"Azurite stopped (pid {pid})"
    assert refuses(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_service_that_cannot_start_is_one_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError) as failed:
            with running_azurite(tmp_path / "data", port, log=tmp_path / "azurite.log"):
                pass
        done = run_script("-m", "scripts.azurite", "--port", str(port), "--", "true")
    assert str(failed.value) == ("azurite-blob exited with 1 before answering: Exit due to unhandled error: "
                                 f"listen EADDRINUSE: address already in use 127.0.0.1:{port}")
    # On the command line its own words are on the terminal, then ours, one line.
    assert done.returncode == 1 and "Azurite stopped" not in done.stdout
    assert done.stderr.splitlines() == [f"Exit due to unhandled error: listen EADDRINUSE: address already in use "
                                        f"127.0.0.1:{port}", "error: azurite-blob exited with 1 before answering"]
