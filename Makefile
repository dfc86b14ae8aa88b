# The two commands of README.md: `make run` and `make test`. Both set up .venv first (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test lint bench

setup:
	@bash scripts/setup.sh

run: setup
	@$(PY) -m wyoming_persona.suite

test: setup
	@bash scripts/ensure-test-services.sh
	$(VENV)/bin/ruff check wyoming_persona tests bench
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check wyoming_persona tests bench
	$(VENV)/bin/ruff format --check wyoming_persona tests bench

bench: setup
	$(PY) bench/run_all.py
