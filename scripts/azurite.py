"""The one way this project starts Azurite's blob service, for the tests and for the demos.

Runs node_modules/.bin/azurite-blob (installed by `make install`, which runs npm ci) on
127.0.0.1 on a free port, waits until it answers (with a deadline) and stops it by its PID.
Tests use `running_azurite(...)`, which yields the connection string, or `Azurite` to stop and
restart one service mid-test. On the command line it runs a command with Azurite up and
$AZURE_STORAGE_CONNECTION_STRING pointing at it (what `make demo-blob` does), or serves until
Ctrl-C:

    python -m scripts.azurite --in-memory -- python pipeline_run_batch.py --storage blob --date 2026-11-26
    python -m scripts.azurite --location .azurite --port 10000
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-blob"
READY_TIMEOUT = 60.0  # seconds; a cold Node start on a busy 2-core machine takes a few
ENV_CONNECTION = "AZURE_STORAGE_CONNECTION_STRING"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connection_string(port: int) -> str:
    """The Azurite development account's connection string for a blob endpoint on `port`."""
    from storage import AZURITE_CONNECTION_STRING  # the account's one home

    default = "127.0.0.1:10000"
    assert default in AZURITE_CONNECTION_STRING, AZURITE_CONNECTION_STRING
    return AZURITE_CONNECTION_STRING.replace(default, f"127.0.0.1:{port}")


class Azurite:
    """One azurite-blob service on a fixed loopback port; its data in `location` or in memory.

    `log` is a file that gets the service's own output (appended, across restarts); None leaves
    it on this process's stdout.
    """

    def __init__(self, location: Path, port: int | None = None, *, in_memory: bool = False,
                 log: Path | None = None):
        self.location, self.in_memory, self.log = Path(location), in_memory, log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/devstoreaccount1"
        self.connection_string = connection_string(self.port)
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        storage = ["--inMemoryPersistence"] if self.in_memory else ["--location", str(self.location)]
        return [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), *storage,
                "--skipApiVersionCheck", "--disableTelemetry", "--silent"]

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the service and return once it answers; a clear RuntimeError if it does not."""
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run `make install` (it runs npm ci)")
        self.location.mkdir(parents=True, exist_ok=True)
        output = open(self.log, "ab") if self.log else None
        try:
            # Its own session: a Ctrl-C meant for the caller does not reach it; we stop it by PID.
            self.proc = subprocess.Popen(self.command(), cwd=self.location, stdout=output,
                                         stderr=subprocess.STDOUT if output else None, start_new_session=True)
        finally:
            if output:
                output.close()  # the child holds its own copy
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite-blob exited with {self.proc.returncode} before answering"
                                   f"{self._log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}?comp=list", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (403 without a signature): it is up
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"azurite-blob did not answer on {self.url} within {timeout:g} s"
                                       f"{self._log_tail()}") from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        """': ' and the service's last log line (its reason, when it stopped), or nothing."""
        lines = self.log.read_text(errors="replace").split("\n") if self.log and self.log.exists() else []
        last = [line.strip() for line in lines if line.strip()][-1:]
        return f": {last[0]}" if last else ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (it saves what it holds to `location`), then SIGKILL if it lingers."""
        if not self.running:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def running_azurite(location: Path, port: int | None = None, *, in_memory: bool = False,
                    log: Path | None = None) -> Iterator[str]:
    """Azurite up on 127.0.0.1 (a free port unless `port`) for the block; yields its connection string."""
    azurite = Azurite(location, port, in_memory=in_memory, log=log)
    azurite.start()
    try:
        yield azurite.connection_string
    finally:
        azurite.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run Azurite's blob service on 127.0.0.1 and, if given, a command that uses it "
                    f"(${ENV_CONNECTION} set for it); stop the service when the command ends or on Ctrl-C.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--location", type=Path, default=None,
                        help="folder for the service's data (default: a temporary folder, removed afterwards)")
    parser.add_argument("--in-memory", action="store_true", help="keep the data in memory only")
    parser.add_argument("--port", type=int, default=None, help="blob port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="command to run once the service answers, after `--`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # A service manager's SIGTERM unwinds like Ctrl-C, so Azurite is stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="azurite-") as scratch:
        return serve(Azurite(args.location or Path(scratch), args.port, in_memory=args.in_memory), command)


def serve(azurite: Azurite, command: list[str]) -> int:
    """Start `azurite`, run `command` against it (or wait for Ctrl-C), stop it; the command's exit code."""
    try:
        azurite.start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"Azurite pid {azurite.proc.pid} on http://127.0.0.1:{azurite.port} "
              "(containers raw and curated are created on first use)", flush=True)
        if not command:
            print(f"{ENV_CONNECTION}={azurite.connection_string}\nCtrl-C stops it.", flush=True)
            azurite.proc.wait()
            return azurite.proc.returncode
        return subprocess.run(command, env={**os.environ, ENV_CONNECTION: azurite.connection_string}).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        azurite.stop()
        print(f"Azurite stopped (pid {azurite.proc.pid})", flush=True)


if __name__ == "__main__":
    if str(ROOT) not in sys.path:  # run as a file (python scripts/azurite.py), not with -m: storage is at the root
        sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
