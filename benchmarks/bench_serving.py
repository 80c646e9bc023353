"""Load test of the scoring server over HTTP on loopback, against ``mlflow models serve``.

    python benchmarks/bench_serving.py --out serving.json
    python benchmarks/bench_serving.py --workspace /tmp/fraudops-serving-ws --out serving.json
    python benchmarks/bench_serving.py --rates 250,500,1000 --duration 10 --workers 2
    python benchmarks/bench_serving.py --skip-mlflow --skip-redis --rates 1000 --low-rate 0  # quick

The first run installs ``mlflow`` and ``lightgbm`` into a separate venv,
``<scratch>/mlflow-venv`` (about 2 minutes, 0.9 GB; ``--scratch``, default
``$TMPDIR/fraudops-bench-serving``), which later runs reuse. With ``--workspace DIR`` the
workspace is built there the first time and reused afterwards (it skips about a minute);
without it a fresh one is built in the run folder and deleted at the end.

What it measures, in one run:

* **fraudops serve**, ``--workers`` uvicorn workers (default 2, the machine's cores), for
  four set-ups: online state in SQLite or Redis, with the plan's live LightGBM model alone
  or with a logistic shadow model beside it (``fraudops keys create``, ``fraudops deploy
  set``; one decision log database per run). Each set-up gets a fresh feature state (the
  workspace's SQLite state file deleted, or a unique Redis key prefix, deleted afterwards)
  and the same transactions with fresh event ids: the workspace's simulated ones in time
  order. The first ``--warm-days`` days (and their labels) are replayed in process through
  ``Runtime.engine.score``, which is the in-process measurement (below) and leaves the
  state as a server that has been running for that long would have it; the server then
  takes the following transactions over HTTP, 0.1 s of event time apart (see
  ``HTTP_EVENT_STEP``). Labels are not sent during the HTTP part.
* **the load**: bounded and open loop (``benchmarks/_loadgen.py``). At each rate (``--rates``,
  after ``--low-rate``, one low enough for the reference) a warm-up of ``--warmup``
  seconds, then ``--duration`` measured seconds. Request ``i`` is due at
  ``t0 + i / rate`` and its latency runs from that due time to the response's last byte, so
  queueing behind a slow answer is charged (no coordinated omission). ``--repeat N`` goes
  through the rates N times per server; ratios and verdicts then take each rate's median (a
  shared VM's noisy seconds move one pass, not the verdict). ``--connections``
  keep-alive connections, a request timeout, and a cap on requests per server. Any answer
  but 200, a timeout or a broken connection is an error, shown, and makes the exit status 1.
  A server so far behind that a request waits ``--max-lag`` seconds for a connection is
  *saturated*: the rest of that rate is not sent, and the table says so.
* **CPU**: the CPU seconds of each server's processes (``/proc``) per 200 answer, and the busy
  cores of the whole machine, over each measured part: when other work shares the cores,
  the server's CPU per answer still says what it costs, and the machine's busy cores say why
  the latency is what it is.
* **floor**: the same generator against a no-op HTTP responder (``_loadgen.py --floor``), the
  cost of the generator and loopback on this machine at this moment.
* **reference**: the same LightGBM trees (fraudops's ``model.txt`` wrapped as an
  ``mlflow.lightgbm`` model, no calibration) served by ``mlflow models serve --env-manager
  local`` with as many uvicorn workers, access log off as in ``fraudops serve``, at the same
  rates, each request one row of the same transaction's features precomputed offline
  (``fraudops features backfill``). It does less work: no API key, no feature state read or
  written, no decision log, no policy, no shadow.
* **in process**: ``Runtime.engine.score`` (read state, compute features, predict,
  reasons, policy, commit the decision to the log, queue the shadow) per call, p50 / p99 /
  p99.9 over the second half of the warm days; and ``Decision.latency_us``, the engine's own
  clock from the state read to the action (the decision-log commit excluded). The server's
  ``fraudops_scoring_seconds`` histogram (``/metrics``, same span as ``latency_us``) is
  read at each rate too.

The figures are compared with DESIGN.md's targets (p99 ≤ 5 ms over HTTP at 1,000 requests/s
on 2 cores with shadows on; p99 ≤ 1 ms in process) and with the reference and the floor
measured in the same run. Times are never asserted: the load generator shares the machine's
cores with the server it measures. ``--py-spy DIR`` records every worker of each server at
the highest rate (``py-spy record --format raw``; it costs CPU, so those figures are not
the ones to quote). Ctrl-C or SIGTERM stops every server the run started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _loadgen  # benchmarks/_loadgen.py, beside this script
import numpy as np
import pyarrow.parquet as pq

HOST = "127.0.0.1"
TENANT = "default"
MODEL_NAME = f"fraud-{TENANT}"
MARKER = "bench_serving.json"
HTTP_TARGET_MS = 5.0
HTTP_TARGET_RATE = 1000.0
IN_PROCESS_TARGET_MS = 1.0
#: Event time between two transactions of the HTTP part. Replaying the simulated days at
#: 1,000 requests/s would put a day of event time into ~1 s: two requests sent milliseconds
#: apart, answered in a slightly different order by two workers, would then be hours apart in
#: event time, and the later-processed one refused (422) by the server's 1-hour max_lateness.
#: Real traffic arrives in real time; 0.1 s keeps every reordering the load can cause far
#: inside that hour while the cards' and terminals' states keep growing as in the stream.
HTTP_EVENT_STEP = timedelta(milliseconds=100)
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200",
             "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
REFERENCE_NOTE = ("the reference does less work per request: no API key, no feature state read or"
                  " written, no decision log commit, no policy, no shadow; it gets the features"
                  " precomputed")

MLFLOW_SAVE_SCRIPT = '''
"""Wrap fraudops's LightGBM model text as an mlflow.lightgbm model (run in the mlflow venv)."""
import sys

import lightgbm as lgb
import mlflow.lightgbm
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

model_txt, out = sys.argv[1], sys.argv[2]
booster = lgb.Booster(model_file=model_txt)
inputs = Schema([ColSpec("double", name, required=False) for name in booster.feature_name()])
outputs = Schema([TensorSpec(np.dtype("float64"), (-1,))])
mlflow.lightgbm.save_model(booster, out, signature=ModelSignature(inputs, outputs))
'''


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path,
                        help="build the workspace here (missing or empty folder), or reuse the one"
                             " a previous run built here; default: a fresh one in the run folder")
    parser.add_argument("--out", type=Path, help="write every figure as JSON to this file")
    parser.add_argument("--rates", default="250,500,1000", help="requests per second, comma-separated")
    parser.add_argument("--low-rate", type=float, default=50.0,
                        help="a first, low rate for every server (0: none), so that latencies can be"
                             " compared with the reference where it is not saturated")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    parser.add_argument("--repeat", type=int, default=1,
                        help="go through the rates this many times per server; ratios and"
                             " verdicts then use each rate's median p99 and CPU per answer, so"
                             " that a noisy moment of a shared machine does not decide them")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each rate")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of each server")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--generator", choices=["native", "asyncio"], default="native",
                        help="native: benchmarks/loadgen.c, built with the system's C compiler (a"
                             " few %% of a core at 1,000 req/s; asyncio when it cannot be built);"
                             " asyncio: the Python generator (a quarter of a core there)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request fails")
    parser.add_argument("--max-lag", type=float, default=5.0,
                        help="seconds a request may wait for a connection before the rate is"
                             " declared saturated and its remaining requests are not sent")
    parser.add_argument("--max-requests", type=int, default=100_000,
                        help="cap on the requests sent to one server (all rates, warm-ups included)")
    parser.add_argument("--configs", default="sqlite,sqlite-shadow,redis,redis-shadow",
                        help="fraudops set-ups to run, among sqlite, sqlite-shadow, redis, redis-shadow")
    parser.add_argument("--reasons", type=int, default=3,
                        help="feature contributions per decision (fraudops serve --reasons; 3 is its"
                             " default)")
    parser.add_argument("--shadows-in", choices=["process", "thread"], default="thread",
                        help="where shadows are scored (fraudops serve --shadow-thread, its"
                             " default, or --shadow-process)")
    parser.add_argument("--skip-mlflow", action="store_true", help="no mlflow reference")
    parser.add_argument("--skip-redis", action="store_true", help="no Redis set-ups")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--warm-days", type=float, default=7.0,
                        help="days of events replayed in process before each server (measured there)")
    parser.add_argument("--customers", type=int, default=500, help="simulated customers (build only)")
    parser.add_argument("--terminals", type=int, default=1000, help="simulated terminals (build only)")
    parser.add_argument("--days", type=int, default=40, help="simulated days (build only)")
    parser.add_argument("--scratch", type=Path,
                        default=Path(tempfile.gettempdir()) / "fraudops-bench-serving",
                        help="run folders and the reusable mlflow venv")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, databases)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="record each server's workers with py-spy (raw format) during the"
                             " highest rate into DIR; sampling costs CPU, so not for the figures")
    args = parser.parse_args()
    args.native = _loadgen.native_generator() if args.generator == "native" else None
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.low_rate > 0 and args.low_rate not in args.rates:
        args.rates.insert(0, args.low_rate)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(args.configs) - {"sqlite", "sqlite-shadow", "redis", "redis-shadow"}
    if unknown:
        parser.error(f"--configs: unknown set-up(s) {sorted(unknown)}")
    if args.skip_redis:
        args.configs = [c for c in args.configs if not c.startswith("redis")]
    if not args.rates or min(args.rates) <= 0 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rates, --duration must be > 0 and --warmup >= 0")
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1; got {args.repeat}")
    if args.workers < 1 or args.connections < 1:
        parser.error(f"--workers and --connections must be >= 1; got {args.workers}, {args.connections}")
    if args.py_spy is not None and not _py_spy().is_file():
        parser.error("--py-spy needs py-spy next to this Python: pip install py-spy")
    total = args.repeat * sum(round(r * (args.warmup + args.duration)) for r in args.rates)
    if total > args.max_requests:
        parser.error(f"--rates x (--warmup + --duration) makes {total:,} requests per server;"
                     f" the cap (--max-requests) is {args.max_requests:,}")
    return args


# -- processes ---------------------------------------------------------------------------------
def fraudops_cli() -> str:
    beside = Path(sys.executable).parent / "fraudops"
    found = str(beside) if beside.is_file() else shutil.which("fraudops")
    if found is None:
        raise SystemExit("the 'fraudops' console script is not installed next to this Python;"
                         " run: pip install -e .")
    return found


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FRAUDOPS_", "PROMETHEUS_MULTIPROC"))}
    return env | QUIET_ENV | extra


def run(cmd: Sequence[str], what: str, *, env: dict[str, str] | None = None,
        timeout: float = 900) -> str:
    """Run a command to completion; its stdout, or exit with its output on failure."""
    began = time.perf_counter()
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          env=env or child_env(), check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"  {what}: {time.perf_counter() - began:.1f} s")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess in its own process group, stopped by its PID (then its group)."""

    def __init__(self, name: str, cmd: Sequence[str], port: int, ready_path: str, log: Path,
                 env: dict[str, str]) -> None:
        self.name, self.port, self.ready_path, self.log = name, port, ready_path, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)

    def wait_ready(self, timeout: float) -> float:
        began = time.perf_counter()
        while time.perf_counter() - began < timeout:
            if self.proc.poll() is not None:
                break
            if http_get(self.port, self.ready_path)[0] == 200:
                return time.perf_counter() - began
            time.sleep(0.25)
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise ServerFailed(f"{self.name} did not become ready on port {self.port} within {timeout:.0f}"
                           f" s (exit code {self.proc.poll()}); its log ({self.log}):\n{tail}")

    def group(self) -> list[int]:
        """PIDs of every process of the server's process group (master, workers, helpers)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rpartition(")")[2].split()[2]) == self.proc.pid:
                    pids.append(int(stat.parent.name))
        return pids

    def workers(self) -> list[int]:
        """PIDs of the worker processes (children of the master)."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        pids = []
        for pid in children:
            with contextlib.suppress(OSError):
                if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)   # stragglers of the group, if any


class ServerFailed(Exception):
    pass


@contextlib.contextmanager
def serving(name: str, cmd: Sequence[str], port: int, ready_path: str, log: Path,
            env: dict[str, str], start_timeout: float = 120) -> Iterator[Server]:
    server = Server(name, cmd, port, ready_path, log, env)
    try:
        took = server.wait_ready(start_timeout)
        print(f"  {name}: ready on port {port} after {took:.1f} s (pid {server.proc.pid})")
        yield server
    finally:
        server.stop()


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


# -- the workspace -----------------------------------------------------------------------------
def build_or_reuse(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The workspace's facts (model versions, backfill file), building it if needed."""
    marker = root / MARKER
    if marker.is_file():
        facts = json.loads(marker.read_text())
        print(f"workspace: reusing {root} (built {facts['built_at']})")
        return facts
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"--workspace {root}: the folder holds files but no {MARKER}; give a missing"
                         " or empty folder (the benchmark resets the serving state of its workspace)")
    print(f"workspace: building {root}")
    cli = fraudops_cli()
    ws = ["--workspace", root]
    run([cli, "init", root], "fraudops init")
    run([cli, "simulate", *ws, "--customers", args.customers, "--terminals", args.terminals,
         "--days", args.days, "--seed", 0], "fraudops simulate")
    train = [cli, "train", *ws, "--no-feature-selection", "--train-days", 14,
             "--validation-days", 7, "--label-delay-days", 3]
    versions = {}
    for kind in ("lightgbm", "logistic"):
        run([*train, "--model", kind], f"fraudops train --model {kind}")
        versions[kind] = newest_version(root)
    backfill = root / "bench" / "backfill"
    run([cli, "features", "backfill", *ws, "--out", backfill], "fraudops features backfill")
    facts = {"built_at": datetime.now(UTC).isoformat(timespec="seconds"), "tenant": TENANT,
             "model_name": MODEL_NAME, "lightgbm_version": versions["lightgbm"],
             "logistic_version": versions["logistic"],
             "backfill": str(backfill / "features.parquet"),
             "simulation": {"customers": args.customers, "terminals": args.terminals,
                            "days": args.days, "seed": 0}}
    marker.write_text(json.dumps(facts, indent=1))
    return facts


def newest_version(root: Path) -> int:
    from fraudops.core import Workspace
    from fraudops.models import ModelRegistry

    versions = ModelRegistry(workspace=Workspace.open(root)).versions(model_name=MODEL_NAME)
    return max(v.version for v in versions)


# -- the event stream --------------------------------------------------------------------------
@dataclass(frozen=True)
class Stream:
    """The workspace's transactions in ``(event_time, event_id)`` order, replayed in laps
    (each lap shifted past the previous one) when more are needed; ids made fresh per tag."""

    events: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    lap: timedelta

    def event(self, j: int, tag: str) -> dict[str, Any]:
        base = self.events[j % len(self.events)]
        lap = j // len(self.events)
        out = dict(base)
        out["event_id"] = f"{tag}-{lap}-{base['event_id']}"
        out["event_time"] = base["event_time"] + lap * self.lap
        return out

    def http_event(self, j: int, tag: str, warm_n: int) -> dict[str, Any]:
        """Event ``j >= warm_n`` of the HTTP part: the stream's card, terminal and amount, its
        time ``HTTP_EVENT_STEP`` after the previous one (see ``HTTP_EVENT_STEP``)."""
        out = self.event(j, tag)
        out["event_time"] = self.events[warm_n - 1]["event_time"] + (j - warm_n + 1) * HTTP_EVENT_STEP
        return out

    def source_id(self, j: int) -> str:
        return str(self.events[j % len(self.events)]["event_id"])

    def warm_count(self, days: float) -> int:
        cut = self.events[0]["event_time"] + timedelta(days=days)
        n = sum(1 for e in self.events if e["event_time"] < cut)
        return min(n, len(self.events) - 1)


def load_stream(root: Path) -> Stream:
    from fraudops.events import EventStore

    store = EventStore(root / "events")
    tx = store.read_transactions().drop_columns(["currency"]).to_pylist()
    tx = [e for e in tx if e["tenant"] == TENANT]
    tx.sort(key=lambda e: (e["event_time"], e["event_id"]))
    labels = [lab for lab in store.read_labels().select(
        ["tenant", "event_id", "is_fraud", "label_time"]).to_pylist() if lab["tenant"] == TENANT]
    labels.sort(key=lambda lab: (lab["label_time"], lab["event_id"]))
    span = tx[-1]["event_time"] - tx[0]["event_time"]
    return Stream(tx, labels, span + timedelta(days=1))


def score_body(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if v is not None and k != "tenant"}
    body["event_time"] = event["event_time"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(body, separators=(",", ":")).encode()


# -- in process --------------------------------------------------------------------------------
def measure_in_process(config: Any, stream: Stream, tag: str, warm_n: int) -> dict[str, Any]:
    """Replay the warm events (and their labels) through ``Runtime.engine.score``; the calls of
    the second half are measured, with the process settings of a server worker."""
    from fraudops.serving import Runtime
    from fraudops.serving._api_models import TransactionIn
    from fraudops.serving._runtime import tune_server_process

    runtime = Runtime(config)
    tune_server_process()
    last = stream.events[warm_n - 1]["event_time"]
    ids = {stream.source_id(j): stream.event(j, tag)["event_id"] for j in range(warm_n)}
    merged: list[tuple[Any, int, str, dict[str, Any]]] = [
        (lab["label_time"], 0, "label", lab) for lab in stream.labels
        if lab["label_time"] <= last and lab["event_id"] in ids]
    merged += [(stream.events[j]["event_time"], 1, "event",   # the canonical event the API makes
                TransactionIn.model_validate_json(score_body(stream.event(j, tag))).event(TENANT))
               for j in range(warm_n)]
    merged.sort(key=lambda m: (m[0], m[1]))
    clock = time.perf_counter_ns
    calls: list[float] = []
    engine_us: list[float] = []
    replayed = 0
    try:
        engine = runtime.engine
        for i, (_, _, kind, item) in enumerate(merged):
            if kind == "label":
                engine.label(item | {"event_id": ids[item["event_id"]]})
                continue
            began = clock()
            result = engine.score(item)
            spent = clock() - began
            replayed += result.replayed
            if i >= len(merged) // 2:
                calls.append(spent / 1e6)
                engine_us.append(result.decision.latency_us / 1e3)
        if runtime.shadow_runner is not None:
            runtime.shadow_runner.drain(30)
    finally:
        runtime.close()
    return {"events": warm_n, "measured": len(calls), "replayed": replayed,
            "score_call_ms": pct(calls), "engine_latency_ms": pct(engine_us)}


def pct(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "p99.9": float(np.percentile(a, 99.9)), "max": float(a.max())}


# -- CPU accounting --------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """User and system CPU seconds of these processes so far (Linux /proc)."""
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            user, system = user + int(fields[11]), system + int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


# -- /metrics ----------------------------------------------------------------------------------
def histogram(text: str, name: str, where: dict[str, str] | None = None) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram, summed over the other labels."""
    out: dict[float, float] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels_text, _, value = line[len(prefix):].rpartition("} ")
        labels = dict(part.split("=", 1) for part in labels_text.split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if where and any(labels.get(k) != v for k, v in where.items()):
            continue
        le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        out[le] = out.get(le, 0.0) + float(value)
    return out


def counter(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Count, share ≤ 1 ms and p50 / p99 (interpolated within buckets, as Prometheus does)."""
    counts = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in sorted(after)}
    total = counts.get(math.inf, 0.0)
    if total <= 0:
        return {}
    out = {"count": total, "share_le_1ms": counts.get(0.001, 0.0) / total}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        rank, lower, below = q * total, 0.0, 0.0
        for le, cumulative in counts.items():
            if cumulative >= rank:
                if math.isinf(le):
                    out[name] = lower * 1e3
                else:
                    share = (rank - below) / max(cumulative - below, 1e-12)
                    out[name] = (lower + (le - lower) * share) * 1e3
                break
            lower, below = le, cumulative
    return out


# -- one server under load ---------------------------------------------------------------------
@dataclass
class Row:
    """One server at one rate."""

    server: str
    rate: float
    result: _loadgen.PhaseResult
    scoring: dict[str, float] | None = None      # /metrics fraudops_scoring_seconds (server)
    request: dict[str, float] | None = None      # /metrics fraudops_request_seconds, /v1/score
    shadow_dropped: float | None = None
    server_cores: float | None = None            # CPU seconds of the server's processes / second
    cpu_ms_per_answer: float | None = None       # the server's CPU per 200 answer
    machine_busy_cores: float | None = None      # every process of the machine, this one included
    server_system_share: float | None = None     # kernel share of the server's CPU (syscalls, TCP)
    worker_shares: list[float] | None = None     # share of the scoring requests each worker took
    mean_batch: float | None = None              # requests per micro-batch (fraudops_batch_size)
    turn: int = 1                                # which pass through the rates (--repeat)


def load_server(name: str, port: int, payloads: Iterator[bytes], args: argparse.Namespace,
                loop: asyncio.AbstractEventLoop, server: Server, *, flag: bytes | None = None,
                metrics: bool = False, metrics_dir: Path | None = None) -> list[Row]:
    rows = []
    pids = server.group()
    rounds = [(i, rate) for i in range(args.repeat) for rate in args.rates]
    for k, (turn, rate) in enumerate(rounds):
        n = round(rate * (args.warmup + args.duration))
        requests = [next(payloads) for _ in range(n)]
        scrape: dict[str, str] = {}
        profilers: list[subprocess.Popen[bytes]] = []
        profile = args.py_spy is not None and k == len(rounds) - 1
        clock: dict[str, float] = {}

        async def at_start(scrape: dict[str, str] = scrape, rate: float = rate,
                           profile: bool = profile, clock: dict[str, float] = clock,
                           profilers: list[subprocess.Popen[bytes]] = profilers) -> None:
            user, system = cpu_seconds(pids)
            clock.update(wall=time.perf_counter(), user=user, system=system,
                         machine=machine_busy_seconds())
            if metrics:
                scrape["before"] = (await _loadgen.http_get(HOST, port, "/metrics"))[1].decode()
            if metrics_dir is not None:
                clock.update({f"pid{pid}": n for pid, n in requests_by_worker(metrics_dir).items()})
            if profile:
                profilers.extend(start_py_spy(server, args, name, rate))

        options: dict[str, Any] = dict(
            rate=rate, warmup_s=args.warmup, duration_s=args.duration, connections=args.connections,
            timeout_s=args.timeout, max_lag_s=args.max_lag, flag=flag, at_measure_start=at_start)
        result = loop.run_until_complete(
            _loadgen.run_phase_native(args.native, HOST, port, requests, **options)
            if args.native is not None else _loadgen.run_phase(HOST, port, requests, **options))
        row = Row(name, rate, result, turn=turn + 1)
        if clock:
            wall = time.perf_counter() - clock["wall"]
            user, system = cpu_seconds(pids)
            spent = user + system - clock["user"] - clock["system"]
            row.server_cores = spent / wall
            row.server_system_share = (system - clock["system"]) / spent if spent > 0 else None
            row.machine_busy_cores = (machine_busy_seconds() - clock["machine"]) / wall
            if result.window_answers:
                row.cpu_ms_per_answer = spent * 1e3 / result.window_answers
        if metrics and "before" in scrape:
            after = http_get(port, "/metrics")[1].decode()
            before = scrape["before"]
            row.scoring = histogram_summary(histogram(before, "fraudops_scoring_seconds"),
                                            histogram(after, "fraudops_scoring_seconds"))
            where = {"route": "/v1/score"}
            row.request = histogram_summary(histogram(before, "fraudops_request_seconds", where),
                                            histogram(after, "fraudops_request_seconds", where))
            row.shadow_dropped = (counter(after, "fraudops_shadow_dropped_total")
                                  - counter(before, "fraudops_shadow_dropped_total"))
            batches = (counter(after, "fraudops_batch_size_count")
                       - counter(before, "fraudops_batch_size_count"))
            if batches > 0:
                row.mean_batch = (counter(after, "fraudops_batch_size_sum")
                                  - counter(before, "fraudops_batch_size_sum")) / batches
        if metrics_dir is not None and clock:
            done = {pid: n - clock.get(f"pid{pid}", 0.0)
                    for pid, n in requests_by_worker(metrics_dir).items()}
            total = sum(done.values())
            row.worker_shares = sorted((n / total for n in done.values() if n > 0),
                                       reverse=True) if total else None
        for p in profilers:
            p.wait(timeout=args.duration + 30)
        rows.append(row)
        print_row(row, args.repeat)
    return rows


def start_py_spy(server: Server, args: argparse.Namespace, name: str,
                 rate: float) -> list[subprocess.Popen[bytes]]:
    spy = str(_py_spy())
    args.py_spy.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in server.workers():
        out = args.py_spy / f"{name}-{rate:g}rps-worker{pid}.txt"
        procs.append(subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking",
             "--duration", str(math.ceil(args.duration)), "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    return procs


def _py_spy() -> Path:
    found = shutil.which("py-spy")
    return Path(found) if found else Path(sys.executable).parent / "py-spy"


# -- the set-ups -------------------------------------------------------------------------------
@dataclass
class Deployment:
    """The run's serving database (decision log, plans, keys), its key, and the plan in force."""

    database: str
    key: str = ""
    shadow: bool | None = None

    def use(self, root: Path, facts: dict[str, Any], *, shadow: bool) -> None:
        cli = fraudops_cli()
        ws = ["--workspace", root, "--database", self.database]
        if not self.key:
            self.key = run([cli, "keys", "create", TENANT, *ws, "--label", "bench_serving"],
                           "fraudops keys create").split()[-1]
        if self.shadow != shadow:
            plan = ["--live", f"{MODEL_NAME}/{facts['lightgbm_version']}"]
            if shadow:
                plan += ["--shadow", f"{MODEL_NAME}/{facts['logistic_version']}"]
            run([cli, "deploy", "set", TENANT, *plan, *ws, "--reason", "bench_serving"],
                f"fraudops deploy set {' '.join(plan)}")
            self.shadow = shadow


def run_fraudops(config_name: str, args: argparse.Namespace, root: Path, facts: dict[str, Any],
                 deployment: Deployment, stream: Stream, warm_n: int, run_dir: Path, run_tag: str,
                 loop: asyncio.AbstractEventLoop) -> tuple[list[Row], dict[str, Any]]:
    from fraudops.serving import ServingConfig

    print(f"\nfraudops {config_name}")
    state = "redis" if config_name.startswith("redis") else "sqlite"
    shadow = config_name.endswith("shadow")
    folder = run_dir / config_name
    folder.mkdir(parents=True)
    deployment.use(root, facts, shadow=shadow)
    database, key = deployment.database, deployment.key
    prefix = f"fraudops-bench:{run_tag}:{config_name}:"
    cli = fraudops_cli()
    for suffix in ("", "-wal", "-shm"):   # a fresh feature state (this workspace is the benchmark's)
        (root / "serving" / f"state.db{suffix}").unlink(missing_ok=True)
    tag = f"{run_tag}{config_name[0]}{'s' if shadow else ''}"
    try:
        config = ServingConfig(workspace=str(root), state=state, database=database,
                               redis_url=args.redis_url, redis_prefix=prefix, n_reasons=args.reasons,
                               shadow_process=args.shadows_in == "process")
        began = time.perf_counter()
        inproc = measure_in_process(config, stream, tag, warm_n)
        inproc["seconds"] = time.perf_counter() - began
        print(f"  in process, {warm_n:,} warm events in {inproc['seconds']:.1f} s: score call p50"
              f" {inproc['score_call_ms']['p50']:.3f} ms, p99 {inproc['score_call_ms']['p99']:.3f} ms")
        port = free_port()
        metrics_dir = folder / "prometheus"
        metrics_dir.mkdir()
        cmd = [cli, "serve", "--workspace", root, "--database", database, "--host", HOST,
               "--port", port, "--workers", args.workers, "--state", state,
               "--redis-url", args.redis_url, "--redis-prefix", prefix, "--reasons", args.reasons,
               f"--shadow-{args.shadows_in}"]
        env = child_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        headers = [("X-API-Key", key)]
        payloads = (_loadgen.request_bytes("POST", "/v1/score", HOST, port,
                                           score_body(stream.http_event(j, tag, warm_n)), headers)
                    for j in range(warm_n, warm_n + args.max_requests))
        with serving(f"fraudops serve ({config_name})", cmd, port, "/readyz",
                     folder / "server.log", env) as server:
            rows = load_server(f"fraudops {config_name}", port, payloads, args, loop, server,
                               flag=b'"replayed":true', metrics=True, metrics_dir=metrics_dir)
        return rows, inproc
    finally:
        if state == "redis":
            drop_redis_keys(args.redis_url, prefix)


def drop_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=10_000))
        for i in range(0, len(keys), 10_000):
            client.delete(*keys[i:i + 10_000])
    finally:
        client.close()


def redis_available(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as e:
        return str(e)
    return None


def run_floor(args: argparse.Namespace, stream: Stream, warm_n: int, run_dir: Path,
              loop: asyncio.AbstractEventLoop) -> list[Row]:
    print("\nfloor: the load generator against a no-op HTTP responder")
    port = free_port()
    cmd = [sys.executable, Path(__file__).resolve().parent / "_loadgen.py", "--floor", port,
           "--host", HOST]
    payloads = (_loadgen.request_bytes("POST", "/v1/score", HOST, port,
                                       score_body(stream.http_event(j, "floor", warm_n)),
                                       [("X-API-Key", "x")])
                for j in range(warm_n, warm_n + args.max_requests))
    with serving("floor responder", cmd, port, "/", run_dir / "floor.log", child_env(), 30) as server:
        return load_server("floor (no-op responder)", port, payloads, args, loop, server)


# -- the mlflow reference ----------------------------------------------------------------------
def start_mlflow_install(scratch: Path) -> tuple[Path, subprocess.Popen[bytes] | None, Path]:
    """Start installing mlflow + lightgbm into ``scratch/mlflow-venv`` unless it already works."""
    venv = scratch / "mlflow-venv"
    python = venv / "bin" / "python"
    log = scratch / "mlflow-venv-install.log"
    if python.is_file() and subprocess.run(
            [python, "-c", "import mlflow.lightgbm, lightgbm, uvicorn"], capture_output=True,
            check=False).returncode == 0:
        return venv, None, log
    shutil.rmtree(venv, ignore_errors=True)
    try:
        version = importlib.metadata.version("mlflow-skinny")   # the MLflow this project uses
    except importlib.metadata.PackageNotFoundError:
        version = None
    mlflow = f"mlflow=={version}" if version else "mlflow"
    script = (f'"{sys.executable}" -m venv "{venv}" && "{python}" -m pip install -q "{mlflow}" lightgbm'
              f' || "{python}" -m pip install -q mlflow lightgbm')
    print(f"mlflow reference: installing {mlflow} and lightgbm into {venv} (in the background;"
          f" log: {log})")
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                env=child_env(), start_new_session=True)
    return venv, proc, log


def finish_mlflow_install(venv: Path, proc: subprocess.Popen[bytes] | None, log: Path) -> str | None:
    """None when the venv serves; else why not."""
    if proc is not None:
        began = time.perf_counter()
        try:
            proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return "the installation took more than 15 minutes"
        print(f"  mlflow venv installed in {time.perf_counter() - began:.0f} s more")
    check = subprocess.run([venv / "bin" / "python", "-c",
                            "import mlflow, lightgbm, uvicorn; print(mlflow.__version__)"],
                           capture_output=True, text=True, check=False)
    if check.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return f"mlflow cannot be imported from {venv}: {check.stderr[-1000:]}\n{tail}"
    return None


def run_mlflow(args: argparse.Namespace, root: Path, facts: dict[str, Any], stream: Stream,
               warm_n: int, run_dir: Path, venv: Path,
               loop: asyncio.AbstractEventLoop) -> tuple[list[Row], dict[str, Any]]:
    from fraudops.core import Workspace
    from fraudops.models import ModelRegistry, TrainedModel

    print("\nreference: mlflow models serve, the same LightGBM trees, features precomputed")
    folder = run_dir / "mlflow"
    folder.mkdir()
    local = ModelRegistry(workspace=Workspace.open(root)).download(
        facts["lightgbm_version"], model_name=MODEL_NAME, dst=folder / "fraudops-model")
    model = TrainedModel.load(local)
    names = list(model.feature_names)
    script = folder / "save_mlflow_model.py"
    script.write_text(MLFLOW_SAVE_SCRIPT)
    python = venv / "bin" / "python"
    run([python, script, local / "model.txt", folder / "model"], "mlflow.lightgbm.save_model")
    version = subprocess.run([python, "-c", "import mlflow; print(mlflow.__version__)"],
                             capture_output=True, text=True, check=False).stdout.strip()

    table = pq.read_table(facts["backfill"], columns=["event_id", *names])
    rows_by_id = {r.pop("event_id"): r for r in table.to_pylist()}

    def body(j: int) -> bytes:
        row = rows_by_id[stream.source_id(j)]
        values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                  for v in (row[n] for n in names)]
        return json.dumps({"dataframe_split": {"columns": names, "data": [values]}},
                          separators=(",", ":")).encode()

    port = free_port()
    cmd = [venv / "bin" / "mlflow", "models", "serve", "-m", folder / "model", "--env-manager", "local",
           "-h", HOST, "-p", port, "-w", args.workers]
    env = child_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                    UVICORN_ACCESS_LOG="false", VIRTUAL_ENV=str(venv))
    with serving("mlflow models serve", cmd, port, "/ping", folder / "server.log", env, 180) as server:
        check = check_reference(port, model, names, [body(j) for j in range(warm_n, warm_n + 20)])
        print(f"  same trees: max |mlflow - fraudops raw score| over 20 rows = {check:.2e}")
        payloads = (_loadgen.request_bytes("POST", "/invocations", HOST, port, body(j))
                    for j in range(warm_n, warm_n + args.max_requests))
        rows = load_server("mlflow models serve (reference)", port, payloads, args, loop, server)
    return rows, {"mlflow_version": version, "max_abs_score_difference": check}


def check_reference(port: int, model: Any, names: list[str], bodies: list[bytes]) -> float:
    """Largest difference between mlflow's answer and fraudops's uncalibrated score."""
    worst = 0.0
    for raw in bodies:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            conn.request("POST", "/invocations", body=raw, headers={"Content-Type": "application/json"})
            answer = json.loads(conn.getresponse().read())["predictions"][0]
        finally:
            conn.close()
        values = json.loads(raw)["dataframe_split"]["data"][0]
        x = np.array([[math.nan if v is None else v for v in values]], dtype=np.float64)
        worst = max(worst, abs(float(model.predict_raw(x)[0]) - float(answer)))
    return worst


# -- output ------------------------------------------------------------------------------------
HEADER = (f"{'server':<34}{'rate':>6}{'achieved':>9}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>8}"
          f"{'errors':>7}{'unsent':>7}{'lag p99':>8}{'gen':>5}{'server':>7}{'ms/ans':>7}{'machine':>8}"
          "  /metrics: scoring p99 / ≤1ms / request p99")


def _ms(values: dict[str, float], key: str, width: int, digits: int = 2) -> str:
    value = values.get(key)
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _num(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"


def requests_by_worker(metrics_dir: Path) -> dict[int, float]:
    """``/v1/score`` requests answered so far by each worker (its Prometheus file, by pid).

    The supervisor hands each connection to the worker with the fewest open ones, so a fixed
    pool of keep-alive connections splits evenly; until session 6 the kernel spread them by a
    hash of their addresses, and a lopsided split explained the worst passes."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[-1])
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if sample.name == "fraudops_requests_total" and \
                        sample.labels.get("route") == "/v1/score":
                    out[pid] = out.get(pid, 0.0) + sample.value
    return out


def print_row(row: Row, repeat: int = 1) -> None:
    r = row.result
    lat = r.latency_ms
    unsent = r.errors.get("unsent (saturated)", 0)
    failed = r.n_errors - unsent
    server_side = ""
    if row.scoring:
        server_side = (f"  {_ms(row.scoring, 'p99_ms', 0)} ms / {row.scoring['share_le_1ms']:.1%}"
                       f" / {_ms(row.request or {}, 'p99_ms', 0)} ms")
        if row.shadow_dropped:
            server_side += f", {row.shadow_dropped:.0f} shadow jobs dropped"
    if row.mean_batch is not None:
        server_side += f"  batch {row.mean_batch:.2f}"
    if row.worker_shares:
        server_side += "  split " + "/".join(f"{share:.0%}" for share in row.worker_shares)
    name = f"{row.server} #{row.turn}" if repeat > 1 else row.server
    print(f"{name:<34}{row.rate:>6.0f}{r.achieved_rps:>9.1f}{_ms(lat, 'p50', 9)}"
          f"{_ms(lat, 'p99', 9)}{_ms(lat, 'p99.9', 9)}{_ms(lat, 'max', 8, 1)}{failed:>7}{unsent:>7}"
          f"{_ms(r.release_lag_ms, 'p99', 8)}{r.client_cpu_share:>5.0%}"
          f"{_num(row.server_cores, 7)}{_num(row.cpu_ms_per_answer, 7)}{_num(row.machine_busy_cores, 8)}"
          f"{server_side}"
          + ("  SATURATED" if r.saturated else "")
          + (f"  {r.flagged_bodies} replayed answers" if r.flagged_bodies else ""))
    if r.errors or r.warmup_errors:
        print(f"{'':<34}errors: {r.errors or '-'}; in the warm-up: {r.warmup_errors or '-'}")
        for status, body in r.error_samples.items():
            print(f"{'':<34}first {status} body: {body[:300]}")


def report(rows: list[Row], inproc: dict[str, dict[str, Any]], args: argparse.Namespace,
           reference_note: str | None) -> None:
    generator = "loadgen.c" if args.native is not None else "asyncio"
    print(f"\nHTTP on loopback, open loop ({generator} generator), {args.workers} workers per"
          f" server, {args.connections} keep-alive connections; latency in ms from each request's"
          f" due time; {args.duration:g} s per rate after {args.warmup:g} s of warm-up")
    legend = (
        "achieved: 200 answers a second while the measured part was offered; lag p99: the"
        " generator's own lateness in releasing requests (part of the latency); gen: the generator's"
        " CPU share; server: CPU cores the server's processes used; ms/ans: server CPU ms per 200"
        " answer; machine: busy cores of the whole machine, other work included; /metrics: the"
        " server's own histograms over the measured part (scoring = features + model + reasons +"
        " policy; request = the whole /v1/score inside the app); SATURATED: a request waited"
        " --max-lag s for a connection, the rest was not sent and the percentiles cover only what"
        f" was answered. fraudops ran with --reasons {args.reasons}.")
    print(textwrap.fill(legend, 110))
    print(HEADER)
    for row in rows:
        print_row(row, args.repeat)
    by: dict[tuple[str, float], list[Row]] = {}
    for r in rows:
        by.setdefault((r.server, r.rate), []).append(r)
    ref_name, floor_name = "mlflow models serve (reference)", "floor (no-op responder)"
    servers = [s for s in dict.fromkeys(r.server for r in rows) if s.startswith("fraudops")]
    if servers:
        medians = f" (medians of {args.repeat} passes)" if args.repeat > 1 else ""
        print(f"\nratios in this run{medians}: p99 latency fraudops / reference and fraudops / floor;"
              " server CPU per answer fraudops / reference (* = one side saturated: its p99 is not"
              " comparable)")
        print(f"{'server':<34}" + "".join(f"{f'{r:g}/s p99 vs ref':>18}{'vs floor':>10}{'cpu vs ref':>12}"
                                          for r in args.rates))
        for s in servers:
            cells = []
            for rate in args.rates:
                mine, ref = by.get((s, rate)), by.get((ref_name, rate))
                cells.append(_ratio(mine, ref, 18) + _ratio(mine, by.get((floor_name, rate)), 10)
                             + _ratio(mine, ref, 12, cpu=True))
            print(f"{s:<34}" + "".join(cells))
    if reference_note:
        print(f"reference: {reference_note}")
    print("\nin process: Runtime.engine.score per call (ms), second half of the warm replay")
    print(f"{'set-up':<22}{'calls':>7}{'p50':>8}{'p99':>8}{'p99.9':>8}{'max':>8}"
          f"   engine latency_us (excl. log commit) p50 / p99 / p99.9")
    for name, m in inproc.items():
        c, e = m["score_call_ms"], m["engine_latency_ms"]
        print(f"{name:<22}{m['measured']:>7}{c['p50']:>8.3f}{c['p99']:>8.3f}{c['p99.9']:>8.3f}"
              f"{c['max']:>8.2f}   {e['p50']:.3f} / {e['p99']:.3f} / {e['p99.9']:.3f}")
    print("\nDESIGN.md targets (never asserted; this machine's other load counts too)")
    for s in servers:
        if "shadow" not in s:
            continue
        passes = by.get((s, HTTP_TARGET_RATE))
        if not passes:
            print(f"  {s}: not run at {HTTP_TARGET_RATE:g} req/s")
            continue
        p99 = _median_p99(passes)
        floor = by.get((floor_name, HTTP_TARGET_RATE))
        floor_txt = f"; the floor's own p99 was {_median_p99(floor):.2f} ms" if floor else ""
        saturated = [r for r in passes if r.result.saturated]
        if saturated:
            verdict = (f"NOT MET: saturated in {len(saturated)} of {len(passes)} passes,"
                       f" {min(r.result.achieved_rps for r in saturated):.0f} answers/s of the"
                       f" {HTTP_TARGET_RATE:g} offered")
        elif len(passes) > 1:
            each = [r.result.latency_ms.get("p99", math.inf) for r in passes]
            verdict = (f"median {p99:.2f} ms of {len(each)} passes ({min(each):.2f}–{max(each):.2f},"
                       f" {sum(v <= HTTP_TARGET_MS for v in each)} within), "
                       f"{_verdict(p99 <= HTTP_TARGET_MS)}")
        else:
            verdict = f"{p99:.2f} ms, {_verdict(p99 <= HTTP_TARGET_MS)}"
        print(f"  HTTP p99 ≤ {HTTP_TARGET_MS:g} ms at {HTTP_TARGET_RATE:g} req/s with a shadow, {s}:"
              f" {verdict}{floor_txt}")
    for name, m in inproc.items():
        p99 = m["score_call_ms"]["p99"]
        e99 = m["engine_latency_ms"]["p99"]
        print(f"  in process p99 ≤ {IN_PROCESS_TARGET_MS:g} ms, {name}: score call {p99:.3f} ms,"
              f" {_verdict(p99 <= IN_PROCESS_TARGET_MS)}; without the log commit {e99:.3f} ms,"
              f" {_verdict(e99 <= IN_PROCESS_TARGET_MS)}")
    for s in servers:
        scored = [r.scoring for r in by.get((s, HTTP_TARGET_RATE), []) if r.scoring]
        if scored:
            p99 = statistics.median(x.get("p99_ms", math.nan) for x in scored)
            within = statistics.median(x["share_le_1ms"] for x in scored)
            print(f"  server-side scoring at {HTTP_TARGET_RATE:g} req/s, {s} (/metrics buckets):"
                  f" p99 ≈ {p99:.2f} ms, {within:.2%} ≤ 1 ms"
                  + (f" (medians of {len(scored)} passes)" if len(scored) > 1 else ""))


def _median_p99(passes: Sequence[Row]) -> float:
    """The median over ``--repeat`` passes of one server at one rate."""
    return statistics.median(r.result.latency_ms.get("p99", math.inf) for r in passes)


def _ratio(mine: Sequence[Row] | None, other: Sequence[Row] | None, width: int, *,
           cpu: bool = False) -> str:
    if not mine or not other:
        return f"{'-':>{width}}"
    if cpu:
        cpus = [[r.cpu_ms_per_answer for r in rows if r.cpu_ms_per_answer] for rows in (mine, other)]
        a, b = (statistics.median(c) if c else None for c in cpus)
    else:
        a, b = _median_p99(mine), _median_p99(other)
    if not a or not b or math.isinf(a) or math.isinf(b):
        return f"{'-':>{width}}"
    saturated = any(r.result.saturated for r in (*mine, *other))
    mark = "*" if not cpu and saturated else ""
    return f"{f'{a / b:.2f}x{mark}':>{width}}"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def row_json(row: Row) -> dict[str, Any]:
    r = asdict(row.result)
    r.pop("samples")
    return {"server": row.server, "rate": row.rate, **r, "server_scoring": row.scoring,
            "turn": row.turn, "server_request": row.request, "shadow_dropped": row.shadow_dropped,
            "server_cores": row.server_cores, "cpu_ms_per_answer": row.cpu_ms_per_answer,
            "machine_busy_cores": row.machine_busy_cores, "server_system_share": row.server_system_share,
            "worker_shares": row.worker_shares, "mean_batch": row.mean_batch}


# -- main --------------------------------------------------------------------------------------
def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # servers are stopped in `finally`
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    os.environ.update(QUIET_ENV)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    began = time.perf_counter()
    load_before = os.getloadavg()
    speed_before = python_speed_us()
    args.scratch.mkdir(parents=True, exist_ok=True)
    run_tag = uuid.uuid4().hex[:6]
    run_dir = args.scratch / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-{run_tag}"
    run_dir.mkdir()
    print(f"run folder: {run_dir}; {os.cpu_count()} CPUs, load average {load_before[0]:.2f};"
          f" {SPEED_PROBE}: {speed_before:.0f} µs")
    venv = install = None
    install_log = run_dir / "unused"
    if not args.skip_mlflow:
        venv, install, install_log = start_mlflow_install(args.scratch)
    failures: list[str] = []
    rows: list[Row] = []
    inproc: dict[str, dict[str, Any]] = {}
    reference: dict[str, Any] = {}
    reference_note: str | None = None
    loop = _loadgen.new_event_loop()
    completed = False
    try:
        root = (args.workspace or run_dir / "workspace").absolute()
        facts = build_or_reuse(args, root)
        stream = load_stream(root)
        warm_n = stream.warm_count(args.warm_days)
        print(f"stream: {len(stream.events):,} transactions ({stream.events[0]['event_time']:%Y-%m-%d}"
              f" … {stream.events[-1]['event_time']:%Y-%m-%d}), {len(stream.labels):,} labels;"
              f" {warm_n:,} warm events in process, then HTTP")
        if venv is not None:
            why = finish_mlflow_install(venv, install, install_log)
            if why is not None:
                reference_note = f"NOT MEASURED: mlflow could not be installed ({why.strip()[:400]})"
                print("\n" + "!" * 100 + f"\n!! mlflow reference skipped: {why}\n" + "!" * 100)
                venv = None
        configs = list(args.configs)
        if any(c.startswith("redis") for c in configs) and (why := redis_available(args.redis_url)):
            print(f"\n!! Redis at {args.redis_url} does not answer ({why}): Redis set-ups skipped")
            configs = [c for c in configs if not c.startswith("redis")]
        print("\n" + HEADER)
        rows += run_floor(args, stream, warm_n, run_dir, loop)
        deployment = Deployment(f"sqlite:///{run_dir / 'serving.db'}")
        for name in sorted(configs, key=lambda c: c.endswith("shadow")):   # one plan change
            config_rows, inproc[name] = run_fraudops(name, args, root, facts, deployment, stream,
                                                     warm_n, run_dir, run_tag, loop)
            rows += config_rows
        if venv is not None:
            ref_rows, reference = run_mlflow(args, root, facts, stream, warm_n, run_dir, venv, loop)
            rows += ref_rows
            reference_note = f"mlflow {reference['mlflow_version']}; {REFERENCE_NOTE}"
        elif args.skip_mlflow:
            reference_note = "skipped (--skip-mlflow)"
        completed = True
    except ServerFailed as e:
        failures.append(str(e))
        print(f"\n!! {e}", file=sys.stderr)
    finally:
        _close_loop(loop)
        if install is not None and install.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(install.pid, signal.SIGKILL)
        if completed and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"run folder kept: {run_dir}")
    report(rows, inproc, args, reference_note)
    failed = {f"{r.server} @ {r.rate:g}/s, pass {r.turn}": {k: v for k, v in r.result.errors.items()
                                             if k != "unsent (saturated)"}
              for r in rows if r.result.n_errors - r.result.errors.get("unsent (saturated)", 0)}
    replays = sum(r.result.flagged_bodies for r in rows) + sum(m["replayed"] for m in inproc.values())
    if failed:
        failures.append(f"failed requests: {failed}")
    if replays:
        failures.append(f"{replays} answers were replays of an earlier decision (event ids reused)")
    elapsed = time.perf_counter() - began
    speed_after = python_speed_us()
    print(f"\nwall time {elapsed:.0f} s; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; {SPEED_PROBE}: {speed_before:.0f} µs before,"
          f" {speed_after:.0f} µs after (the speed of this machine's cores at the time: compare"
          " figures of runs whose probes agree)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_before": load_before, "load_average_after": os.getloadavg(),
                        "python_speed_probe": SPEED_PROBE,
                        "python_speed_us_before": speed_before, "python_speed_us_after": speed_after},
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "targets": {"http_p99_ms": HTTP_TARGET_MS, "http_rate": HTTP_TARGET_RATE,
                        "in_process_p99_ms": IN_PROCESS_TARGET_MS},
            "http": [row_json(r) for r in rows], "in_process": inproc,
            "reference": reference | {"note": reference_note}, "failures": failures,
            "wall_seconds": elapsed}, indent=1, default=_json_default))
        print(f"results: {args.out}")
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    return 1 if failures else 0


SPEED_PROBE = "python -m timeit 'sum(range(10000))'"


def python_speed_us() -> float:
    """µs per ``sum(range(10000))``, best of 5: how fast this VM's cores run Python now.

    The same code's figures doubled from one day to the next on these shared VMs; this
    probe, printed with them, tells a slower machine from slower code."""
    return min(timeit.repeat("sum(range(10000))", number=200, repeat=5)) / 200 * 1e6


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what an interruption left running (connections close), then close the loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    with contextlib.suppress(BaseException):
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: the servers this run started are stopped", file=sys.stderr)
        sys.exit(130)
