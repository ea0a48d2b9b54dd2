# gwfollow: `make demo` and `make test` set everything up on a machine that has
# python3 (3.11+) and make, with the package registries as the only network.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
MUTATE_ARGS ?=

.PHONY: all install static demo test bench mutate clean

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Aladin Lite for the event pages, from the npm registry, pinned; served by gwfollow itself
# (no CDN at run time).  Needs node/npm (Debian: apt-get install npm).
ALADIN_VERSION := 3.8.2
ALADIN_JS      := gwfollow/service/static/vendor/aladin-lite/aladin.js
NPM_DIR        := build/npm

$(ALADIN_JS): Makefile
	@command -v npm >/dev/null || { echo "npm is needed for the web pages' Aladin Lite (apt-get install npm)"; exit 1; }
	npm install --no-save --no-audit --no-fund --prefix $(NPM_DIR) aladin-lite@$(ALADIN_VERSION)
	@mkdir -p $(dir $(ALADIN_JS))
	cp $(NPM_DIR)/node_modules/aladin-lite/dist/aladin.js $(ALADIN_JS)

static: $(ALADIN_JS)

install: $(STAMP) static

demo: $(STAMP) static
	$(VENV)/bin/gwfollow demo --out demo-output

test: $(STAMP) static
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_targets.py
	$(PY) benchmarks/bench_rest.py
	$(PY) benchmarks/bench_tap.py
	$(PY) benchmarks/bench_dask.py
	$(PY) benchmarks/bench_partitioned.py
	@test -x benchmarks/.venv-gwemopt/bin/python || $(PY) benchmarks/bench_plan.py --setup  # gwemopt in its own venv
	$(PY) benchmarks/bench_plan.py

# Mutation testing (cosmic-ray) over kernels/ and the region, ranking and store
# code, in a scratch copy (.mutate/); slow, so not part of `make test`.
# Narrow it with e.g. MUTATE_ARGS="--suite kernels --sample 60".
mutate: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,mutate]'
	$(PY) tests/mutation/mutate.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis build *.egg-info .mutate
	find . -name __pycache__ -prune -exec rm -rf {} +
