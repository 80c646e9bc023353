"""Loaded model versions, shared by every plan that names them.

Loading a model (registry download, SHA-256 checks, LightGBM parse) takes tens of milliseconds
to seconds, so it never happens on the scoring path: a plan is *prepared* (every model loaded
and checked against the workspace's features) before it replaces the running one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fraudops.core import FraudopsError
from fraudops.features import FeatureSet
from fraudops.models import ActionPolicy, ModelRegistry, TrainedModel

from ._errors import ModelLoadError
from ._plan import ModelRef

Loader = Callable[[ModelRef], TrainedModel]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the hot path: its policy parsed once, its feature order fixed."""

    ref: ModelRef
    model: TrainedModel
    policy: ActionPolicy

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.model.feature_names


class ModelPool:
    """Models by :class:`ModelRef`, loaded once through ``loader`` and checked against
    ``feature_set``: every input the model reads must be a feature of the set, computed by the
    same definitions (same definition hash)."""

    def __init__(self, loader: Loader, feature_set: FeatureSet) -> None:
        self._loader = loader
        self._feature_set = feature_set
        self._names = set(feature_set.names)
        self._hash = feature_set.definition_hash()
        self._loaded: dict[ModelRef, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded model; raises :class:`ModelLoadError` saying why it cannot serve."""
        found = self._loaded.get(ref)
        if found is not None:
            return found
        with self._lock:
            if (found := self._loaded.get(ref)) is None:
                found = self._loaded[ref] = self._load(ref)
        return found

    def prepare(self, refs: Iterable[ModelRef]) -> dict[ModelRef, LoadedModel]:
        """Load every model of a plan; the first failure raises (nothing is half-switched)."""
        return {ref: self.get(ref) for ref in refs}

    def retain(self, refs: Iterable[ModelRef]) -> None:
        """Forget models that no plan names any more (frees their memory)."""
        keep = set(refs)
        with self._lock:
            for ref in [r for r in self._loaded if r not in keep]:
                del self._loaded[ref]

    def _load(self, ref: ModelRef) -> LoadedModel:
        try:
            model = self._loader(ref)
        except FraudopsError as e:
            raise ModelLoadError(f"model {ref} cannot be loaded: {e}") from e
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"model {ref} cannot be loaded: {type(e).__name__}: {e}") from e
        unknown = [n for n in model.feature_names if n not in self._names]
        if unknown:
            raise ModelLoadError(
                f"model {ref} reads feature(s) the workspace's feature set "
                f"{self._feature_set.name!r} does not define: {unknown[:5]}")
        if model.definition_hash and model.definition_hash != self._hash:
            raise ModelLoadError(
                f"model {ref} was trained on feature definitions {model.definition_hash[:12]}, "
                f"the workspace's {self._feature_set.name!r} are {self._hash[:12]}: its features "
                "would be computed differently online; retrain it on the current definitions")
        if model.policy is None:
            raise ModelLoadError(f"model {ref} has no action policy: it cannot decide")
        # the reasons' tables (and their exactness probe, ~0.2 s) are built now, not by the
        # first decision
        model.explain_one([math.nan] * len(model.feature_names))
        return LoadedModel(ref, model, ActionPolicy.from_dict(model.policy))


def registry_loader(registry: ModelRegistry, cache_dir: Path) -> Loader:
    """Load versions from the registry through a local cache of verified downloads.

    Each worker process of a server reuses the folder another one downloaded; the artifact's
    own SHA-256 manifest is checked again by ``TrainedModel.load`` on every load.
    """

    def load(ref: ModelRef) -> TrainedModel:
        target = cache_dir / ref.name / f"v{ref.version}"
        if not (target / "manifest.json").is_file():
            staging = cache_dir / ref.name / f".v{ref.version}.{threading.get_ident()}"
            local = registry.download(ref.version, model_name=ref.name, dst=staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                local.rename(target)
            except OSError:
                if not (target / "manifest.json").is_file():   # not a concurrent download
                    raise
        return TrainedModel.load(target)

    return load
