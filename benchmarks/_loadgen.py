"""A bounded, open-loop HTTP/1.1 load generator for loopback benchmarks (``bench_serving.py``).

Request ``i`` of a phase is due at ``t0 + i / rate`` whatever happened to the others (open
loop), and its latency is counted from that due time to the last byte of its response, so a
server that stalls is charged for every request that queued behind the stall (no coordinated
omission). The generator is bounded: a fixed pool of keep-alive connections (no new
connection per request), a fixed number of requests per phase, a timeout per request, and a
backlog guard: when the oldest request still waiting for a free connection is more than
``max_lag_s`` late, the server is saturated: the requests still waiting and the rest of the
phase are not sent, and the phase is reported as such (its unsent requests are counted,
never silently dropped).

Requests are pre-encoded bytes (request line, headers, body), written in one ``write`` (no
Nagle / delayed-ACK stall), responses are parsed just enough to get the status and the body
length. The lag of each release behind its due time is recorded and reported, and it is part
of the latency.

Two engines with these semantics: :func:`run_phase_native` runs ``loadgen.c`` (compiled
with the system's C compiler on first use), which sleeps on a timer until each request is due
and costs a few percent of a core at 1,000 requests/s; :func:`run_phase` is the asyncio
fallback (about a quarter of a core there, and 3-4 ms of release lag at p99 when it shares
the cores with the server it measures).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: outcome codes besides HTTP statuses
UNSENT = 0
TIMEOUT = -1
CONNECTION_ERROR = -2
PROTOCOL_ERROR = -3
_OUTCOME_NAMES = {UNSENT: "unsent (saturated)", TIMEOUT: "timeout",
                  CONNECTION_ERROR: "connection error", PROTOCOL_ERROR: "bad response"}


def request_bytes(method: str, path: str, host: str, port: int, body: bytes,
                  headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """One HTTP/1.1 keep-alive request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class PhaseResult:
    """What one phase measured; times in milliseconds, the warm-up excluded from every figure."""

    rate: float
    warmup_s: float
    duration_s: float
    scheduled: int                      # requests due in the measured part
    ok: int                             # HTTP 200 in the measured part
    errors: dict[str, int]              # by kind, measured part
    warmup_errors: dict[str, int]
    latency_ms: dict[str, float]        # from the due time: p50, p99, p99.9, max, mean
    service_ms: dict[str, float]        # from the actual write: p50, p99
    release_lag_ms: dict[str, float]    # the generator's own lateness: p50, p99
    achieved_rps: float                 # 200 answers a second while the measured part ran
    window_answers: int                 # the 200 answers counted in achieved_rps
    saturated: bool
    client_cpu_share: float             # CPU time of this process / wall time of the phase
    flagged_bodies: int                 # 200 responses whose body holds the flag marker
    error_samples: dict[str, str]       # the first body of each non-200 status
    samples: list[float] = field(default_factory=list, repr=False)  # measured latencies, ms

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader, self.writer = reader, writer
        return reader, writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {head[:40]!r}")
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    k = lower.find(b"\r\ncontent-length:")
    if k >= 0:
        end = lower.index(b"\r\n", k + 17)
        body = await reader.readexactly(int(lower[k + 17:end]))
    elif b"\r\ntransfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body, close = await reader.read(), True
    return status, body, close


async def run_phase(host: str, port: int, requests: Sequence[bytes], *, rate: float,
                    warmup_s: float, duration_s: float, connections: int = 32,
                    timeout_s: float = 10.0, max_lag_s: float = 5.0,
                    flag: bytes | None = None,
                    at_measure_start: Callable[[], Awaitable[None]] | None = None) -> PhaseResult:
    """Send ``requests[i]`` at ``t0 + i / rate`` over ``connections`` keep-alive connections.

    ``len(requests)`` must be ``round(rate * (warmup_s + duration_s))``. ``at_measure_start``
    runs (as a task) when the first measured request is due (a metrics scrape, say).
    """
    n = len(requests)
    n_warm = _warm_count(n, rate, warmup_s, duration_s)
    interval_ns = 1e9 / rate
    clock = time.perf_counter_ns
    due = [0] * n
    released = [0] * n
    sent = [0] * n
    done = [0] * n
    outcome = [UNSENT] * n
    flagged = [False] * n
    error_samples: dict[str, str] = {}
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    taken = 0

    conns = [_Conn() for _ in range(connections)]
    await asyncio.gather(*(c.open(host, port) for c in conns))

    saturated = False

    async def worker(conn: _Conn) -> None:
        nonlocal taken
        while True:
            i = await queue.get()
            if i is None:
                conn.close()
                return
            taken += 1
            if saturated:   # shed what waits: the drain stays bounded by the requests in flight
                continue
            try:
                reader, writer = conn.reader, conn.writer
                if reader is None or writer is None:
                    reader, writer = await conn.open(host, port)
                sent[i] = clock()
                async with asyncio.timeout(timeout_s):
                    writer.write(requests[i])
                    status, body, close = await _read_response(reader)
                done[i] = clock()
                outcome[i] = status
                if flag is not None and flag in body:
                    flagged[i] = True
                if status != 200 and f"HTTP {status}" not in error_samples:
                    error_samples[f"HTTP {status}"] = body[:500].decode("utf-8", "replace")
                if close:
                    conn.close()
            except TimeoutError:
                done[i], outcome[i] = clock(), TIMEOUT
                conn.close()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                done[i], outcome[i] = clock(), CONNECTION_ERROR
                conn.close()
            except ValueError:
                done[i], outcome[i] = clock(), PROTOCOL_ERROR
                conn.close()

    workers = [asyncio.create_task(worker(c)) for c in conns]
    gc.collect()
    gc.disable()
    cpu0 = time.process_time()
    t0 = clock() + 20_000_000
    due[:] = [t0 + int(k * interval_ns) for k in range(n)]
    hook: asyncio.Task[None] | None = None
    try:
        i = 0
        while i < n:
            now = clock()
            while i < n and due[i] <= now:
                released[i] = now
                queue.put_nowait(i)
                if i == n_warm and at_measure_start is not None:
                    hook = asyncio.create_task(at_measure_start())
                i += 1
            if taken < i and now - (t0 + taken * interval_ns) > max_lag_s * 1e9:
                saturated = True
                break
            if i < n:
                await asyncio.sleep(max(0.0, (due[i] - clock()) / 1e9))
        for _ in conns:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        if hook is not None:
            await hook
    finally:
        for w in workers:
            w.cancel()
        for c in conns:
            c.close()
        wall = (clock() - t0) / 1e9
        cpu = time.process_time() - cpu0
        gc.enable()
    result = _summarise(rate, warmup_s, duration_s, n_warm, due, released, sent, done, outcome,
                        flagged, saturated, cpu / max(wall, 1e-9))
    result.error_samples = error_samples
    return result


NATIVE_SOURCE = Path(__file__).with_name("loadgen.c")


def native_generator() -> Path | None:
    """The compiled ``loadgen.c`` (built once per source version into the temp folder), or
    None when there is no C compiler or the build fails (the caller falls back to asyncio)."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None or not NATIVE_SOURCE.is_file():
        return None
    digest = hashlib.sha256(NATIVE_SOURCE.read_bytes()).hexdigest()[:12]
    exe = Path(tempfile.gettempdir()) / f"fraudops-loadgen-{digest}"
    if not exe.is_file():
        partial = exe.with_name(exe.name + f".{os.getpid()}")
        built = subprocess.run([compiler, "-O2", "-o", str(partial), str(NATIVE_SOURCE)],
                               capture_output=True, text=True)
        if built.returncode != 0:
            print(f"loadgen.c did not build ({built.stderr.strip()[:300]}); using asyncio")
            return None
        partial.replace(exe)
    return exe


async def run_phase_native(exe: Path, host: str, port: int, requests: Sequence[bytes], *,
                           rate: float, warmup_s: float, duration_s: float, connections: int = 32,
                           timeout_s: float = 10.0, max_lag_s: float = 5.0,
                           flag: bytes | None = None,
                           at_measure_start: Callable[[], Awaitable[None]] | None = None
                           ) -> PhaseResult:
    """:func:`run_phase`, sent by the compiled generator ``exe`` (see the module docstring)."""
    n = len(requests)
    n_warm = _warm_count(n, rate, warmup_s, duration_s)
    with tempfile.TemporaryDirectory(prefix="loadgen-") as folder:
        feed, out = Path(folder) / "requests", Path(folder) / "out"
        feed.write_bytes(b"".join(struct.pack("<I", len(r)) + r for r in requests))
        # perf_counter_ns is CLOCK_MONOTONIC, the generator's clock; 0.3 s to start and connect
        t0 = time.perf_counter_ns() + 300_000_000
        proc = await asyncio.create_subprocess_exec(
            str(exe), host, str(port), str(feed), str(out), repr(rate), str(n_warm),
            str(connections), repr(timeout_s), repr(max_lag_s), str(t0),
            *([flag.decode("latin-1")] if flag else []), stderr=asyncio.subprocess.PIPE)
        if at_measure_start is not None:
            await asyncio.sleep(max(0.0, (t0 + n_warm * 1e9 / rate - time.perf_counter_ns()) / 1e9))
            if proc.returncode is None:
                await at_measure_start()
        _, stderr = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"loadgen exited with {proc.returncode}: {stderr.decode()[:500]}")
        data = out.read_bytes()
        count, saturated, cpu_ns, end = struct.unpack_from("<4q", data)
        arrays = np.frombuffer(data, dtype=np.int64, count=4 * count, offset=32).reshape(4, count)
        outcome = np.frombuffer(data, dtype=np.int32, count=count, offset=32 + 32 * count)
        flagged = np.frombuffer(data, dtype=np.uint8, count=count, offset=32 + 36 * count)
        samples: dict[str, str] = {}
        raw = (Path(folder) / "out.errors").read_bytes()
        while raw:
            status, length = struct.unpack_from("<2i", raw)
            samples[f"HTTP {status}"] = raw[8:8 + length].decode("utf-8", "replace")
            raw = raw[8 + length:]
    due, released, sent, done = (a.tolist() for a in arrays)
    result = _summarise(rate, warmup_s, duration_s, n_warm, due, released, sent, done,
                        outcome.tolist(), [bool(f) for f in flagged], bool(saturated),
                        cpu_ns / max(end - t0, 1))
    result.error_samples = samples
    return result


def _warm_count(n: int, rate: float, warmup_s: float, duration_s: float) -> int:
    """How many of a phase's ``n`` requests are warm-up; ``n`` must fit the rate and times."""
    n_warm = round(rate * warmup_s)
    if n != round(rate * (warmup_s + duration_s)) or n_warm >= n:
        raise ValueError(f"run_phase: {n} requests for rate {rate} over {warmup_s} + {duration_s} s")
    return n_warm


def _summarise(rate: float, warmup_s: float, duration_s: float, n_warm: int, due: list[int],
               released: list[int], sent: list[int], done: list[int], outcome: list[int],
               flagged: list[bool], saturated: bool, cpu_share: float) -> PhaseResult:
    due_a = np.array(due[n_warm:], dtype=np.int64)
    done_a = np.array(done[n_warm:], dtype=np.int64)
    sent_a = np.array(sent[n_warm:], dtype=np.int64)
    rel_a = np.array(released[n_warm:], dtype=np.int64)
    out_a = np.array(outcome[n_warm:], dtype=np.int64)
    ok = out_a == 200
    latency = (done_a[ok] - due_a[ok]) / 1e6
    service = (done_a[ok] - sent_a[ok]) / 1e6
    lag = (rel_a[rel_a > 0] - due_a[rel_a > 0]) / 1e6
    # throughput: 200 answers completed from the first measured due time on (warm-up requests
    # answered late included: what the server delivered while the measured part was offered)
    all_done = np.array(done, dtype=np.int64)
    all_ok = np.array(outcome, dtype=np.int64) == 200
    window = all_ok & (all_done >= due_a[0]) if len(due_a) else all_ok[:0]
    span_s = ((all_done[window].max() - due_a[0]) / 1e9) if window.any() else 0.0
    return PhaseResult(
        rate=rate, warmup_s=warmup_s, duration_s=duration_s, scheduled=len(out_a), ok=int(ok.sum()),
        errors=_count_errors(outcome[n_warm:]), warmup_errors=_count_errors(outcome[:n_warm]),
        latency_ms=_percentiles(latency, ("p50", 50), ("p99", 99), ("p99.9", 99.9), ("max", 100))
        | ({"mean": float(latency.mean())} if len(latency) else {}),
        service_ms=_percentiles(service, ("p50", 50), ("p99", 99)),
        release_lag_ms=_percentiles(lag, ("p50", 50), ("p99", 99)),
        achieved_rps=float(window.sum() / span_s) if span_s > 0 else 0.0,
        window_answers=int(window.sum()), saturated=saturated,
        client_cpu_share=cpu_share, flagged_bodies=int(np.array(flagged[n_warm:])[ok].sum()),
        error_samples={}, samples=latency.tolist())


def _percentiles(values: np.ndarray, *which: tuple[str, float]) -> dict[str, float]:
    if len(values) == 0:
        return {}
    return {name: float(np.percentile(values, q)) for name, q in which}


def _count_errors(outcomes: Sequence[int]) -> dict[str, int]:
    errors: dict[str, int] = {}
    for o in outcomes:
        if o != 200:
            name = _OUTCOME_NAMES.get(o, f"HTTP {o}")
            errors[name] = errors.get(name, 0) + 1
    return errors


async def http_get(host: str, port: int, path: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One GET on a connection of its own (a metrics scrape during a phase)."""
    conn = _Conn()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await conn.open(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("latin-1"))
            status, body, _ = await _read_response(reader)
            return status, body
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return 0, b""
    finally:
        conn.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (uvicorn[standard] brings it), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# -- the floor: a minimal HTTP responder, to measure the generator and loopback alone ----------
class _FloorProtocol(asyncio.Protocol):
    """Answers every request with a fixed 200 JSON body (assumes Content-Length bodies)."""

    _RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
                 b'{"ok":true}')

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower() + b"\r\n"
            k = head.find(b"\r\ncontent-length:")
            length = int(head[k + 17:head.index(b"\r\n", k + 17)]) if k >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(self._RESPONSE)  # type: ignore[attr-defined]


def serve_floor(host: str, port: int) -> None:
    """Run the floor responder until killed (``python benchmarks/_loadgen.py --floor PORT``)."""
    loop = new_event_loop()
    server = loop.run_until_complete(loop.create_server(_FloorProtocol, host, port))
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="The floor responder of bench_serving.py.")
    parser.add_argument("--floor", type=int, required=True, metavar="PORT")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve_floor(args.host, args.floor)
