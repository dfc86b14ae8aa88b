# The two commands of README.md: `make run` and `make test`. Both set up .venv first (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test test-py313 lint bench addon-wheels

setup:
	@bash scripts/setup.sh

run: setup
	@$(PY) -m wyoming_persona.suite

test: setup
	@bash scripts/ensure-test-services.sh
	$(VENV)/bin/ruff check wyoming_persona tests bench
	$(PY) -m pytest

# The same suite on Python 3.13 in .venv313 (scripts/setup-py313.sh builds CPython 3.13 when none is found).
test-py313:
	@bash scripts/setup-py313.sh
	@bash scripts/ensure-test-services.sh
	.venv313/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check wyoming_persona tests bench
	$(VENV)/bin/ruff format --check wyoming_persona tests bench

# The wheel each add-on folder installs (addons/*/wheels/): rebuild after changing the package.
addon-wheels:
	@bash scripts/addon-wheels.sh

bench: setup
	$(PY) bench/run_all.py
