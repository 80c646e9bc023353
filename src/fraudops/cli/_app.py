"""The ``fraudops`` command: one Typer app; every command is a thin face over the Python API."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fraudops import __version__
from fraudops.core import FraudopsError, Workspace

from ._console import err

app = typer.Typer(
    name="fraudops",
    help="Fraud models from raw events to real-time decisions. Run 'fraudops COMMAND --help'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="FRAUDOPS_WORKSPACE",
                 help="Workspace folder (default: the current folder or its nearest parent).",
                 show_default=False),
]


def open_workspace(path: Path | None) -> Workspace:
    """The workspace named by --workspace, else the one around the current folder."""
    return Workspace.open(path) if path is not None else Workspace.find()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fraudops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Fraud models from raw events to real-time decisions."""


def main() -> None:
    """Entry point: known errors become one line on stderr and exit status 2."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # MLflow logs its database migrations at INFO; the CLI reports what matters itself
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # importing a command module registers its commands
    from . import (  # noqa: F401
        _data_commands,
        _features,
        _gate,
        _models,
        _quickstart,
        _score,
        _serve,
        _simulate,
        _train,
    )

    try:
        app()  # standalone: usage errors print themselves and exit 2; typer.Exit exits
    except FraudopsError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(2) from None
