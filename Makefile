# The two commands a new user needs: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast install clean up bench docs

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

# The unit tests and the flow in-process (tests/flow: one ephemeral Prefect server, in-memory steps); no stack,
# no loopback Azure, no scikit-learn runs. Under a minute; `make test` runs all of it and the rest.
test-fast: install  ## run the fast tier: unit tests and the flow in-process, in under a minute
	$(BIN)/python -m pytest tests/unit tests/flow -m "not slow and not e2e"

bench: install  ## every benchmark beside its reference: one table, also benchmarks/results.json (BENCH_ARGS=--quick)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

docs: $(VENV)/.docs-installed  ## the docs site into site/; --strict: a broken link or anchor fails the build
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .drift-retrain site
