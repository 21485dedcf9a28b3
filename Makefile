# tierup: `make run` starts the whole system on this machine; `make test` runs every check.
# Both install what they need (a Python virtualenv in .venv with moto, cfn-lint and
# cargo-lambda; cargo-nextest if missing). No AWS account, no Docker.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed-$(shell cksum infra/requirements.txt | cut -d' ' -f1)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
TIERUP      := target/debug/tierup

# Ports of the stack `make test` starts (apart from `make run`'s defaults, so both can run).
TEST_MOTO_PORT   ?= 5055
TEST_API_PORT    ?= 3055
TEST_LAMBDA_PORT ?= 9055

.PHONY: help setup build run test lint fmt clippy cfn-lint unit e2e-stack clean bench

help:
	@echo "make run    - the whole system locally (moto, every function under cargo lambda watch, API on :3000)"
	@echo "make test   - fmt, clippy, cfn-lint, route parity, unit + integration + end-to-end tests"
	@echo "make bench  - ingestion cost and cold-start measurements (docs/BENCHMARKS.md)"

$(STAMP): infra/requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

build: setup
	cargo build --workspace --all-targets

run: build
	$(TIERUP) local up --demo

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

cfn-lint: setup
	cfn-lint template.yaml

lint: fmt clippy cfn-lint

# Every test in one nextest run (its summary is the last line): unit tests, integration tests
# against the emulator, route parity, and end-to-end tests against a local stack started here
# on its own ports and stopped afterwards.
test: setup lint build
	@scripts/with-stack.sh $(TEST_MOTO_PORT) $(TEST_API_PORT) $(TEST_LAMBDA_PORT) \
		cargo nextest run --workspace --no-fail-fast

# Release binaries are what Lambda runs, so cold starts are measured on them.
bench: build
	cargo build --release --workspace
	scripts/with-stack.sh $(TEST_MOTO_PORT) $(TEST_API_PORT) $(TEST_LAMBDA_PORT) \
		target/release/tierup-bench

clean:
	cargo clean
	rm -rf $(VENV) .local
