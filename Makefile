# Easel: `make run` starts everything on embedded defaults; `make test` runs the whole suite.
# Only Python 3.11+ is needed: uv is installed into .tools/ on first use.
SHELL := /bin/bash
PYTHON ?= python3
UV := .tools/bin/uv
UV_VERSION := 0.13.9

.PHONY: setup run test lint typecheck unit integration bench clean chromium openapi

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Bytecode is compiled up front, for the installed packages (--compile-bytecode) and for the
# project's own sources (compileall, which only redoes what changed): where the environment sets
# PYTHONDONTWRITEBYTECODE, Python never writes it itself, and every process (the test suite
# starts dozens: workers, api replicas, `make run`'s children) compiled everything it imports
# again, ~6 s of CPU for the api alone instead of ~2.
.venv/.synced: $(UV) pyproject.toml shared/pyproject.toml services/*/pyproject.toml clients/*/pyproject.toml
	$(UV) sync --all-packages --compile-bytecode --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	touch .venv/.synced

setup: .venv/.synced
	$(UV) run --no-sync python -m compileall -q -j 0 shared/src services/api/src services/worker/src services/assets/src clients/python/src tests bench scripts > /dev/null

run: setup
	$(UV) run --no-sync python scripts/devrun.py

lint: setup
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync lint-imports

typecheck: setup
	$(UV) run --no-sync mypy shared/src services/api/src services/worker/src services/assets/src clients/python/src

unit: setup
	$(UV) run --no-sync pytest tests/unit

# The canvas browser tests drive Debian's Chromium (Playwright's own browser builds are not
# downloaded): installed here when missing, as root; otherwise say how.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ]; then apt-get update && apt-get install -y chromium; \
	else echo "chromium: /usr/bin/chromium is missing; run 'sudo apt-get install -y chromium' (the canvas browser tests need it)"; fi

# Two worker processes: one runs the SQLite stack's tests, the other the PostgreSQL stack's
# (tests/conftest.py groups them); unit and other tests go to whichever is free. What the database
# decides runs on both stacks, the rest on one (`one_database` in tests/fixtures/stack.py);
# EASEL_TEST_BOTH_DATABASES=1 runs those on both too.
PYTEST_WORKERS ?= 2

test: setup lint typecheck chromium
	$(UV) run --no-sync pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The OpenAPI documents of api and assets, a checked artifact (tests/unit/test_openapi.py).
openapi: setup
	$(UV) run --no-sync python scripts/openapi.py

bench: setup
	$(UV) run --no-sync python bench/pipeline.py

clean:
	rm -rf .venv .tools .data
