from __future__ import annotations

from pathlib import Path

import pytest

from fraudops.core import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws", name="test")
