# sd-allocator: `make run` starts the product on this machine, `make test` proves it.
# Both set themselves up on a fresh machine (system packages, .venv).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SDA_DATA_DIR ?= $(CURDIR)/.data
SDA_ADMINS ?= admin@example.com
export SDA_DATA_DIR SDA_ADMINS

.PHONY: install system-deps run test test-fast lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@scripts/system-deps.sh

run: install
	$(BIN)/sd-allocator serve

test: system-deps install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: system-deps install
	$(BIN)/python -m bench.run --rounds 3

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
