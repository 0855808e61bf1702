# mqless — the verbs people expect. Every target sets up what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
CHECKS_VENV := .venv-checks
PYTEST_ARGS ?=
# test files run in parallel on this many workers (each file on one worker, so module
# fixtures such as a shared mqless dev start once; the longest files first, as timed in
# tests/durations.json: see tests/conftest.py); TEST_WORKERS=0 runs serially. 4 workers on
# a 2-core machine: the end-to-end files spend much of their time waiting (on a `mqless dev`
# in another process, a long poll, a sweep a second, "nothing else arrives" pauses), and
# with one file per core that left the cores about half idle (a quiet run: 275 s wall for
# ~290 CPU-s); more workers than cores fill those waits with other files' work
TEST_WORKERS ?= 4

.PHONY: setup install dev test unit lint typecheck validate scan build deploy bench bench-local clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(CHECKS_VENV)/.installed: requirements-checks.txt
	$(PYTHON) -m venv $(CHECKS_VENV)
	$(CHECKS_VENV)/bin/pip install --quiet -r requirements-checks.txt
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet -r requirements-sam.txt
	touch $@

## install: put the `mqless` CLI on your PATH (a link in ~/.local/bin to .venv/bin/mqless)
install: setup
	mkdir -p $(HOME)/.local/bin
	ln -sf $(CURDIR)/$(BIN)/mqless $(HOME)/.local/bin/mqless
	@case ":$$PATH:" in *":$(HOME)/.local/bin:"*) echo "mqless is on your PATH: $$(command -v mqless)";; \
	  *) echo "linked $(HOME)/.local/bin/mqless; add $(HOME)/.local/bin to PATH to call it as mqless";; esac

## dev: the whole stack on this machine (moto as AWS): HTTP on :8080, WebSocket on :8081
dev: setup
	$(BIN)/mqless dev $(DEV_ARGS)

## test: lint, type-check, validate the template, then the whole test suite
# PYTHONDONTWRITEBYTECODE (set in some shells and CI images) is dropped for the tests: the
# suite starts a few hundred Python processes (`mqless dev`, every CLI call, `mqless invoke`),
# and without the .pyc files the first one writes, each compiles the project's modules again
test: lint typecheck validate
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## unit: the fast tests only (no moto)
unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

## scan: checkov over template.yaml; every finding fails unless waived with a reason
scan: $(CHECKS_VENV)/.installed
	$(CHECKS_VENV)/bin/checkov --file template.yaml --framework cloudformation --compact \
		--quiet --skip-download

validate: $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

## build: sam build (cross-builds the arm64 layer from PyPI wheels; no Docker)
build: $(SAM_VENV)/.installed
	SAM_CLI_TELEMETRY=0 $(SAM) build

deploy: build
	SAM_CLI_TELEMETRY=0 $(SAM) deploy

## bench: what a message costs on AWS, all in, beside SQS (BENCH_MESSAGES to scale); push
## delivery, authorization, envelope throughput (moto), what features cost (replay,
## selectors, presence, request/reply, credential sweeps, scheduled messages), each
## function's cold import. Writes bench/results/cost.json, features.json, scheduled.json.
bench: setup
	$(BIN)/python bench/cost.py
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_stats.py
	$(BIN)/python bench/bench_push.py
	$(BIN)/python bench/bench_auth.py
	$(BIN)/python bench/bench_envelope.py
	$(BIN)/python bench/push_latency.py
	$(BIN)/python bench/bench_scheduled.py
	$(BIN)/python bench/cold_import.py

## bench-local: mqless dev's speed (STOMP, HTTP, stalls, memory, make test) beside ActiveMQ 5.17;
## writes bench/results/local.json. Shorter: BENCH_ARGS='--repeat 1 --soak-seconds 300 --no-suite'
bench-local: setup
	$(BIN)/python bench/bench_local.py $(BENCH_ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
