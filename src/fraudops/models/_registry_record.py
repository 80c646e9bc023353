"""What a training run records besides MLflow's params and metrics, and how a download is checked.

``fraudops/run.json`` in each run holds the feature list and, per file of the model folder, its
size and SHA-256; :func:`verify_download` compares a downloaded folder with it byte for byte.
Inputs are checked here before a run starts, so a bad call leaves no half-logged run behind.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._registry_store import RegistryError

RECORD_FORMAT_VERSION = 1


def write_run_record(path: Path, *, features: Sequence[str],
                     files: Mapping[str, Mapping[str, object]]) -> Path:
    """Write ``run.json``: the feature list and the checksum of every model file."""
    path.write_text(json.dumps({"format_version": RECORD_FORMAT_VERSION,
                                "features": list(features), "files": dict(files)}, indent=1))
    return path


def check_artifact_dir(artifact_dir: Path | str) -> Path:
    folder = Path(artifact_dir)
    if not folder.is_dir():
        raise RegistryError(f"artifact_dir {str(folder)!r}: not a folder (write it with"
                            " TrainedModel.save first)")
    if not any(p.is_file() for p in folder.rglob("*")):
        raise RegistryError(f"artifact_dir {str(folder)!r}: holds no files")
    return folder


def check_plots(plots: Mapping[str, Path]) -> dict[str, Path]:
    checked: dict[str, Path] = {}
    for key, path in plots.items():
        if not key or "/" in key or key.startswith("."):
            raise RegistryError(f"plot name {key!r}: must be a plain file name without '/'")
        if not Path(path).is_file():
            raise RegistryError(f"plot {key!r} = {str(path)!r}: not a file")
        checked[key] = Path(path)
    return checked


def checksums(folder: Path) -> dict[str, dict[str, object]]:
    return {path.relative_to(folder).as_posix(): {"sha256": sha256_of(path),
                                                  "size_bytes": path.stat().st_size}
            for path in sorted(folder.rglob("*")) if path.is_file()}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_download(local: Path, recorded: object, *, what: str) -> None:
    if not local.is_dir() or not any(local.iterdir()):
        raise RegistryError(f"{what}: the download at {local} holds no files")
    if not isinstance(recorded, dict):
        return
    for relative, entry in recorded.items():
        path = local / relative
        if not path.is_file():
            raise RegistryError(f"{what}: file {relative!r} is missing from the download at {local}")
        if sha256_of(path) != entry["sha256"]:
            raise RegistryError(f"{what}: file {relative!r} does not match the SHA-256 recorded"
                                " at training time; the stored artifact was changed")


def flat_metrics(metrics: Mapping[str, object], prefix: str = "") -> dict[str, float]:
    """MLflow metrics from a metrics dict: nested sections joined with '.', numbers only.

    ``{"validation": {"roc_auc": 0.91, "start": "2024-03-04"}}`` gives
    ``{"validation.roc_auc": 0.91}``: text and None leaves (dates, names) are not metrics and stay
    in the artifact's manifest. A bool, a list or an infinite number is an error.

    Examples
    --------
    >>> flat_metrics({"roc_auc": 0.9, "test": {"rows": 10, "end": "2024-05-01"}})
    {'roc_auc': 0.9, 'test.rows': 10.0}
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_metrics(value, prefix=f"{name}."))
        elif value is None or isinstance(value, str):
            continue
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise RegistryError(f"metric {name!r} = {value!r}: must be a number (or a section)")
        elif math.isinf(value):
            raise RegistryError(f"metric {name!r} = {value!r}: must be finite (or NaN for undefined)")
        else:
            flat[name] = float(value)
    return flat


def param_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, default=str, sort_keys=True)
