# The two commands: `make run` brings the whole stack up, `make test` runs every test.
SHELL := /bin/bash
PY := .venv/bin/python
UV := $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)

.PHONY: run test install services migrate seed lint format bench openapi clean

install: $(UV)
	@$(UV) sync --frozen --quiet

.venv-tools/bin/uv:
	@python3 -m venv .venv-tools && .venv-tools/bin/pip install --quiet uv

services:
	@python3 scripts/check_services.py

migrate: install services
	@$(PY) -m shared.migrate

seed: migrate
	@$(PY) -m scripts.seed

run: migrate
	@$(PY) -m scripts.run_stack

test: install services
	@$(PY) -m pytest -q --drills $(PYTEST_ARGS)

lint: install
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

format: install
	@.venv/bin/ruff check --fix . && .venv/bin/ruff format .

openapi: install
	@$(PY) -m scripts.export_openapi

bench: install
	@$(PY) -m scripts.bench $(BENCH_ARGS)

clean:
	rm -rf .venv .venv-tools .run .pytest_cache .ruff_cache .mypy_cache
