# mi-catalog — the usual targets. `make demo` and `make test` are the README's quick start.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup model demo test test-fast lint typecheck check bench bench-catalog site serve validate index clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# whoosh3 replaced whoosh-reloaded (same `whoosh` package): never leave both in one venv.
	$(BIN)/pip uninstall -q -y whoosh-reloaded 2>/dev/null || true
	# torch is pinned by constraints.txt to the CPU wheel; the package itself accepts a range.
	$(BIN)/pip install -q -c constraints.txt -e ".[run,site,dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the package with every extra (pinned by constraints.txt)

demo: setup  ## the main job: a faceted query, then a reference implementation on the built-in toy model
	$(BIN)/mi-catalog query --object head --method probe
	$(BIN)/mi-catalog run logit-lens --out runs/logit-lens

test: setup model  ## the whole test suite, real-model tests included (installs Debian's chromium for the browser tests when it can)
	bash scripts/ensure-chromium.sh
	$(BIN)/pytest -q

model: setup  ## fetch SmolLM2-135M-Instruct (dequantised Q4_1) into the model cache once; instant when cached
	$(BIN)/mi-catalog models get smollm2-135m

test-fast: setup  ## tests without the browser and the slow model tests
	$(BIN)/pytest -q -m "not browser and not slow"

lint: setup  ## ruff
	$(BIN)/ruff check mi_catalog reference_impls tests benchmarks

typecheck: setup  ## mypy
	$(BIN)/mypy

check: lint typecheck validate  ## lint + types + catalog validation

validate: setup  ## validate every catalog file
	$(BIN)/mi-catalog validate

index: setup  ## rebuild the search index
	$(BIN)/mi-catalog index --rebuild

bench: setup  ## every benchmark (prints figures)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-catalog: setup  ## catalog query/index benchmark
	$(BIN)/python benchmarks/bench_catalog.py

site: setup  ## build the static site into _site/
	$(BIN)/mi-catalog site build

serve: setup  ## serve the built site on 127.0.0.1
	$(BIN)/mi-catalog site serve

clean:  ## remove build outputs (keeps .venv)
	rm -rf _site site/docs runs build dist .pytest_cache .mypy_cache .ruff_cache
