"""The supervisor's listening socket and hand-off of connections: every worker gets its share,
the fewest open connections first, ready workers before starting ones; a port in use is
refused. (Real worker processes: test_server_process.py.)"""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fraudops.serving._workers import _Dispatcher, _Slot, listening_socket


class _Alive:
    """A worker process as the dispatcher sees it."""

    def __init__(self) -> None:
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive


@contextmanager
def _dispatching(n: int, *, ready: tuple[bool, ...] | None = None
                 ) -> Iterator[tuple[int, list[_Slot], list[socket.socket]]]:
    """A dispatcher over ``n`` slots; yields the port, the slots and each worker's end of its
    channel (where the handed-over sockets arrive)."""
    listener = listening_socket("127.0.0.1", 0)
    spawn = multiprocessing.get_context("spawn")
    slots, theirs = [], []
    for i in range(n):
        slot = _Slot(spawn)
        ours, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        slot.channel, slot.proc = ours, _Alive()  # type: ignore[assignment]
        slot.ready.value = 1 if ready is None or ready[i] else 0
        slots.append(slot)
        theirs.append(other)
    stop = threading.Event()
    dispatcher = _Dispatcher(listener, slots, stop)
    dispatcher.thread.start()
    try:
        yield listener.getsockname()[1], slots, theirs
    finally:
        stop.set()
        dispatcher.thread.join(5)
        listener.close()
        for s in [*theirs, *(slot.channel for slot in slots if slot.channel is not None)]:
            s.close()


def _received(channel: socket.socket, expected: int, timeout: float = 5.0) -> list[socket.socket]:
    """The sockets handed over on ``channel`` (waiting until ``expected`` arrived or timeout)."""
    channel.settimeout(0.05)
    got: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        try:
            _, fds, _, _ = socket.recv_fds(channel, 16, 16)
        except TimeoutError:
            continue
        got += [socket.socket(fileno=fd) for fd in fds]
    return got


def _drain(channel: socket.socket) -> int:
    return len(_received(channel, 10**6, timeout=0.3))


def test_a_pool_opened_at_once_is_split_evenly_over_the_workers() -> None:
    """A client opening its keep-alive pool at once gets exactly half of it on each worker
    (per-worker sockets spread 32 connections anywhere from 16/16 to 25/7)."""
    with _dispatching(2) as (port, slots, theirs):
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        got: list[list[socket.socket]] = []
        try:
            got = [_received(theirs[0], 16), _received(theirs[1], 16)]
            assert [len(g) for g in got] == [16, 16]
            assert [s.open_connections() for s in slots] == [16, 16]
            # a handed-over socket is the client's connection, ready to serve
            clients[0].sendall(b"ping")
            [server_side] = [s for g in got for s in g
                             if s.getpeername() == clients[0].getsockname()]
            assert server_side.recv(4) == b"ping"
        finally:
            for c in [*clients, *(s for g in got for s in g)]:
                c.close()


def test_new_connections_go_to_the_worker_with_fewest_open() -> None:
    with _dispatching(2) as (port, slots, theirs):
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        held = [_received(theirs[0], 4), _received(theirs[1], 4)]
        slots[0].closed.value += 3   # worker 0 saw three of its connections close
        clients += [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        more = [_received(theirs[0], 3), _received(theirs[1], 1, timeout=0.3)]
        assert [len(m) for m in more] == [3, 0]
        assert [s.open_connections() for s in slots] == [4, 4]
        for s in [*clients, *held[0], *held[1], *more[0], *more[1]]:
            s.close()


def test_short_connections_one_after_another_take_turns() -> None:
    """Without keep-alive, each connection closes before the next opens: every worker has
    none open each time, and the ties go round the workers instead of all to the first."""
    with _dispatching(2) as (port, slots, theirs):
        served = [0, 0]
        for _ in range(6):
            client = socket.create_connection(("127.0.0.1", port))
            deadline = time.monotonic() + 5
            got: list[socket.socket] = []
            while not got and time.monotonic() < deadline:
                for i, channel in enumerate(theirs):
                    got = _received(channel, 1, timeout=0.05)
                    if got:
                        served[i] += 1
                        slots[i].closed.value += 1   # the worker saw it close
                        break
            for s in [client, *got]:
                s.close()
        assert served == [3, 3]


def test_starting_and_dead_workers_get_no_connection_while_another_serves() -> None:
    with _dispatching(3, ready=(False, True, True)) as (port, slots, theirs):
        slots[2].proc.alive = False  # type: ignore[union-attr]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        got = _received(theirs[1], 4)
        assert len(got) == 4
        assert (_drain(theirs[0]), _drain(theirs[2])) == (0, 0)
        for s in [*clients, *got]:
            s.close()


def test_a_connection_waits_while_no_worker_is_up() -> None:
    with _dispatching(1) as (port, slots, theirs):
        slots[0].proc.alive = False  # type: ignore[union-attr]
        client = socket.create_connection(("127.0.0.1", port))
        assert _drain(theirs[0]) == 0
        slots[0].proc.alive = True  # type: ignore[union-attr]   # restarted
        got = _received(theirs[0], 1)
        assert len(got) == 1
        for s in [client, *got]:
            s.close()


def test_a_port_in_use_is_refused_also_by_another_server_of_ours() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            listening_socket("127.0.0.1", port)
    ours = listening_socket("127.0.0.1", port)
    try:
        with pytest.raises(OSError, match="another server runs there"):
            listening_socket("127.0.0.1", port)
    finally:
        ours.close()
