"""Test-suite wide settings: telemetry off, and modules that must not be imported by doctest."""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Importing it runs the command line.
collect_ignore = ["src/fraudops/__main__.py"]
