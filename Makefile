PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# one venv, one stamp per install: the demo needs the library and its `cli` extra only, the
# tests and linters the whole development stack (either may come first)
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: demo test test-slow lint docs dist-check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[cli]'
	touch $(DEMO_STAMP)

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m interleaved_sampler demo

# the fast tier and the linters; the slow tier (torchrun, spawn, large fuzz runs): test-slow
test: $(STAMP)
	$(PY) -m pytest -m "not slow"
	$(MAKE) lint

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples docs/_ext
	$(PY) -m ruff format --check src tests benchmarks examples docs/_ext
	$(PY) -m mypy

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

dist-check: $(STAMP)
	PY=$(PY) bash .ci/check_dist

bench: $(STAMP)
	$(PY) benchmarks/sampler_overhead.py

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
