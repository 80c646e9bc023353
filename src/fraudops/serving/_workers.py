"""Several uvicorn workers behind one listening socket, each connection handed to the worker
with the fewest open connections.

uvicorn's own supervisor shares one listening socket between its workers. Whichever worker
wakes first accepts the whole backlog, so a client that opens its keep-alive pool at once
(a payment gateway, a load balancer) lands almost entirely on one worker: measured here,
10:1 between two workers, and the busy one saturates while the other idles. One
``SO_REUSEPORT`` socket per worker (sessions 3 to 6) lets the kernel spread connections by a
hash of their addresses: 32 connections split anywhere from 16/16 to 25/7 in the benchmark,
and the passes with a 65/35 split or worse had the worst p99 (7–11 ms against 2.5–6 ms).

Here the supervisor accepts every connection on a thread of its own and passes the socket
(``SCM_RIGHTS`` over a Unix socket pair) to the live worker with the fewest open connections,
which adopts it into its event loop. A connection costs one hand-off when it opens (tens of
µs); its requests then go straight to its worker as before. The supervisor binds the port
before it starts a worker (a port in use fails at once), restarts a worker that dies (its
connections die with it; new ones go to the others meanwhile, and wait in the backlog while no
worker is up), and stops the workers on SIGTERM or SIGINT. A worker stops by itself when its
supervisor dies (``PR_SET_PDEATHSIG``), so a killed server leaves nothing listening.
"""

from __future__ import annotations

import asyncio
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
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger("fraudops.serving")

#: seconds a stopping worker gets to finish its requests before SIGKILL
STOP_GRACE_S = 15.0
#: a worker that died sooner than this after its start is restarted after as long a pause
MIN_UPTIME_S = 2.0
#: so many early exits in a row mean the app cannot start (an import error, say): stop
MAX_EARLY_EXITS = 5
#: how often a connection that no worker could take is offered again, in seconds
RETRY_HANDOFF_S = 0.05


def listening_socket(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A TCP socket listening on ``host:port`` (port 0: a free one); a port in use (by anyone,
    another fraudops server included) is refused with the address in the message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror} "
                                 "(another server runs there?)") from None
    return sock


class _Slot:
    """One worker's place: its process, the supervisor's end of its hand-off channel, its
    open connections as the supervisor counts them (handed over minus closed), and whether
    it serves yet. The worker keeps ``closed`` and ``ready`` in shared memory."""

    def __init__(self, spawn: SpawnContext) -> None:
        self.closed: Synchronized[int] = spawn.Value("q", 0, lock=False)
        self.ready: Synchronized[int] = spawn.Value("b", 0, lock=False)
        self.proc: BaseProcess | None = None
        self.channel: socket.socket | None = None
        self.handed = 0
        self.started = 0.0

    def open_connections(self) -> int:
        return self.handed - self.closed.value


class _Dispatcher:
    """Accepts connections and hands each to the slot with the fewest open connections."""

    def __init__(self, listener: socket.socket, slots: list[_Slot], stop: threading.Event) -> None:
        self.listener = listener
        self.slots = slots
        self.stop = stop
        self.lock = threading.Lock()   # slots change on a restart
        self.turn = 0
        self.thread = threading.Thread(target=self._run, name="fraudops-dispatch", daemon=True)

    def _run(self) -> None:
        self.listener.settimeout(0.2)   # so that a stop is seen
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:   # the listener closed: the server stops
                return
            with contextlib.suppress(OSError):   # a Unix socket, or the client already left
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                while not self._hand_over(conn) and not self.stop.wait(RETRY_HANDOFF_S):
                    pass   # no worker up: the connection waits, the next ones in the backlog
            finally:
                conn.close()   # the worker holds its own copy now

    def _hand_over(self, conn: socket.socket) -> bool:
        """To the ready worker with the fewest open connections; while none is ready (the
        server starts), to one that is starting, where the connection waits."""
        with self.lock:
            # ties go round the workers: short connections one after another (no keep-alive)
            # would otherwise all land on the first
            self.turn = (self.turn + 1) % len(self.slots)
            order = self.slots[self.turn:] + self.slots[:self.turn]
            for slot in sorted(order, key=lambda s: (not s.ready.value, s.open_connections())):
                channel = slot.channel
                if channel is None or slot.proc is None or not slot.proc.is_alive():
                    continue
                try:
                    socket.send_fds(channel, [b"c"], [conn.fileno()])
                except OSError:   # dead (restarted by the supervisor's loop) or stuck (full)
                    continue
                slot.handed += 1
                return True
        return False


def run_workers(config: uvicorn.Config, workers: int) -> int:
    """Serve ``config`` with ``workers`` processes until SIGTERM or SIGINT; the exit status.

    Returns 1 when a worker could not start its app (its log says why; every restart would
    fail alike), 0 after a requested stop. A worker that died otherwise is replaced, after a
    pause if it had just started.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    if sys.platform != "linux" or not hasattr(socket, "send_fds"):
        raise OSError(errno.ENOTSUP, "several workers need Linux (connections are handed to "
                                     "them over Unix socket pairs); run one worker per process")
    listener = listening_socket(config.host, config.port, backlog=config.backlog)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    spawn = multiprocessing.get_context("spawn")
    slots = [_Slot(spawn) for _ in range(workers)]
    dispatcher = _Dispatcher(listener, slots, stop)
    early = [0] * workers   # exits in a row within MIN_UPTIME_S of the start, per slot
    status = 0
    try:
        for slot in slots:
            _start(spawn, config, slot, dispatcher.lock)
        dispatcher.thread.start()
        while not stop.is_set():
            wait([s.proc.sentinel for s in slots if s.proc is not None], timeout=0.5)
            for i, slot in enumerate(slots):
                proc = slot.proc
                if proc is None or proc.is_alive() or stop.is_set():
                    continue
                early[i] = early[i] + 1 if time.monotonic() - slot.started < MIN_UPTIME_S else 0
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
                _start(spawn, config, slot, dispatcher.lock)
    finally:
        stop.set()
        if dispatcher.thread.is_alive():   # it sees the stop within its accept timeout
            dispatcher.thread.join(2.0)
        listener.close()
        _stop_all([s.proc for s in slots if s.proc is not None])
        for slot in slots:
            if slot.channel is not None:
                slot.channel.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _start(spawn: SpawnContext, config: uvicorn.Config, slot: _Slot, lock: threading.Lock) -> None:
    """(Re)start ``slot``'s worker on a new channel; its count starts from zero."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)   # a stuck worker's full channel must not stop the dispatcher
    proc = spawn.Process(target=_worker, args=(config, theirs, slot.closed, slot.ready,
                                               os.getpid()), name="fraudops-worker")
    with lock:
        if slot.channel is not None:
            slot.channel.close()
        slot.closed.value = 0
        slot.ready.value = 0
        slot.handed = 0
        slot.channel = ours
        proc.start()
        slot.proc = proc
        slot.started = time.monotonic()
    theirs.close()


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


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when its supervisor dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:   # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _worker(config: uvicorn.Config, channel: socket.socket, closed: Synchronized[int],
            ready: Synchronized[int], parent: int) -> None:  # pragma: no cover - in the child
    _die_with_parent(parent)
    config.workers = 1
    _AdoptingServer(config, channel, closed, ready).run()


class _AdoptingServer(uvicorn.Server):
    """uvicorn's server without a listening socket of its own: it serves the connections its
    supervisor hands over on ``channel``, counts the closed ones in ``closed`` and sets
    ``ready`` once its app has started."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket,
                 closed: Synchronized[int], ready: Synchronized[int]) -> None:
        super().__init__(config)
        self.channel = channel
        self.closed = closed
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])   # the app's lifespan; nothing to listen on
        if self.should_exit:
            return
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._receive)
        self.ready.value = 1

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.ready.value = 0
        with contextlib.suppress(ValueError, OSError):   # no new connections from here on
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=[])

    def _receive(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.channel, 16, 16)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:   # the supervisor is gone: stop
                asyncio.get_running_loop().remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                self._adopt(socket.socket(fileno=fd))

    def _adopt(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(self._protocol, conn))
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:   # the client left already
            self.closed.value += 1

    def _protocol(self) -> asyncio.Protocol:
        """What uvicorn's ``startup`` makes per connection, counting its end."""
        config = self.config
        protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state)
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            self.closed.value += 1
            lost(exc)

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol
