# Two entry points for a fresh machine with Python 3.11 and make: `make run`, `make test`.
# Each creates the virtualenvs it needs the first time (./.venv; `make test` also
# ./.venv-airflow), and refreshes them when pyproject.toml or the Airflow pins change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Airflow and its providers live in a virtualenv of their own: they pin hundreds of packages
# that must not decide the pipeline's versions (scheduling/requirements-airflow.txt says why
# the pins are exact).
AIRFLOW_VENV  := .venv-airflow
AIRFLOW_PINS  := scheduling/requirements-airflow.txt
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

INPUT  ?= examples/sample/*
OUTPUT ?= out
ARGS   ?=

export TZ := UTC

.PHONY: run test lint test-pipeline test-airflow bench venv clean

venv: $(STAMP)

# The runtime dependencies at the versions the Docker image gets (constraints.txt), the lint
# tools at theirs (constraints-lint.txt); the editable install also builds the schema's C
# tally in place when a compiler is there (setup.py), again when its source changes.
$(STAMP): pyproject.toml setup.py transforms/_tally.c constraints.txt constraints-lint.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -c constraints-lint.txt -e '.[test]'
	touch $(STAMP)

# Runs the pipeline locally (in-process runner) and prints the run summary.
# `make run INPUT='gs://bucket/raw/**' OUTPUT=/tmp/out` runs on other data.
run: $(STAMP)
	$(BIN)/cloud-import-prep --input '$(INPUT)' --output '$(OUTPUT)' --overwrite $(ARGS)

# The whole test suite: the lint, the pipeline's tests, then the Airflow DAG's in Airflow's
# own virtualenv. CI runs exactly this.
test: lint test-pipeline test-airflow

# Static checks, configured in pyproject.toml: ruff over the whole tree; mypy over the
# product and the benchmarks, strict on the pure core. Seconds, so it goes first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test-pipeline: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# Built from PyPI only, with every version pinned; prints how long the build took (CI's budget).
$(AIRFLOW_STAMP): $(AIRFLOW_PINS)
	@start=$$(date +%s); \
	set -e; \
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV); \
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip; \
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r $(AIRFLOW_PINS); \
	$(AIRFLOW_VENV)/bin/python -m pip check; \
	echo "$(AIRFLOW_VENV) built in $$(( $$(date +%s) - start )) s"
	touch $(AIRFLOW_STAMP)

# The DAG imported, rendered and checked by Airflow 3 itself (no scheduler, no database).
# The file is not named test_*: the pipeline's virtualenv has no Airflow to collect it with.
test-airflow: $(AIRFLOW_STAMP)
	$(AIRFLOW_VENV)/bin/python -m pytest -p no:cacheprovider --noconftest tests/airflow_dag_check.py

# Benchmark against the plain single-process reference (prints figures; not a test).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(ARGS)

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) out build *.egg-info .mypy_cache .ruff_cache transforms/*.so
