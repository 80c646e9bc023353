"""The benchmark's two load generators (benchmarks/_loadgen.py, loadgen.c) count alike.

A small HTTP server (a subprocess on 127.0.0.1, ended by its PID) answers by arrival order:
every 3rd request 404 with a chunked body, every 7th a 200 that closes the connection, every
50th never. Both generators must report exactly what that rule implies, and shed the same
requests when a server stops answering (saturation).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _loadgen as lg

QUIRKY = '''
import asyncio, sys
count = 0
silent = sys.argv[2] == "silent"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.b = t, b""
    def data_received(self, d):
        global count
        self.b += d
        while (e := self.b.find(b"\\r\\n\\r\\n")) >= 0:
            head = self.b[:e].lower() + b"\\r\\n"
            k = head.find(b"\\r\\ncontent-length:")
            n = int(head[k + 17:head.index(b"\\r\\n", k + 17)])
            if len(self.b) < e + 4 + n:
                return
            self.b = self.b[e + 4 + n:]
            count += 1
            if silent or count % 50 == 0:
                continue
            if count % 3 == 0:
                self.t.write(b"HTTP/1.1 404 Not Found\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"
                             b"5\\r\\nnope!\\r\\n3\\r\\n!!!\\r\\n0\\r\\n\\r\\n")
            elif count % 7 == 0:
                self.t.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 4\\r\\nConnection: close\\r\\n\\r\\nbye!")
                self.t.close()
                return
            else:
                self.t.write(b'HTTP/1.1 200 OK\\r\\nContent-Length: 9\\r\\n\\r\\n"ok" yes!')
loop = asyncio.new_event_loop()
loop.run_until_complete(loop.create_server(P, "127.0.0.1", int(sys.argv[1])))
loop.call_later(120, loop.stop)   # never outlives a stuck test
loop.run_forever()
'''
GENERATORS = ["asyncio", "native"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(mode: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", QUIRKY, str(port), mode])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("the test server did not start")


@pytest.fixture
def native() -> Path:
    exe = lg.native_generator()
    if exe is None:
        pytest.skip("no C compiler: the native generator cannot be built")
    return exe


def _run(kind: str, exe: Path | None, port: int, **options: object) -> lg.PhaseResult:
    rate, warm, measured = 200.0, 0.5, 2.0
    requests = [lg.request_bytes("POST", "/x", "127.0.0.1", port, b'{"i":%d}' % i)
                for i in range(round(rate * (warm + measured)))]
    loop = lg.new_event_loop()
    try:
        run = (lg.run_phase_native(exe, "127.0.0.1", port, requests, rate=rate, warmup_s=warm,
                                   duration_s=measured, **options)  # type: ignore[arg-type]
               if kind == "native" else
               lg.run_phase("127.0.0.1", port, requests, rate=rate, warmup_s=warm,
                            duration_s=measured, **options))  # type: ignore[arg-type]
        return loop.run_until_complete(run)
    finally:
        loop.close()


def _expected(first: int, last: int) -> tuple[int, dict[str, int], int]:
    """(200s, errors, flagged) for requests ``first..last`` (1-based arrival order)."""
    ok = errors_404 = timeouts = flagged = 0
    for c in range(first, last + 1):
        if c % 50 == 0:
            timeouts += 1
        elif c % 3 == 0:
            errors_404 += 1
        else:
            ok += 1
            flagged += c % 7 != 0
    return ok, {k: v for k, v in {"HTTP 404": errors_404, "timeout": timeouts}.items() if v}, flagged


@pytest.mark.parametrize("kind", GENERATORS)
def test_generator_counts_statuses_closes_and_timeouts(kind: str, request: pytest.FixtureRequest) -> None:
    exe = request.getfixturevalue("native") if kind == "native" else None
    server, port = _serve("quirky")
    try:
        result = _run(kind, exe, port, flag=b'"ok"', timeout_s=0.5)
    finally:
        server.kill()
        server.wait()
    ok, errors, flagged = _expected(101, 500)   # 100 warm-up requests, then 400 measured
    assert (result.ok, result.errors, result.flagged_bodies) == (ok, errors, flagged)
    assert result.warmup_errors == _expected(1, 100)[1]
    assert result.error_samples == {"HTTP 404": "nope!!!!"}   # the two chunks joined
    assert not result.saturated
    assert result.latency_ms["p50"] < 500   # answered, not timed out


@pytest.mark.parametrize("kind", GENERATORS)
def test_generator_sheds_load_when_the_server_stops_answering(
        kind: str, request: pytest.FixtureRequest) -> None:
    exe = request.getfixturevalue("native") if kind == "native" else None
    server, port = _serve("silent")
    try:
        result = _run(kind, exe, port, timeout_s=1.0, max_lag_s=0.3, connections=8)
    finally:
        server.kill()
        server.wait()
    assert result.saturated
    assert result.ok == 0
    assert result.errors == {"unsent (saturated)": 400}
    assert result.warmup_errors["timeout"] == 8   # the 8 connections' requests, then shed
