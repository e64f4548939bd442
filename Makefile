# Two set-up commands for a fresh machine; each makes its own virtualenv.
#   make run   - the service on the embedded default (SQLite + deploy/newswatch.example.yaml)
#   make test  - the whole test suite (Postgres tests run when NEWSWATCH_TEST_DATABASE_URL is set)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/newswatch: pyproject.toml setup.py service/newswatch/grouping/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/newswatch
	NEWSWATCH_CONFIG=$${NEWSWATCH_CONFIG:-deploy/newswatch.example.yaml} $(BIN)/newswatch run

test: $(BIN)/newswatch
	$(BIN)/ruff check service tests bench
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/newswatch
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
