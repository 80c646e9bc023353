"""The workspace: created once, found from anywhere inside it, written by one process at a time."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from fraudops.core import Workspace, WorkspaceError, format_duration, parse_duration


def test_init_creates_the_layout(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "acme")
    for sub in ("features", "mappings", "events/transactions", "events/labels",
                "quarantine", "reports", "fraudops.toml"):
        assert (ws.root / sub).exists(), sub
    assert ws.config.name == "acme"


def test_init_refuses_an_existing_workspace(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "acme")
    with pytest.raises(WorkspaceError, match="already holds a workspace"):
        Workspace.init(tmp_path / "acme")


def test_init_rejects_a_name_that_cannot_be_a_path(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="workspace name = 'a/b'"):
        Workspace.init(tmp_path / "x", name="a/b")


def test_find_walks_up_from_a_subfolder(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "acme")
    assert Workspace.find(ws.root / "features").root == ws.root


def test_find_outside_a_workspace_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="fraudops init DIR"):
        Workspace.find(tmp_path)


def test_config_with_unknown_keys_is_rejected(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "acme")
    (ws.root / "fraudops.toml").write_text('[workspace]\nname = "acme"\ncolour = "red"\n')
    with pytest.raises(WorkspaceError, match=r"unknown key\(s\) in \[workspace\]: \['colour'\]"):
        Workspace.open(ws.root)


def test_config_that_is_not_toml_is_rejected(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "acme")
    (ws.root / "fraudops.toml").write_text("[workspace\n")
    with pytest.raises(WorkspaceError, match="not valid TOML"):
        Workspace.open(ws.root)


def test_second_writer_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "acme")
    other = Workspace.open(ws.root)
    with ws.lock():
        pid = os.fork()
        if pid == 0:  # a second process must not get the lock
            try:
                with other.lock():
                    os._exit(1)
            except WorkspaceError as exc:
                os._exit(0 if str(os.getppid()) in str(exc) else 2)
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    with other.lock():  # released afterwards
        pass


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), (3600, timedelta(hours=1))])
def test_durations_parse(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["7 days", "d", "", "-1d", True])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="write it like"):
        parse_duration(text, field="window")


def test_format_duration_round_trips() -> None:
    for text in ("90s", "15m", "1h", "7d", "14d", "36h"):
        assert format_duration(parse_duration(text)) == text
