"""Run the endpoint under uvicorn with one or several worker processes, each on a listening
socket of its own.

uvicorn's --workers shares one listening socket between the workers: the first worker the
kernel wakes accepts every connection waiting, so a client that opens its connections at once
(a load balancer's pool, wrk) can land them all on one worker while the other idles (measured:
`--workers 2` gave 1.0x to 1.7x one worker, run to run). Here the parent reserves the port with
a socket that never listens, and each worker, when it unpickles its copy, opens a socket of its
own on the same address with SO_REUSEPORT: the kernel then spreads new connections over the
workers' sockets (Linux; elsewhere the shared socket as uvicorn has it). uvicorn's supervisor
(restarts, signals) is unchanged.

The parent's socket has SO_REUSEADDR but not SO_REUSEPORT, so a second server started on the
same port is refused as with uvicorn's own socket, rather than joining the first one's workers.
One difference: connections still waiting in a worker's queue when that worker exits (a crash,
a restart) are reset instead of going to another worker, unless the kernel migrates them
(`sysctl net.ipv4.tcp_migrate_req=1`, Linux 5.14+).
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE


def _listener(family: int, address: tuple) -> socket.socket:
    """What each worker unpickles: a socket of its own on `address`, with SO_REUSEPORT. A worker that
    cannot bind (another program took the port meanwhile) exits with uvicorn's startup-failure code,
    which stops the parent instead of restarting the worker again and again."""
    return _bind(socket.socket, family, address, reuse_port=True, who="a worker ")


class WorkerSocket(socket.socket):
    """The parent's socket: reserves the address; a worker that unpickles it gets a socket of its own."""

    def __reduce_ex__(self, protocol: int) -> tuple:
        return _listener, (self.family, self.getsockname())


def _bind(kind: type[socket.socket], family: int, address: tuple, reuse_port: bool = False,
          who: str = "") -> socket.socket:
    """A socket of `kind` bound to `address` with SO_REUSEADDR (and SO_REUSEPORT for a worker's),
    or one line and uvicorn's startup-failure code when the address is taken (before any model is
    loaded). The parent's socket has no SO_REUSEPORT: see the module's note."""
    sock = kind(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        print(f"error: {who}cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    sock.set_inheritable(True)
    return sock


def run(app: str, *, host: str, port: int, workers: int = 1, **options: Any) -> None:
    """Serve `app` (an import string) with uvicorn: one worker on this process, or several under
    uvicorn's supervisor, each on a socket of its own (Linux) or sharing one (elsewhere)."""
    app_dir = options.pop("app_dir", None)
    if app_dir is not None:  # as uvicorn.run does; spawned workers start with the parent's sys.path
        sys.path.insert(0, app_dir)
    config = uvicorn.Config(app, host=host, port=port, workers=workers, **options)
    spread = workers > 1 and sys.platform.startswith("linux")  # elsewhere SO_REUSEPORT does not spread connections
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _bind(WorkerSocket if spread else socket.socket, family, (host, port))
    where = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if workers <= 1:
        # uvicorn.run logs this itself, but not for a socket it is handed
        logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", where)
        server = uvicorn.Server(config)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown; uvicorn.run hides it too
            pass
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    from uvicorn.supervisors import Multiprocess

    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s with %d workers%s (Press CTRL+C to quit)", where, workers,
        ", each on a socket of its own" if spread else "")
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)  # uvicorn.run exits 0 here; a worker that could not start is a failed start
