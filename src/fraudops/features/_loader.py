"""Find the feature sets a workspace declares in ``features/*.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from fraudops.core import DefinitionError, Workspace

from ._definitions import FeatureSet


def load_feature_sets(path: Path | str) -> dict[str, FeatureSet]:
    """Every :class:`FeatureSet` defined at module level in a Python file, by name."""
    path = Path(path)
    if not path.is_file():
        raise DefinitionError(f"{path}: no such feature definition file")
    name = f"_fraudops_features_{abs(hash(str(path.absolute())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError as exc:
        raise DefinitionError(f"{path}: {exc}") from None
    finally:
        sys.modules.pop(name, None)
    found: dict[str, FeatureSet] = {}
    for value in vars(module).values():
        if isinstance(value, FeatureSet):
            if value.name in found and found[value.name] is not value:
                raise DefinitionError(f"{path}: two feature sets are named {value.name!r}")
            found[value.name] = value
    return found


def workspace_feature_set(workspace: Workspace, name: str | None = None) -> FeatureSet:
    """The workspace's feature set named ``name``, or its only one."""
    found: dict[str, FeatureSet] = {}
    for path in sorted(workspace.features_dir.glob("*.py")):
        for key, value in load_feature_sets(path).items():
            if key in found:
                raise DefinitionError(f"feature set {key!r} is defined in two files")
            found[key] = value
    if name is not None:
        if name not in found:
            raise DefinitionError(f"no feature set named {name!r} in {workspace.features_dir};"
                                  f" defined: {sorted(found)}")
        return found[name]
    if len(found) != 1:
        what = "none" if not found else f"{sorted(found)}; choose one with --feature-set"
        raise DefinitionError(f"{workspace.features_dir} defines {what}")
    return next(iter(found.values()))
