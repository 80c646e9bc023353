"""Prometheus metrics of a scoring server: requests, latency per model and role, actions, errors.

Each server has its own registry (tests run several apps in one process). With several uvicorn
workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before starting: prometheus-client
then aggregates every worker's numbers on each scrape (``fraudops serve --workers`` does this).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

#: from 100 µs to 1 s: the payment-flow budget is a few milliseconds
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ShadowMetrics:
    """What a shadow scorer counts; all that a shadow process exports (a whole
    :class:`ServingMetrics` there would add a plan revision of 0 beside its server's)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        r = self._target = None if self._multiprocess else self.registry
        self.shadow_latency = Histogram(
            "fraudops_shadow_seconds", "Shadow model scoring latency by model.", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.shadow_errors = Counter("fraudops_shadow_errors", "Shadow models that raised.",
                                     ["model"], registry=r)
        self.shadow_dropped = Counter(
            "fraudops_shadow_dropped", "Shadow jobs dropped because the shadow queue was full.",
            registry=r)

    def render(self) -> bytes:
        """The exposition text of every metric (all workers' in multiprocess mode)."""
        if self._multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class ServingMetrics(ShadowMetrics):
    """The counters and histograms a scoring server exports on ``GET /metrics``."""

    def __init__(self) -> None:
        super().__init__()
        r = self._target
        self.requests = Counter("fraudops_requests", "HTTP requests by route and status code.",
                                ["route", "status"], registry=r)
        self.request_latency = Histogram(
            "fraudops_request_seconds", "HTTP request latency (server side) by route.", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("fraudops_decisions", "Decisions by tenant, model, role and action.",
                                 ["tenant", "model", "role", "action"], registry=r)
        self.scoring_latency = Histogram(
            "fraudops_scoring_seconds",
            "In-process scoring latency (features, model, policy) by model and role.",
            ["model", "role"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "fraudops_batch_size", "Scoring requests decided together (micro-batches).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.errors = Counter("fraudops_errors", "Requests refused or failed, by kind.", ["kind"],
                              registry=r)
        self.plan_revision = Gauge("fraudops_plan_revision", "Deployment plan revision in use.",
                                   registry=r, multiprocess_mode="max")
        self.plan_refused = Counter("fraudops_plan_refused",
                                    "Plan revisions refused because a model failed to load.",
                                    registry=r)
