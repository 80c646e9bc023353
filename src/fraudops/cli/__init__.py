"""The command line: ``fraudops COMMAND``; a face over the same Python API as the dashboard."""

from ._app import app, main

__all__ = ["app", "main"]
