"""Terminal output for the CLI: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from fraudops.core import Progress


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # piped output (CI logs, files) gets room for the tables instead of 80 columns
    width = None if stream.isatty() else 140
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


out = _console(stderr=False)
err = _console(stderr=True)


@contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    """A :class:`fraudops.core.Progress` callback drawing one bar on stderr, labelled by stage."""
    with RichProgress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=err.is_terminal) as bar:
        task = bar.add_task(description, total=None)

        def report(stage: str, done: int, total: int | None) -> None:
            bar.update(task, description=f"{description}: {stage}", completed=done, total=total)

        yield report
