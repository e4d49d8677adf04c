"""endpoint_workers.py: `--workers N` gives every worker a listening socket of its own, so the
kernel spreads connections over the workers (a shared socket can hand them all to one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest

from conftest import ROOT, ApiServer, free_port, wait_until


def _sockets(pid: int) -> set[int]:
    """The socket inodes a process holds open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _tcp(port: int) -> list[tuple[str, int]]:
    """(state, inode) of the IPv4 TCP sockets whose local port is `port` (01 established, 0A listening)."""
    rows = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                rows.append((fields[3], int(fields[9])))
    return rows


def _workers(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == parent:
                        children.append(int(entry))
            except OSError:
                continue
    return children


def test_two_workers_each_listen_and_share_the_connections(trained_registry, tmp_path):
    server = ApiServer(trained_registry, tmp_path / "api.log", {}, "--workers", "2")
    try:
        server.wait_ready()
        def listening() -> set[int]:
            return {inode for state, inode in _tcp(server.port) if state == "0A"}

        wait_until(lambda: len(listening()) == 2, 30, "both workers to listen")  # the second may start later
        workers = _workers(server.proc.pid)
        listening = listening()
        assert len(listening) == 2  # one listening socket per worker, none shared
        owners = {pid: _sockets(pid) & listening for pid in workers}
        assert sorted(len(mine) for mine in owners.values() if mine) == [1, 1]
        # 16 connections opened at once: each lands on a worker's own socket, and both get some.
        clients = [httpx.Client(base_url=server.url, timeout=5) for _ in range(16)]
        try:
            for client in clients:
                assert client.get("/health").status_code == 200
            established = {inode for state, inode in _tcp(server.port) if state == "01"}
            per_worker = sorted(len(_sockets(pid) & established) for pid in workers if _sockets(pid) & listening)
            assert sum(per_worker) == 16 and per_worker[0] >= 1, per_worker
        finally:
            for client in clients:
                client.close()
    finally:
        server.stop()
    wait_until(lambda: not _workers(server.proc.pid) and not _tcp(server.port), 15, "the workers to exit")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_port_is_one_line_and_no_worker_starts(trained_registry, workers):
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        run = subprocess.run([sys.executable, "app_score_api.py", "--port", str(port), "--workers", workers,
                              "--registry-dir", str(trained_registry)], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    finally:
        holder.close()
    assert run.returncode == 3
    assert run.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"  # the only line


def test_a_second_server_on_the_same_port_is_refused_not_joined(trained_registry, tmp_path):
    """The parent's socket has no SO_REUSEPORT: a second `--workers 2` on a serving port stops with
    one line, as with uvicorn's own socket, instead of taking half the first one's connections."""
    first = ApiServer(trained_registry, tmp_path / "first.log", {}, "--workers", "2")
    try:
        first.wait_ready()
        wait_until(lambda: len([1 for state, _ in _tcp(first.port) if state == "0A"]) == 2, 30, "both workers")
        second = subprocess.run([sys.executable, "app_score_api.py", "--port", str(first.port), "--workers", "2",
                                 "--registry-dir", str(trained_registry)], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        assert second.returncode == 3
        assert second.stderr.strip().splitlines()[-1] == \
            f"error: cannot listen on 127.0.0.1:{first.port}: Address already in use"
        assert len([1 for state, _ in _tcp(first.port) if state == "0A"]) == 2
    finally:
        first.stop()


def test_a_worker_that_cannot_bind_stops_with_the_startup_failure_code(capsys):
    """If another program takes the port before a worker listens, the worker exits with uvicorn's
    startup-failure code (the supervisor then stops) rather than being restarted forever."""
    import endpoint_workers

    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        with pytest.raises(SystemExit) as info:
            endpoint_workers._listener(socket.AF_INET, ("127.0.0.1", port))
    finally:
        holder.close()
    assert info.value.code == 3
    assert capsys.readouterr().err.strip() == f"error: a worker cannot listen on 127.0.0.1:{port}: Address already in use"


def test_one_worker_says_where_it_listens_and_ctrl_c_ends_it_cleanly(trained_registry, tmp_path):
    import signal

    server = ApiServer(trained_registry, tmp_path / "api.log", {})
    try:
        server.wait_ready()
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=15) == 0
    finally:
        server.stop()
    log = (tmp_path / "api.log").read_text()
    assert f"Uvicorn running on http://127.0.0.1:{server.port} (Press CTRL+C to quit)" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
