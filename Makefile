# Easel: `make run` starts everything on embedded defaults; `make test` runs the whole suite.
# Only Python 3.11+ is needed: uv is installed into .tools/ on first use.
SHELL := /bin/bash
PYTHON ?= python3
UV := .tools/bin/uv
UV_VERSION := 0.13.9

.PHONY: setup run test lint typecheck unit integration bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml shared/pyproject.toml services/*/pyproject.toml
	$(UV) sync --all-packages --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	touch .venv/.synced

setup: .venv/.synced

run: setup
	$(UV) run --no-sync python scripts/devrun.py

lint: setup
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync lint-imports

typecheck: setup
	$(UV) run --no-sync mypy shared/src services/api/src services/worker/src services/assets/src

unit: setup
	$(UV) run --no-sync pytest tests/unit

test: setup lint typecheck
	$(UV) run --no-sync pytest

bench: setup
	$(UV) run --no-sync python bench/pipeline.py

clean:
	rm -rf .venv .tools .data
