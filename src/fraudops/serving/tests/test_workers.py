"""Listening sockets of several workers: connections spread over them; a port in use is refused."""

from __future__ import annotations

import socket

import pytest

from fraudops.serving._workers import listening_sockets


def _accepted(sock: socket.socket) -> int:
    sock.setblocking(False)
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def test_connections_opened_at_once_spread_over_every_worker_socket() -> None:
    """A client opening its pool at once (all connections queued before any accept) reaches
    both workers; on one shared socket the first worker to wake would take them all."""
    sockets = listening_sockets("127.0.0.1", 0, 2)
    clients = []
    try:
        port = sockets[0].getsockname()[1]
        assert sockets[1].getsockname()[1] == port
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        counts = [_accepted(s) for s in sockets]
        assert sum(counts) == 32
        assert min(counts) >= 4, counts   # binomial(32, 1/2): below 4 once in ~10^5 runs
    finally:
        for s in [*clients, *sockets]:
            s.close()


def test_a_port_in_use_is_refused_also_by_another_server_of_ours() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            listening_sockets("127.0.0.1", port, 2)
    ours = listening_sockets("127.0.0.1", port, 2)
    try:
        with pytest.raises(OSError, match="another server runs there"):
            listening_sockets("127.0.0.1", port, 2)   # SO_REUSEPORT alone would have joined
    finally:
        for s in ours:
            s.close()
