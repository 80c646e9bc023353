"""``fraudops models list / show / role / clear-role`` as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudops.cli.tests.test_cli import run
from fraudops.core import Workspace
from fraudops.models import ModelRegistry
from fraudops.models.tests.test_registry import install_template, log, make_template, write_artifact


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture
def workspace(tmp_path: Path, template: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace whose model 'fraud' has two versions; v1 is live."""
    root = tmp_path / "ws"
    assert run(["init", str(root)], capsys)[0] == 0
    ws = Workspace.open(root)
    install_template(template, ws)
    registry = ModelRegistry(workspace=ws)
    for i in range(2):
        registry.register(log(registry, write_artifact(tmp_path / f"a{i}", seed=i),
                              metrics={"roc_auc": 0.9 + i / 100, "test.average_precision": 0.5}
                              ).run_id)
    registry.set_role(1, "live")
    return root


def test_list_shows_versions_roles_and_key_metrics(workspace: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "list", "-w", str(workspace)], capsys)
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]  # body rows
    newest, oldest = (row.split("│")[1:-1] for row in rows)
    assert [cell.strip() for cell in newest[:2] + newest[3:7]] == [
        "2", "-", "0.9100", "0.5000", "-", "card_risk_v3"]  # AP from a section, CP not logged
    assert [cell.strip() for cell in oldest[:2] + oldest[3:5]] == ["1", "live", "0.9000", "0.5000"]


def test_list_json(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "list", "-w", str(workspace), "--json"], capsys)
    assert code == 0
    listed = json.loads(out)
    assert [(v["version"], v["roles"]) for v in listed] == [(2, []), (1, ["live"])]


def test_show_prints_everything(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "show", "1", "-w", str(workspace)], capsys)
    assert code == 0
    for expected in ("model fraud version 1", "live", "card_risk_v3", "d3adb33f", "num_leaves",
                     "roc_auc", "extra/weights.bin", "4,096", "model.txt",
                     "features (2): amount_cents_sum_24h_by_card, terminal_risk_7d"):
        assert expected in out, expected


def test_role_moves_an_alias_and_records_lineage(workspace: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "role", "2", "live", "-w", str(workspace)], capsys)
    assert (code, out.strip()) == (0, "fraud v2 is now live (was v1)")
    _, out, _ = run(["models", "show", "2", "-w", str(workspace), "--json"], capsys)
    info = json.loads(out)["info"]
    assert (info["roles"], info["previous_live"]) == (["live"], 1)
    code, out, _ = run(["models", "clear-role", "live", "-w", str(workspace)], capsys)
    assert (code, out.strip()) == (0, "fraud: no version is live (was v2)")


def test_errors_are_one_line_and_exit_2(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["models", "show", "7", "-w", str(workspace)], capsys)
    assert (code, err.strip()) == (2, "error: model 'fraud' has no version 7; versions: 1, 2")
    code, _, err = run(["models", "role", "1", "champion", "-w", str(workspace)], capsys)
    assert code == 2
    assert "role 'champion': must be one of live, candidate, shadow, canary, retired" in err
    code, _, err = run(["models", "list", "-w", str(workspace), "--model", "acme"], capsys)
    assert code == 2
    assert "no registered model 'acme'" in err
