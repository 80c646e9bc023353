"""Progress reporting that long jobs call and the faces (CLI, UI) render.

The library never prints: a long job calls ``progress(stage, done, total)``; the CLI passes a
callback that draws a bar, tests pass nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Called with the stage name, the units done so far and the total (``None`` if unknown)."""

    def __call__(self, stage: str, done: int, total: int | None) -> None: ...


def null_progress(stage: str, done: int, total: int | None) -> None:
    """The default: report nothing."""
