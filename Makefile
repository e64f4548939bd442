# Two set-up commands for a fresh machine; both use one virtualenv.
#   make run   - the service on the embedded default (SQLite + deploy/newswatch.example.yaml);
#                installs only what the service needs
#   make test  - the whole test suite (Postgres tests run when NEWSWATCH_TEST_DATABASE_URL is set);
#                after `make lint` (ruff check, ruff format --check, mypy); adds the test tools
#                (pytest, ruff, mypy, selenium, schemathesis, ...) to the same venv
#   make bench - every benchmark at a size that finishes in under 10 minutes on 2 cores, and
#                one table of ratios (bench/run_all.py; docs/benchmarks.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Stamp of the test tools: `make run` then `make test` adds them without rebuilding the rest.
TEST_TOOLS := $(VENV)/.test-tools

.PHONY: run test lint bench clean

$(BIN)/newswatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_TOOLS): $(BIN)/newswatch
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/newswatch
	NEWSWATCH_CONFIG=$${NEWSWATCH_CONFIG:-deploy/newswatch.example.yaml} $(BIN)/newswatch run

# `make lint`: ruff's lint and format checks and mypy over service/ ([tool.mypy] in
# pyproject.toml), all of which must pass; `make test` runs them before the tests.
test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(TEST_TOOLS)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy

bench: $(TEST_TOOLS)  # the baselines (datasketch, ...) come with the test tools
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
