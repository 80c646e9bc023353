"""The Kubernetes manifests and the image in ``deploy/`` agree with the code they run.

No cluster runs here, so these checks are static: every command line is parsed by the real
CLI, every probe names a route of the real app, every selector finds the pods, every variable
a manifest refers to is defined, and ``kubectl kustomize`` renders the folder where kubectl is
installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from fraudops.cli import _serve  # noqa: F401  (registers `serve`, as main() does)
from fraudops.cli import app as cli_app
from fraudops.serving import create_app

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = DEPLOY / "kubernetes"


def _documents() -> dict[str, dict[str, Any]]:
    """Every manifest by kind (one object of each kind)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']} objects"
            found[doc["kind"]] = doc
    return found


def _serve_params(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``fraudops ARGS`` parsed by the real CLI with ``env`` set (no command runs): the
    options of ``serve``."""
    group: Any = typer.main.get_command(cli_app)   # typer's own click: duck-typed
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert args[0] == "serve", args
        ctx = group.make_context("fraudops", ["serve"], resilient_parsing=True)
        command = group.get_command(ctx, "serve")
        return command.make_context("serve", list(args[1:]), parent=ctx).params


def _directive(text: str, name: str) -> str:
    found = re.search(rf"^{name} (.+)$", text, re.MULTILINE)
    assert found is not None, f"the Dockerfile has no {name}"
    return found.group(1)


def _container() -> dict[str, Any]:
    [container] = _documents()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS.glob("*.yaml")
                                    if p.name != "kustomization.yaml")


def test_the_deployment_runs_a_serve_command_the_cli_accepts() -> None:
    container = _container()
    defined = {e["name"] for e in container["env"]}
    referred = {v for arg in container["args"] for v in re.findall(r"\$\((\w+)\)", arg)}
    assert referred <= defined, f"undefined variables: {referred - defined}"
    args = [re.sub(r"\$\((\w+)\)", "redis://redis:6379/0", a) for a in container["args"]]
    env = {e["name"]: e.get("value", "postgresql://u@db/fraudops") for e in container["env"]}
    params = _serve_params(args, env)
    assert params["state"] == "redis"   # replicas share their online state
    assert params["database"].startswith("postgresql://")   # and their decision log
    assert params["host"] == "0.0.0.0"   # reachable on the pod's address
    [port] = container["ports"]
    assert params["port"] == port["containerPort"]
    cpu = float(container["resources"]["requests"]["cpu"])
    assert params["workers"] == cpu, "one worker per requested core"


def test_the_probes_and_the_service_reach_the_app() -> None:
    docs = _documents()
    container = _container()
    routes = {getattr(r, "path", None) for r in create_app().routes}
    names = {p["name"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] in routes
        assert check["port"] in names
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["targetPort"] for p in docs["Service"]["spec"]["ports"]} <= names


def test_every_selector_finds_the_pods() -> None:
    docs = _documents()
    deployment = docs["Deployment"]["spec"]
    pod_labels = deployment["template"]["metadata"]["labels"]
    for selector in (deployment["selector"]["matchLabels"], docs["Service"]["spec"]["selector"],
                     docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()


def test_secrets_and_volumes_named_by_the_deployment_exist() -> None:
    docs = _documents()
    container = _container()
    secret = docs["Secret"]
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]
    volumes = {v["name"]: v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} == set(volumes)
    assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == \
        docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in docs["PersistentVolumeClaim"]["spec"]["accessModes"]


def test_the_image_serves_the_way_the_deployment_expects() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert json.loads(_directive(text, "ENTRYPOINT")) == ["fraudops"]
    params = _serve_params(json.loads(_directive(text, "CMD")), {})
    exposed = int(_directive(text, "EXPOSE"))
    assert params["port"] == exposed == _container()["ports"][0]["containerPort"]
    assert "FRAUDOPS_WORKSPACE=/workspace" in text
    mounts = {m["name"]: m["mountPath"] for m in _container()["volumeMounts"]}
    assert mounts["workspace"] == "/workspace"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_renders_the_folder() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(out))
    assert kinds == sorted(_documents())


def test_the_image_build_context_holds_what_the_package_needs(tmp_path: Path) -> None:
    # what the Dockerfile copies, built the way its `pip install .` builds it
    root = DEPLOY.parent
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE):
        *sources, _ = line.split()
        for source in sources:
            if (root / source).is_dir():
                shutil.copytree(root / source, tmp_path / source,
                                ignore=shutil.ignore_patterns("__pycache__", "tests"))
            else:
                shutil.copy(root / source, tmp_path / source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(tmp_path)], check=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("fraudops-*.whl")
    with zipfile.ZipFile(wheel) as built:
        names = set(built.namelist())
    assert {"fraudops/serving/_app.py", "fraudops/cli/__init__.py"} <= names
    assert any(n.endswith("entry_points.txt") for n in names)
