"""A real ``fraudops serve`` process, for the tests that need what only a process has: uvicorn
workers, a SIGKILL, a restart.

The server runs as ``python -m fraudops serve`` (the CLI is a layer above serving, so these
tests never import it) on a free port of 127.0.0.1, in a process group of its own: stopping
it signals that group, so uvicorn's worker processes die with their supervisor. It is always
stopped by its own process group id, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from fraudops.serving import ApiKeys, ModelRef, PlanStore, ServingConfig, TenantPlan

from .conftest import MODEL, TENANT

#: Seconds a server may take to answer ``GET /readyz`` with 200 (imports, models, stores).
READY_TIMEOUT_S = 60.0
#: Seconds between SIGTERM and SIGKILL when stopping.
STOP_GRACE_S = 5.0
#: Attempts to start on a free port (another process may take the port in between).
_PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class Keys:
    """The API keys of a test workspace: an admin key and a key of tenant ``acme``."""

    admin: str
    tenant: str


def database_url(workspace: Path) -> str:
    """The decision log, plans and keys of ``workspace`` (what ``fraudops serve`` opens)."""
    return ServingConfig(workspace=str(workspace)).database_url()


def deploy(workspace: Path, plan: TenantPlan | None = None) -> Keys:
    """Set the plan (default: v1 live) and create two keys, as an operator does before
    starting a server (``fraudops deploy set``, ``fraudops keys create``)."""
    url = database_url(workspace)
    with PlanStore.open(url) as plans:
        plans.apply(plan or TenantPlan(TENANT, ModelRef(MODEL, 1)), actor="test")
    with ApiKeys.open(url) as keys:
        admin, _ = keys.create(None, created_by="test", label="admin")
        tenant, _ = keys.create(TENANT, created_by="test")
    return Keys(admin, tenant)


def transaction_json(event: dict[str, Any]) -> dict[str, Any]:
    """A canonical event as the body of ``POST /v1/score`` (the key names the tenant)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in event.items()
            if k != "tenant"}


def label_json(label: dict[str, Any]) -> dict[str, Any]:
    """A label event as the body of ``POST /v1/labels``."""
    return {"event_id": label["event_id"], "is_fraud": label["is_fraud"],
            "label_time": label["label_time"].isoformat()}


class Server:
    """One ``fraudops serve`` process group; start with :meth:`start`, then :meth:`wait_ready`.

    Its output goes to ``log_path``; with ``workers > 1`` each worker's Prometheus numbers are
    in files of ``metrics_dir`` named by the worker's pid, read by :meth:`per_worker` (the
    multiprocess mode ``fraudops serve`` uses for several workers).
    """

    def __init__(self, workspace: Path, port: int, process: subprocess.Popen[bytes],
                 log_path: Path, metrics_dir: Path) -> None:
        self.workspace = workspace
        self.port = port
        self.process = process
        self.log_path = log_path
        self.metrics_dir = metrics_dir

    @classmethod
    def start(cls, workspace: Path, *, workers: int = 1, state: str = "sqlite",
              redis_prefix: str | None = None, run_dir: Path | None = None,
              options: Sequence[str] = ()) -> Server:
        """Launch the server (not yet ready: call :meth:`wait_ready`); ``options``: more
        ``fraudops serve`` options."""
        run_dir = run_dir or workspace.parent
        port = _free_port()
        name = f"server-{port}-{time.monotonic_ns()}"
        metrics_dir = run_dir / f"{name}-metrics"
        log_path = run_dir / f"{name}.log"
        command = [sys.executable, "-m", "fraudops", "serve", "-w", str(workspace),
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                   "--state", state]
        if redis_prefix is not None:
            command += ["--redis-prefix", redis_prefix]
        command += list(options)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FRAUDOPS_", "PROMETHEUS_"))}
        env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
        if workers > 1:   # where fraudops serve would make a temporary one
            metrics_dir.mkdir(parents=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        return cls(workspace, port, process, log_path, metrics_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once ``GET /readyz`` answers 200; fail with the server's output otherwise."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(base_url=self.url, timeout=2.0) as client:   # one client: cheap polls
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    r = client.get("/readyz")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text}"
                except httpx.TransportError as e:
                    last = f"{type(e).__name__}: {e}"
                time.sleep(0.1)
        self.stop()
        if "address already in use" in self.output().lower():
            raise PortTaken(f"port {self.port} was taken before fraudops serve could bind it")
        pytest.fail(f"fraudops serve on port {self.port} was not ready within {timeout_s:g} s"
                    f" (exit code {self.process.returncode}, last /readyz: {last}); its output:\n"
                    f"{self.output()[-4000:]}")

    def client(self, key: str | None = None, *, keepalive: bool = True) -> httpx.Client:
        """An HTTP client authenticated with ``key``. Without keep-alive every request opens a
        new connection, which any worker may accept (one connection stays on one worker)."""
        limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, limits=limits)

    def output(self) -> str:
        """What the server printed (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def per_worker(self, metric: str, **labels: str) -> dict[int, float]:
        """One metric per worker process (pid): the sum of its samples carrying ``labels``
        (counters: the ``_total`` samples; gauges: the value)."""
        out: dict[int, float] = {}
        for path in sorted(self.metrics_dir.glob("*.db")):
            pid = int(path.stem.rsplit("_", 1)[-1])
            for family in MultiProcessCollector.merge([str(path)]):
                if family.name != metric:
                    continue
                for sample in family.samples:
                    if sample.name in (metric, f"{metric}_total") and all(
                            sample.labels.get(k) == v for k, v in labels.items()):
                        out[pid] = out.get(pid, 0.0) + sample.value
        return out

    def workers(self) -> set[int]:
        """PIDs of the worker processes (the supervisor's children, its helpers excluded)."""
        found = set()
        for child in children(self.process.pid):
            with suppress(OSError):
                if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.add(child)
        return found

    def kill(self) -> None:
        """SIGKILL the supervisor and its workers at once: a crash, nothing flushed."""
        self._signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after :data:`STOP_GRACE_S`."""
        if self.process.poll() is None and self._signal(signal.SIGTERM):
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_GRACE_S)
        self._signal(signal.SIGKILL)   # workers that outlived their supervisor, or a hung one
        self.process.wait()

    def _signal(self, sig: signal.Signals) -> bool:
        try:
            os.killpg(self.process.pid, sig)   # the group's id is the server's pid
        except ProcessLookupError:
            return False
        return True


def children(pid: int) -> list[int]:
    """The PIDs of a process's children (Linux ``/proc``; none once it is gone)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@contextmanager
def serving(workspace: Path, **options: Any) -> Iterator[Server]:
    """A ready server over ``workspace`` (options of :meth:`Server.start`), stopped at exit."""
    server = start_ready(workspace, **options)
    try:
        yield server
    finally:
        server.stop()


def start_ready(workspace: Path, **options: Any) -> Server:
    """:meth:`Server.start` then :meth:`Server.wait_ready`, on another port if one was taken."""
    for _ in range(_PORT_ATTEMPTS - 1):
        server = Server.start(workspace, **options)
        try:
            server.wait_ready()
            return server
        except PortTaken:
            continue
    server = Server.start(workspace, **options)
    server.wait_ready()
    return server


class PortTaken(Exception):
    """Another process bound the free port first (the server exited at once)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
