"""The values the registry returns: frozen dataclasses, so no MLflow type reaches upper layers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

DEFAULT_MODEL_NAME: Final = "fraud"
DEFAULT_EXPERIMENT: Final = "fraudops"
#: The roles a version can hold; each is an MLflow alias, so at most one version holds each.
ROLES: Final = ("live", "candidate", "shadow", "canary", "retired")


@dataclass(frozen=True)
class RunInfo:
    """A logged training run."""

    run_id: str
    experiment_id: str
    name: str
    artifact_uri: str
    model_uri: str
    started: datetime


@dataclass(frozen=True)
class VersionInfo:
    """One registered version of a model, with what its training run recorded.

    ``parent_version`` is the version a retrain started from (if the run recorded one);
    ``previous_live`` is the version that was live when this one was made live.
    """

    model_name: str
    version: int
    roles: tuple[str, ...]
    created: datetime
    run_id: str | None
    source: str
    feature_set: str | None
    definition_hash: str | None
    data_fingerprint: str | None
    n_features: int | None
    parent_version: int | None
    previous_live: int | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    #: facts recorded on the version itself (the release gate's verdict, its report)
    version_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactFile:
    """A file of a version's artifact folder; ``sha256`` is None if the run recorded none."""

    path: str
    size_bytes: int
    sha256: str | None


@dataclass(frozen=True)
class VersionDetail:
    """Everything about one version: its summary, feature list and artifact files."""

    info: VersionInfo
    features: tuple[str, ...]
    files: tuple[ArtifactFile, ...]
