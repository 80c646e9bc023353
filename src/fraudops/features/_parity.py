"""The parity checker: replay events through the online engine and compare with the offline one.

Replay order is the contract's: transactions and label events merged by time, label events
first at equal times (a label with ``label_time = t`` is known at *t*), transactions by
``(event_time, event_id)``. Every feature of every event is compared; a feature passes when,
for every event, both values are missing or they agree within 1e-9 relative (1e-12 absolute
near zero).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fraudops.core import Progress, null_progress
from fraudops.events import EventStore

from ._definitions import FeatureSet

REL_TOL = 1e-9
ABS_TOL = 1e-12
_EXAMPLES = 5


@dataclass(frozen=True)
class FeatureParity:
    """How one feature's online values compare with its offline values."""

    name: str
    compared: int
    mismatches: int
    missing_online: int
    extra_online: int
    max_abs_diff: float
    max_rel_diff: float
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.missing_online == 0 and self.extra_online == 0

    @property
    def mismatch_rate(self) -> float:
        wrong = self.mismatches + self.missing_online + self.extra_online
        return wrong / self.compared if self.compared else 0.0


@dataclass(frozen=True)
class ParityReport:
    """The result of one parity run."""

    feature_set: str
    definition_hash: str
    state_store: str
    transactions: int
    labels: int
    features: list[FeatureParity]
    missing_features: list[str]
    extra_features: list[str]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.missing_features and not self.extra_features
                and all(f.ok for f in self.features))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        for item, feature in zip(data["features"], self.features, strict=True):
            item["ok"] = feature.ok
            item["mismatch_rate"] = feature.mismatch_rate
        return data


def values_agree(online: float | None, offline: float | None) -> bool:
    """The parity rule for one value (see the module docstring)."""
    if online is None or offline is None:
        return online is None and offline is None
    if math.isnan(online) or math.isnan(offline):
        return math.isnan(online) and math.isnan(offline)
    difference = abs(online - offline)
    return difference <= REL_TOL * max(abs(online), abs(offline)) or \
        (abs(online) <= ABS_TOL and abs(offline) <= ABS_TOL)


def replay_stream(transactions: pa.Table, labels: pa.Table
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Transactions and label events in replay order, as ``('label'|'event', row)`` pairs.

    Merged by time, labels first at equal times (a label with ``label_time = t`` is known at
    *t*); a label that would come before its own transaction (``label_time`` at or before the
    transaction's time) is delivered right after it instead, as a label API can only label a
    transaction it has seen. No feature reads the label of an event that is not before the
    current one, so this changes no value.
    """
    txns = transactions.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    labs = labels.sort_by([("label_time", "ascending"), ("event_id", "ascending")])
    tx_rows, label_rows = txns.to_pylist(), labs.to_pylist()
    pending = {(row["tenant"], row["event_id"]) for row in tx_rows}
    waiting: dict[tuple[str, str], list[dict[str, Any]]] = {}
    i = j = 0
    while i < len(tx_rows) or j < len(label_rows):
        if j < len(label_rows) and (i == len(tx_rows)
                                    or label_rows[j]["label_time"] <= tx_rows[i]["event_time"]):
            label = label_rows[j]
            j += 1
            key = (label["tenant"], label["event_id"])
            if key in pending:
                waiting.setdefault(key, []).append(label)
            else:
                yield "label", label
        else:
            row = tx_rows[i]
            i += 1
            key = (row["tenant"], row["event_id"])
            pending.discard(key)
            yield "event", row
            for label in waiting.pop(key, []):
                yield "label", label


def compare(feature_set: FeatureSet, offline: pa.Table,
            online: dict[tuple[str, str], dict[str, Any]]
            ) -> tuple[list[FeatureParity], list[str], list[str]]:
    """Per feature: compare the online vectors (by (tenant, event_id)) with the offline table."""
    names = feature_set.names
    seen = {name for vector in online.values() for name in vector}
    missing_features = [n for n in names if n not in seen] if online else []
    extra_features = sorted(seen - set(names))
    keys = list(zip(offline.column("tenant").to_pylist(), offline.column("event_id").to_pylist(),
                    strict=True))
    results = []
    for name in names:
        offline_values = offline.column(name).to_pylist()
        mismatches = missing = extra = 0
        max_abs = max_rel = 0.0
        examples: list[dict[str, Any]] = []
        for key, expected in zip(keys, offline_values, strict=True):
            got = online.get(key, {}).get(name)
            if values_agree(got, expected):
                continue
            if got is None:
                missing += 1
            elif expected is None:
                extra += 1
            else:
                mismatches += 1
                diff = abs(got - expected)
                max_abs = max(max_abs, diff)
                max_rel = max(max_rel, diff / max(abs(got), abs(expected)))
            if len(examples) < _EXAMPLES:
                examples.append({"tenant": key[0], "event_id": key[1], "online": got,
                                 "offline": expected})
        results.append(FeatureParity(name, len(keys), mismatches, missing, extra, max_abs,
                                     max_rel, examples))
    return results, missing_features, extra_features


def check_parity(store: EventStore, feature_set: FeatureSet,
                 engine_factory: Callable[[], Any], *, state_store: str = "memory",
                 tenants: Sequence[str] | None = None, end: datetime | None = None,
                 progress: Progress = null_progress) -> ParityReport:
    """Backfill offline, replay every event online through ``engine_factory()``, compare.

    ``engine_factory`` returns a fresh online engine (an ``OnlineEngine`` over an empty state
    store). ``tenants`` restricts both engines to those tenants (tenants never share state);
    ``end`` to the events before it: windows only look back, so the first days of a long
    history are a complete check of their own.
    """
    from ._offline import OfflineEngine  # a peer module, imported when parity runs

    began = time.perf_counter()
    transactions, labels = store.read_transactions(), store.read_labels()
    if tenants is not None:
        allowed = pa.array(list(tenants), pa.string())
        transactions = transactions.filter(pc.is_in(transactions.column("tenant"), allowed))
        labels = labels.filter(pc.is_in(labels.column("tenant"), allowed))
    if end is not None:
        cutoff = pa.scalar(end, pa.timestamp("us", tz="UTC"))
        transactions = transactions.filter(pc.less(transactions.column("event_time"), cutoff))
        labels = labels.filter(pc.less(labels.column("label_time"), cutoff))
    offline = OfflineEngine(store).backfill(feature_set, tenants=tenants, end=end,
                                            progress=progress)
    engine = engine_factory()
    online: dict[tuple[str, str], dict[str, Any]] = {}
    total = transactions.num_rows + labels.num_rows
    for done, (kind, row) in enumerate(replay_stream(transactions, labels), start=1):
        if kind == "label":
            engine.label_one(row)
        else:
            online[(row["tenant"], row["event_id"])] = engine.process_one(row)
        if done % 5000 == 0 or done == total:
            progress("replay", done, total)
    features, missing, extra = compare(feature_set, offline, online)
    return ParityReport(feature_set.name, feature_set.definition_hash(), state_store,
                        transactions.num_rows, labels.num_rows, features, missing, extra,
                        round(time.perf_counter() - began, 3))
