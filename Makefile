# The two commands of a fresh clone (see README.md):
#   make quickstart   set up .venv and run the main job on the embedded default
#   make test         set up .venv with the dev tools and run lint, types and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= demo-workspace
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: quickstart test lint typecheck unit venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fraudops needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	@touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(BIN)/fraudops quickstart $(WORKSPACE) --replace

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

test: lint typecheck unit
