# Two entry points for a fresh machine with Python 3.11 and make: `make run`, `make test`.
# Each creates the virtualenv it needs (./.venv) the first time, and refreshes it when
# pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

INPUT  ?= examples/sample/*
OUTPUT ?= out
ARGS   ?=

export TZ := UTC

.PHONY: run test bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Runs the pipeline locally (in-process runner) and prints the run summary.
# `make run INPUT='gs://bucket/raw/**' OUTPUT=/tmp/out` runs on other data.
run: $(STAMP)
	$(BIN)/cloud-import-prep --input '$(INPUT)' --output '$(OUTPUT)' --overwrite $(ARGS)

# The whole test suite; CI runs exactly this.
test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# Benchmark against the plain single-process reference (prints figures; not a test).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(ARGS)

clean:
	rm -rf $(VENV) out build *.egg-info
