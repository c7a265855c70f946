# The two commands of the README: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint typecheck unit install node-install web test-tools checkov-install docs clean

run: install web
	$(BIN)/echodesk run

test: install node-install test-tools checkov-install lint typecheck unit

install: $(STAMP)

# Reinstall whenever the locked requirements or the project metadata change.
$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

# The JavaScript of the web UI and the browser tests (SIP.js, esbuild, tsc): reinstalled from the
# lock whenever it changes.
node-install: $(NODE_STAMP)

$(NODE_STAMP): package-lock.json package.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is needed for the web UI and the browser tests: apt-get install npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The web UI's scripts (services/api/web/src, SIP.js bundled in), which the api serves under /ui/.
# Built, not committed: rebuilt whenever a source or the lock changes.
WEB_DIST := services/api/web/dist
WEB_SOURCES := $(wildcard services/api/web/src/*.ts) services/api/web/build.mjs

web: $(WEB_DIST)/.built

$(WEB_DIST)/.built: $(NODE_STAMP) $(WEB_SOURCES)
	npm run --silent build:web
	@touch $@

test-tools:
	@scripts/install-test-tools.sh

# checkov lints the rendered deploy/k8s manifests and the Dockerfile (tests/deploy/test_checkov.py).
# Its pins conflict with the services' locks, so it has a venv of its own inside .venv.
CHECKOV_VENV := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

checkov-install: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements/checkov.txt
	@touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install node-install
	$(BIN)/mypy shared services bench
	node_modules/.bin/tsc -p services/api/web
	node_modules/.bin/tsc -p tests/browser

unit: install node-install
	$(BIN)/pytest

docs: install
	$(BIN)/echodesk docs

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
