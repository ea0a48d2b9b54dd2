# gwfollow: `make demo` and `make test` set everything up on a machine that has
# python3 (3.11+) and make, with the package registries as the only network.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all install demo test bench clean

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gwfollow demo --out demo-output

test: $(STAMP)
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

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
