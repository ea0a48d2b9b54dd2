# gwfollow: `make demo` and `make test` set everything up on a machine that has
# python3 (3.11+) and make, with the package registries as the only network.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
MUTATE_ARGS ?=

.PHONY: all install demo test bench mutate clean

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

# Mutation testing (cosmic-ray) over kernels/ and the region, ranking and store
# code, in a scratch copy (.mutate/); slow, so not part of `make test`.
# Narrow it with e.g. MUTATE_ARGS="--suite kernels --sample 60".
mutate: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,mutate]'
	$(PY) tests/mutation/mutate.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) demo-output .pytest_cache .hypothesis build *.egg-info .mutate
	find . -name __pycache__ -prune -exec rm -rf {} +
