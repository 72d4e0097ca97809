# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Stamp files make installs idempotent and re-run them when pyproject.toml changes.
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
# `make run PORT=8080 HOST=0.0.0.0`: where `make run` serves.
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: help run test lint bench fmt clean soak screenshots lock

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)  ## Set up (venv, keys, database) and serve on http://127.0.0.1:8000 (PORT=..., HOST=...)
	$(BIN)/license-server init --dev
	$(BIN)/license-server serve --host $(HOST) --port $(PORT)

test: $(STAMP_TEST)  ## Set up and run the whole test suite
	$(BIN)/pytest

lint: $(STAMP_TEST)  ## ruff + mypy (strict) + import layers (lint-imports: the contracts in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The Docker image's locks resolve for its Python (the base image's tag) on Linux, not for this machine's Python.
# Each pin carries the hashes of every file PyPI has for that version, so an arm64 build verifies as well.
# `make lock` keeps the pins that still satisfy pyproject.toml; `make lock UPGRADE=1` moves all to the newest.
DOCKER_PYTHON = $(shell sed -n 's/^FROM python:\([0-9][0-9.]*\).*/\1/p' Dockerfile | head -n 1)
COMPILE_LOCK = $(BIN)/uv pip compile --quiet --generate-hashes --python-version $(DOCKER_PYTHON) \
	--python-platform linux --custom-compile-command 'make lock  (Python $(DOCKER_PYTHON) on Linux, as the Dockerfile)' $(if $(UPGRADE),--upgrade)

lock: $(STAMP_TEST)  ## Re-resolve the Docker image's hash-locked dependencies: requirements.lock (runtime), requirements-build.lock (setuptools)
	$(COMPILE_LOCK) pyproject.toml -o requirements.lock
	$(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(COMPILE_LOCK) - -o requirements-build.lock

fmt: $(STAMP_TEST)  ## Format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP_TEST)  ## Run the benchmarks (ratios against a baseline measured in the same run)
	$(PY) -m bench

screenshots: $(STAMP_TEST)  ## PNGs of the console's main pages from a seeded demo database (docs/screenshots/), in the system Chromium
	$(PY) -m tests.console.screenshots

soak: $(STAMP_TEST)  ## Long adversarial runs: many more fuzz cases, kills and guesses (SOAK=1), about 30 min
	SOAK=1 $(BIN)/pytest -p no:cacheprovider -s tests/adversarial tests/e2e/test_crash_safety.py

clean:  ## Remove the virtualenv (never data/ or keys/)
	rm -rf $(VENV)
