"""The architecture holds: imports go down the layers only, and public surfaces are explicit."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fraudops"
#: Bottom up; a layer may import only layers before it. ui and cli share the top rank.
LAYERS = ["core", "events", "features", "models", "release", "serving", "monitoring",
          "pipelines", "ui", "cli"]
RANK = {name: min(i, LAYERS.index("ui")) for i, name in enumerate(LAYERS)}


def _imports(path: Path) -> list[str]:
    """Absolute fraudops modules imported by one file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ["fraudops", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.append(".".join([*base, *(node.module or "").split(".")]).rstrip("."))
            elif node.module:
                found.append(node.module)
    return [name for name in found if name.startswith("fraudops.")]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_package_is_a_known_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"unknown layer(s): {packages - set(LAYERS)}"


def test_imports_only_go_down_the_layers() -> None:
    upward = []
    for path in PACKAGE.rglob("*.py"):
        source = _layer("fraudops." + ".".join(path.relative_to(PACKAGE).parts))
        if source is None:
            continue
        for target in map(_layer, _imports(path)):
            if target is None or target == source:
                continue
            if RANK[target] > RANK[source] or {source, target} == {"ui", "cli"}:
                upward.append(f"{path.relative_to(PACKAGE)} imports fraudops.{target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


@pytest.mark.parametrize("layer", [name for name in LAYERS if (PACKAGE / name).is_dir()])
def test_public_names_are_exactly_all(layer: str) -> None:
    module = importlib.import_module(f"fraudops.{layer}")
    public = sorted(n for n, v in vars(module).items()
                    if not n.startswith("_") and not isinstance(v, types.ModuleType)
                    and n != "annotations")
    assert sorted(module.__all__) == public


#: Imported only where used: together ~1.1 s, which every CLI command paid at start.
SLOW_IMPORTS = ("lightgbm", "sklearn", "scipy")


def test_the_cli_starts_without_the_slow_libraries() -> None:
    """``fraudops --help`` (and every command's start) loads no model-training library."""
    code = ("import sys\nfrom fraudops.cli import main\nsys.argv = ['fraudops', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print('loaded:', *(m for m in {SLOW_IMPORTS!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.rstrip().rsplit("\n", 1)[-1] == "loaded:"
