"""The command line as a user types it: help everywhere, one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudops.cli import app, main
from fraudops.events.tests.test_ingest import MESSY_MAPPING, write_messy_csv


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    import sys

    old = sys.argv
    sys.argv = ["fraudops", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _commands() -> list[str]:
    import typer.main

    from fraudops.cli import _data_commands, _features, _gate, _models, _quickstart, _simulate, _train  # noqa: F401

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def write_mapping(path: Path) -> Path:
    lines = ['[source]\ndelimiter = ";"\ndecimal = ","\nthousands = "."\n',
             '[transaction]\nevent_id = { derive = true }\ntenant = { value = "acme" }\n'
             'event_time = { column = "FECHA", format = "%d/%m/%Y", hour_column = "HORA" }\n'
             'amount = "IMPORTE"\ncard_id = "TARJETA"\n',
             '[attributes]\npersona = "TIPO_PERSONA"\n'
             'online = { column = "ONLINE", type = "bool" }\n'
             'device = { column = "DISPOSITIVO", type = "dict", keys = { model = "int",'
             ' device_score = "int", os = "string" } }\n',
             '[label]\ncolumn = "FRAUDE"\n']
    path.write_text("\n".join(lines))
    assert MESSY_MAPPING["label"] == {"column": "FRAUDE"}  # the same mapping as the API tests
    return path


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands()
    assert {"init", "ingest", "status"} <= set(commands)
    for command in commands:
        code, out, _ = run([command, "--help"], capsys)
        assert code == 0, command
        assert "Usage" in out, command


def test_init_ingest_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    assert run(["init", str(ws)], capsys)[0] == 0
    export, mapping = write_messy_csv(tmp_path / "x.csv"), write_mapping(tmp_path / "m.toml")
    code, out, _ = run(["ingest", str(export), "-m", str(mapping), "-w", str(ws)], capsys)
    assert code == 0
    assert "read 11 = accepted 4 + quarantined 7 + duplicates 0" in out
    code, out, _ = run(["ingest", str(export), "-m", str(mapping), "-w", str(ws), "--json"],
                       capsys)
    report = json.loads(out)
    assert (report["accepted"], report["duplicates"], report["reconciles"]) == (0, 4, True)
    code, out, _ = run(["status", "-w", str(ws)], capsys)
    assert code == 0
    assert "acme" in out
    assert "ingestion batches: 2" in out


def test_strict_exits_1_when_rows_were_quarantined(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    run(["init", str(ws)], capsys)
    export, mapping = write_messy_csv(tmp_path / "x.csv"), write_mapping(tmp_path / "m.toml")
    code, _, _ = run(["ingest", str(export), "-m", str(mapping), "-w", str(ws), "--strict"],
                     capsys)
    assert code == 1


@pytest.mark.parametrize(("mapping_text", "message"), [
    ("[transaction\n", "not valid TOML"),
    ('[transaction]\nevent_id = "id"\n', "event_time is required"),
])
def test_bad_mapping_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            mapping_text: str, message: str) -> None:
    run(["init", str(tmp_path / "ws")], capsys)
    (tmp_path / "m.toml").write_text(mapping_text)
    write_messy_csv(tmp_path / "x.csv")
    code, _, err = run(["ingest", str(tmp_path / "x.csv"), "-m", str(tmp_path / "m.toml"),
                        "-w", str(tmp_path / "ws")], capsys)
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert message in error_lines[0]


def test_unreadable_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["init", str(tmp_path / "ws")], capsys)
    (tmp_path / "x.parquet").write_text("not parquet")
    code, _, err = run(["ingest", str(tmp_path / "x.parquet"), "-m",
                        str(write_mapping(tmp_path / "m.toml")), "-w", str(tmp_path / "ws")],
                       capsys)
    assert code == 2
    assert "not a readable Parquet file" in err


def test_outside_a_workspace_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FRAUDOPS_WORKSPACE", raising=False)
    code, _, err = run(["status"], capsys)
    assert code == 2
    assert "fraudops init DIR" in err


SMALL = ["--customers", "150", "--terminals", "300", "--days", "20"]


def test_simulate_into_a_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    run(["init", str(ws)], capsys)
    code, out, _ = run(["simulate", "-w", str(ws), *SMALL, "--tenants", "2"], capsys)
    assert code == 0
    assert "stored" in out
    code, out, _ = run(["status", "-w", str(ws)], capsys)
    assert "tenant_01" in out
    assert "tenant_02" in out
    assert list((ws / "simulation").glob("*/truth.parquet"))


def test_simulate_export_is_ingestible_with_its_mapping(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "sim.csv"
    code, out, _ = run(["simulate", *SMALL, "--export", str(export)], capsys)
    assert code == 0
    mapping = tmp_path / "sim.csv.mapping.toml"
    assert mapping.exists()
    run(["init", str(tmp_path / "ws")], capsys)
    code, out, _ = run(["ingest", str(export), "-m", str(mapping), "-w", str(tmp_path / "ws"),
                        "--json"], capsys)
    report = json.loads(out)
    assert report["quarantined"] == 0
    assert report["accepted"] == report["rows_read"] > 0


def test_simulate_rejects_bad_parameters_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["simulate", "--days", "0", "--export", str(tmp_path / "x.csv")], capsys)
    assert code == 2
    assert "n_days" in err


def test_profile_writes_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    run(["init", str(ws)], capsys)
    run(["simulate", "-w", str(ws), *SMALL], capsys)
    code, _, _ = run(["profile", "-w", str(ws)], capsys)
    assert code == 0
    profile = json.loads((ws / "reports" / "profile.json").read_text())
    assert profile["totals"]["transactions"] > 0
    assert (ws / "reports" / "profile.html").read_text().startswith("<!DOCTYPE html>")


def test_profile_of_an_empty_workspace_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["init", str(tmp_path / "ws")], capsys)
    code, _, err = run(["profile", "-w", str(tmp_path / "ws")], capsys)
    assert code == 2
    assert "fraudops ingest" in err


def test_quickstart_runs_the_main_job_and_reconciles(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "demo"
    code, out, _ = run(["quickstart", str(ws), *SMALL, "--drift-start", "2018-04-15"], capsys)
    assert code == 0, out
    assert "(reconciles)" in out
    assert (ws / "reports" / "profile.html").exists()
    # a second run refuses to overwrite unless asked
    code, _, err = run(["quickstart", str(ws), *SMALL], capsys)
    assert code == 2
    assert "--replace" in err
    assert run(["quickstart", str(ws), *SMALL, "--replace"], capsys)[0] == 0


def _simulated_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    ws = tmp_path / "ws"
    run(["init", str(ws)], capsys)
    run(["simulate", "-w", str(ws), *SMALL], capsys)
    return ws


def test_init_writes_starter_features_that_list(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ws = _simulated_workspace(tmp_path, capsys)
    code, out, _ = run(["features", "list", "-w", str(ws)], capsys)
    assert code == 0
    assert "starter_v1" in out
    assert "fraud_ratio_7d_delay7d_by_terminal" in out


def test_features_backfill_writes_parquet(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    ws = _simulated_workspace(tmp_path, capsys)
    code, _, _ = run(["features", "backfill", "-w", str(ws)], capsys)
    assert code == 0
    table = pq.read_table(ws / "offline" / "starter_v1" / "features.parquet")
    assert "count_1h_by_card" in table.column_names
    assert table.num_rows > 0


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_features_parity_passes_on_simulated_data(tmp_path: Path, store: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ws = _simulated_workspace(tmp_path, capsys)
    code, out, _ = run(["features", "parity", "-w", str(ws), "--store", store, "--json"], capsys)
    report = json.loads(out)
    assert code == 0
    assert report["ok"]
    assert report["state_store"] == store


def test_features_with_a_bad_definition_is_exit_2(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ws = _simulated_workspace(tmp_path, capsys)
    (ws / "features" / "definitions.py").write_text(
        "from fraudops.features import *\n"
        "FEATURES = FeatureSet('bad', groups=[FeatureGroup(Entity('card', ('card_id',)),"
        " [Aggregation('amt', Op.SUM, windows=[days(1)])])])\n")
    code, _, err = run(["features", "backfill", "-w", str(ws)], capsys)
    assert code == 2
    assert "'amt' is not a column of transactions" in err


def test_train_registers_one_candidate_per_tenant(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    run(["init", str(ws)], capsys)
    run(["simulate", "-w", str(ws), "--customers", "200", "--terminals", "400", "--days", "30",
         "--tenants", "2"], capsys)
    code, out, err = run(["train", "-w", str(ws), "--train-days", "10", "--validation-days", "5",
                          "--label-delay-days", "3", "--no-feature-selection"], capsys)
    assert code == 0, err
    assert "fraud-tenant_01" in out
    assert "fraud-tenant_02" in out
    code, out, _ = run(["models", "list", "-w", str(ws), "--model", "fraud-tenant_02"], capsys)
    assert code == 0
    assert "candidate" in out


def test_train_without_enough_history_is_exit_2(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ws = _simulated_workspace(tmp_path, capsys)
    code, _, err = run(["train", "-w", str(ws)], capsys)
    assert code == 2
    assert "shorten train_days" in err
