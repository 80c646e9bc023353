"""What a gate verdict does in the registry: promote a passed candidate, record every verdict.

:func:`gate_and_record` is the one function the CLI, pipelines and CI call after
:func:`run_gate`. It depends on the registry's public API only (``set_role`` and the version
tags written by :func:`record_version_tags`), so any of them gets the same behaviour:

- passed: the candidate version gets the role ``promote_to`` (``shadow`` by default; ``None``
  promotes nothing), leaves the ``candidate`` role if it held it (``candidate → shadow``), and
  its tags say it passed;
- failed: no role changes anywhere; the tags say it failed, which blocking checks failed and why.

Tags (MLflow model-version tags, all under ``fraudops.gate.``): ``verdict`` (``passed`` or
``failed``), ``failed_checks`` (comma-separated names, empty when passed), ``reasons`` (one line
per failed check: ``name: detail``), ``warnings`` (failed warning-only checks), ``against``,
``window``, ``labels_as_of``, ``at`` (the report's time), ``report`` (where its files are, when
given) and ``promoted_to`` (the role given, empty when none). Every key is written on every run,
so a later gate never leaves an earlier verdict's reasons behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from fraudops.models import ROLES, ModelRegistry, RegistryError

from ._report_types import GateReport

__all__ = ["GATE_TAG_PREFIX", "GateDecision", "gate_and_record", "record_version_tags"]

GATE_TAG_PREFIX: Final = "fraudops.gate."
#: Room left in a tag value (MLflow allows 100,000 characters; the UI shows a few lines).
_MAX_TAG_CHARS: Final = 5_000


@dataclass(frozen=True)
class GateDecision:
    """What :func:`gate_and_record` did to one model version.

    Attributes
    ----------
    model_name, version : the registered model version that was gated.
    passed : the gate's verdict.
    role : the role the version was given, or None (a failed gate, or ``promote_to=None``).
    previous : the version that held ``role`` before (None when none did, or nothing moved).
    failures : names of the failed blocking checks (empty when passed).
    warnings : names of the failed warning-only checks.
    tags : the model-version tags written.
    """

    model_name: str
    version: int
    passed: bool
    role: str | None
    previous: int | None
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)


def record_version_tags(registry: ModelRegistry, version: int, tags: Mapping[str, str], *,
                        model_name: str) -> None:
    """Set model-version tags (the gate's verdict) on ``model_name`` version ``version``."""
    registry.set_version_tags(version, tags, model_name=model_name)


def gate_and_record(registry: ModelRegistry, *, candidate_version: int, model_name: str,
                    report: GateReport, promote_to: str | None = "shadow",
                    report_uri: str | None = None) -> GateDecision:
    """Record the gate's verdict on the candidate version and, if it passed, give it a role.

    Parameters
    ----------
    registry : ModelRegistry
        The registry holding ``model_name``.
    candidate_version : int
        The version the report is about.
    model_name : str
        The registered model (``fraud-<tenant>`` for a tenant's model).
    report : GateReport
        The verdict of :func:`run_gate` on that version.
    promote_to : str or None
        The role a passed candidate gets (one of ``ROLES``); None records the verdict only.
    report_uri : str, optional
        Where the report files are (a folder, CI artifact URL), recorded with the verdict.

    Returns
    -------
    GateDecision

    Notes
    -----
    The verdict is recorded before the role moves: if setting the role fails, the version still
    says it passed, and running the wiring again finishes the job. A failed gate changes no role,
    not even the candidate's own.
    """
    if promote_to is not None and promote_to not in ROLES:
        raise RegistryError(f"The 'promote_to' parameter of gate_and_record must be one of"
                            f" {', '.join(ROLES)} or None; got {promote_to!r}")
    failures = tuple(c.name for c in report.failures)
    warnings = tuple(c.name for c in report.checks if not c.blocking and not c.passed)
    reasons = "\n".join(f"{c.name}: {c.detail}" for c in report.failures)
    tags = {
        "verdict": "passed" if report.passed else "failed",
        "failed_checks": ",".join(failures),
        "reasons": reasons,
        "warnings": ",".join(warnings),
        "against": report.baseline,
        "window": "/".join(report.window),
        "labels_as_of": report.labels_as_of,
        "at": report.created_at,
        "report": report_uri or "",
        "promoted_to": "",
    }
    written = {f"{GATE_TAG_PREFIX}{k}": _clip(v) for k, v in tags.items()}
    record_version_tags(registry, candidate_version, written, model_name=model_name)
    role: str | None = None
    previous: int | None = None
    if report.passed and promote_to is not None:
        previous = registry.set_role(candidate_version, promote_to, model_name=model_name)
        role = promote_to
        if promote_to != "candidate" and \
                registry.role("candidate", model_name=model_name) == candidate_version:
            registry.clear_role("candidate", model_name=model_name)  # candidate → shadow
        promoted = {f"{GATE_TAG_PREFIX}promoted_to": promote_to}
        record_version_tags(registry, candidate_version, promoted, model_name=model_name)
        written.update(promoted)
    return GateDecision(model_name=model_name, version=candidate_version, passed=report.passed,
                        role=role, previous=previous if previous != candidate_version else None,
                        failures=failures, warnings=warnings, tags=written)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TAG_CHARS else text[:_MAX_TAG_CHARS - 1] + "…"
