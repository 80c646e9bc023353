"""Several uvicorn workers, each on a listening socket of its own (``SO_REUSEPORT``).

uvicorn's own supervisor shares one listening socket between its workers. Whichever worker
wakes first accepts the whole backlog, so a client that opens its keep-alive pool at once
(a payment gateway, a load balancer) lands almost entirely on one worker: measured here,
10:1 between two workers, and the busy one saturates while the other idles. With one
``SO_REUSEPORT`` socket per worker the kernel spreads new connections over the workers by a
hash of their addresses.

The supervisor binds every socket before it starts a worker (a port in use fails at once,
also one that another fraudops server listens on with ``SO_REUSEPORT``),
keeps them open, restarts a worker that dies on the same socket (connections queued on it
wait instead of being reset), and stops the workers on SIGTERM or SIGINT. A worker stops by
itself when its supervisor dies (``PR_SET_PDEATHSIG``), so a killed server leaves nothing
listening.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

import uvicorn
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger("fraudops.serving")

#: seconds a stopping worker gets to finish its requests before SIGKILL
STOP_GRACE_S = 15.0
#: a worker that died sooner than this after its start is restarted after as long a pause
MIN_UPTIME_S = 2.0
#: so many early exits in a row mean the app cannot start (an import error, say): stop
MAX_EARLY_EXITS = 5


def listening_sockets(host: str, port: int, n: int, *, backlog: int = 2048) -> list[socket.socket]:
    """``n`` TCP sockets listening on one port with ``SO_REUSEPORT`` (port 0: a free one).

    ``SO_REUSEPORT`` would also let a second server of the same user join the port without
    an error and take part of its traffic, so the port is first bound once without it: a port
    in use (by anyone) is refused, and once these sockets listen, a server started later is
    refused the same way.
    """
    if not hasattr(socket, "SO_REUSEPORT") or sys.platform != "linux":
        raise OSError(errno.ENOTSUP, "several workers need Linux's SO_REUSEPORT (one listening "
                                     "socket per worker); run one worker per process here")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror} "
                                     "(another server runs there?)") from None
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def run_workers(config: uvicorn.Config, workers: int) -> int:
    """Serve ``config`` with ``workers`` processes until SIGTERM or SIGINT; the exit status.

    Returns 1 when a worker could not start its app (its log says why; every restart would
    fail alike), 0 after a requested stop. A worker that died otherwise is replaced, after a
    pause if it had just started.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    sockets = listening_sockets(config.host, config.port, workers, backlog=config.backlog)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    spawn = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    started: list[float] = []
    early = [0] * workers   # exits in a row within MIN_UPTIME_S of the start, per slot
    status = 0
    try:
        for sock in sockets:
            procs.append(_start(spawn, config, sock))
            started.append(time.monotonic())
        while not stop.is_set():
            wait([p.sentinel for p in procs], timeout=0.5)
            for i, proc in enumerate(procs):
                if proc.is_alive() or stop.is_set():
                    continue
                early[i] = early[i] + 1 if time.monotonic() - started[i] < MIN_UPTIME_S else 0
                if proc.exitcode == STARTUP_FAILURE or early[i] > MAX_EARLY_EXITS:
                    logger.error("worker %s could not start (exit code %s); stopping the server",
                                 proc.pid, proc.exitcode)
                    status = 1
                    stop.set()
                    break
                logger.warning("worker %s exited with %s; starting another", proc.pid,
                               proc.exitcode)
                if early[i] and stop.wait(MIN_UPTIME_S):   # no hot restart loop
                    break
                procs[i] = _start(spawn, config, sockets[i])
                started[i] = time.monotonic()
    finally:
        _stop_all(procs)
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _start(spawn: SpawnContext, config: uvicorn.Config, sock: socket.socket) -> BaseProcess:
    proc = spawn.Process(target=_worker, args=(config, sock, os.getpid()), name="fraudops-worker")
    proc.start()
    return proc


def _stop_all(procs: list[BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def _worker(config: uvicorn.Config, sock: socket.socket,
            parent: int) -> None:  # pragma: no cover - runs in the child
    _die_with_parent(parent)
    config.workers = 1
    uvicorn.Server(config).run(sockets=[sock])


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when its supervisor dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:   # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
