"""The values the release gate produces: what each check found, and the whole verdict.

Frozen data only, shared by the checks (which fill them) and the reports (which render them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class CheckResult:
    """One check of the gate: passed or not, with the figures that decided it."""

    name: str                 # stable id: "pr_auc", "card_precision", "prevented_recall", ...
    title: str                # what a person reads: "PR-AUC not worse than live beyond noise"
    passed: bool
    value: float | None       # the figure compared (e.g. candidate − live AP)
    threshold: float | None   # what it was compared with
    detail: str               # one or two sentences: why it passed or failed, with the numbers
    figures: dict[str, Any] = field(default_factory=dict)  # everything else worth showing
    blocking: bool = True     # a failed non-blocking check warns but does not fail the gate


@dataclass(frozen=True)
class GateReport:
    """The gate's verdict on a candidate, with every check and the per-event score diffs."""

    candidate: str            # e.g. "fraud-acme v7"
    baseline: str             # "fraud-acme v6 (live)" or "base-rate baseline"
    tenant: str | None
    window: tuple[str, str]   # ISO start and end of the compared, label-matured window
    labels_as_of: str         # ISO
    checks: tuple[CheckResult, ...]
    score_diffs: pa.Table     # tenant, event_id, event_time, card_id, amount, is_fraud,
                              # candidate_score, live_score (0-100), abs_diff,
                              # candidate_action, live_action; largest disagreement first
    created_at: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks if c.blocking)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.blocking and not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the score-diff table is summarised: its row count and top rows).

        Built field by field: ``asdict`` would deep-copy the whole score-diff table first.
        """
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                                if f.name not in ("checks", "score_diffs")}
        data["checks"] = [asdict(check) for check in self.checks]
        data["passed"] = self.passed
        data["failures"] = [c.name for c in self.failures]
        data["score_diffs"] = {"rows": self.score_diffs.num_rows,
                               "top": self.score_diffs.slice(0, 50).to_pylist()}
        return data
