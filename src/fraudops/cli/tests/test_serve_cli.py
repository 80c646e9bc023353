"""``fraudops keys``, ``deploy``, ``score`` and ``decisions`` end to end on a small workspace."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudops.cli.tests.test_cli import run
from fraudops.cli.tests.test_gate_cli import _NoCapture
from fraudops.events import EventStore

TENANT = "default"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tenant, 32 simulated days, v1 a logistic model."""
    capsys = _NoCapture()
    ws = tmp_path_factory.mktemp("serve") / "ws"
    assert run(["init", str(ws)], capsys)[0] == 0
    assert run(["simulate", "-w", str(ws), "--customers", "200", "--terminals", "400",
                "--days", "32", "--tenants", "1"], capsys)[0] == 0
    code, _, err = run(["train", "-w", str(ws), "--model", "logistic", "--train-days", "12",
                        "--validation-days", "7", "--label-delay-days", "3",
                        "--no-feature-selection"], capsys)
    assert code == 0, err
    return ws


@pytest.fixture
def ws(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "ws"))


def test_keys_are_printed_once_and_listed_without_the_secret(
        ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["keys", "create", TENANT, "-w", str(ws), "--label", "checkout"], capsys)
    assert code == 0
    key = out.strip()
    assert key.startswith("fo_")
    code, out, _ = run(["keys", "list", "-w", str(ws)], capsys)
    assert code == 0
    assert "checkout" in out
    assert key not in out
    assert run(["keys", "create", "-w", str(ws)], capsys)[0] == 2   # neither tenant nor --admin


def test_deploy_refuses_a_model_that_does_not_load_and_audits_what_it_sets(
        ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["deploy", "set", TENANT, "--live", "99", "-w", str(ws)], capsys)
    assert code == 2
    assert "fraud-default/v99 cannot be loaded" in err
    code, _, err = run(["deploy", "set", TENANT, "--live", "x/y", "-w", str(ws)], capsys)
    assert code == 2
    assert "expected NAME/VERSION" in err
    code, out, err = run(["deploy", "set", TENANT, "--live", "1", "--shadow", "1",
                          "-w", str(ws)], capsys)
    assert code == 2
    assert "appears twice" in err
    code, out, _ = run(["deploy", "set", TENANT, "--live", "1", "--reason", "first",
                        "-w", str(ws)], capsys)
    assert code == 0
    assert "plan revision 1 for default: live fraud-default/v1" in out
    _, out, _ = run(["deploy", "show", "-w", str(ws)], capsys)
    assert "fraud-default/v1" in out
    _, out, _ = run(["deploy", "history", "-w", str(ws)], capsys)
    assert "cli:" in out
    assert "first" in out


def test_batch_scoring_reconciles_and_a_second_run_replays(
        ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["deploy", "set", TENANT, "--live", "1", "-w", str(ws)], capsys)[0] == 0
    rows = EventStore(ws / "events").read_transactions().slice(0, 300).to_pylist()
    for row in rows:
        row.pop("date", None)
        row.pop("tenant")
    bad = [{**rows[0], "event_id": "bad-amount", "amount_cents": "12.50"},
           {k: v for k, v in rows[1].items() if k != "event_id"}]
    file = ws / "batch.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "amount_cents": str(r["amount_cents"])}
                                         for r in rows + bad]), file)
    # amounts as text are refused: the file has to carry integers
    code, out, _ = run(["score", str(file), "-w", str(ws), "--state", "memory"], capsys)
    assert code == 1
    assert "0 decided" in out
    assert "302 refused" in out
    pq.write_table(pa.Table.from_pylist(rows), file)
    code, out, _ = run(["score", str(file), "-w", str(ws)], capsys)
    assert code == 0, out
    assert "300 rows: 300 decided (0 already decided before), 0 refused" in out
    with (ws / "batch.decisions.csv").open() as f:
        decided = list(csv.DictReader(f))
    assert len(decided) == 300
    assert {d["action"] for d in decided} <= {"ALLOW", "REVIEW", "PREVENT"}
    code, out, _ = run(["score", str(file), "-w", str(ws)], capsys)
    assert code == 0
    assert "300 decided (300 already decided before)" in out
    code, out, _ = run(["decisions", "export", str(ws / "export"), "-w", str(ws)], capsys)
    assert code == 0
    assert pq.read_table(ws / "export" / "decisions.parquet").num_rows == 300
