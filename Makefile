# The two commands a new user needs: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install clean up bench docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(VENV)/.docs-installed: pyproject.toml | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $@

demo: install  ## run the main job end to end on the embedded default
	$(BIN)/drift-retrain demo

up: install  ## start the stack (Prefect server + UI, runner, webhook) and keep it up
	$(BIN)/drift-retrain up

test: install  ## run the whole test suite
	$(BIN)/python -m pytest

bench: install  ## every benchmark beside its reference: one table, also benchmarks/results.json (BENCH_ARGS=--quick)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

docs: $(VENV)/.docs-installed  ## the docs site into site/; --strict: a broken link or anchor fails the build
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .drift-retrain site
