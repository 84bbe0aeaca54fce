# The two commands a new user needs: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast install clean up bench docs

# pip says only what needs reading: -qq leaves its errors (a failed build shows the backend's output) and drops
# the progress bars, its version nag and setuptools' notice about editable installs.
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/python -m pip
PIP_QUIET := -qq --progress-bar off

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_QUIET) --upgrade pip

# Two stamps: the package alone (what `make demo`, `up` and `bench` run), and the test extra on top of it
# (pytest, hypothesis, playwright: only `make test` and the gate need them). `make demo` then `make test` installs
# the extra once; `make test` first leaves nothing for `make demo` to install. The test stamp adds the `redis`
# extra (prefect-redis): tests/scale runs Prefect's server in its Redis layout. It stays its own extra, what a
# fleet's server installs, rather than a line of `test`, which lists test tools only.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install $(PIP_QUIET) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install $(PIP_QUIET) -e '.[test,redis]'
	touch $@

install: $(VENV)/.installed

$(VENV)/.docs-installed: pyproject.toml | $(VENV)/.installed-test
	$(PIP) install $(PIP_QUIET) -e '.[test,docs]'
	touch $@

demo: install  ## run the main job end to end on the embedded default
	$(BIN)/drift-retrain demo

up: install  ## start the stack (Prefect server + UI, runner, webhook) and keep it up
	$(BIN)/drift-retrain up

test: $(VENV)/.installed-test  ## run the whole test suite
	$(BIN)/python -m pytest

# The unit tests and the flow in-process (tests/flow: an ephemeral Prefect server, in-memory steps); no stack,
# no loopback Azure, no scikit-learn runs; one worker per core (a module stays on one worker). Under a minute;
# `make test` runs all of it and the rest.
test-fast: $(VENV)/.installed-test  ## run the fast tier: unit tests and the flow in-process, in under a minute
	$(BIN)/python -m pytest tests/unit tests/flow -m "not slow and not e2e" -n auto --maxprocesses 4 --dist loadscope

# The lint and type gate, over the library and the project's own flows, tasks and deployments.
LINT_PATHS := drift_retrain flows tasks deployments
.PHONY: check fmt

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-test
	$(PIP) install $(PIP_QUIET) -e '.[test,dev]'
	touch $@

check: $(VENV)/.installed-dev  ## the lint and type gate: ruff check, ruff format --check, mypy (all three run, then it fails)
	@status=0; \
	echo "ruff check"; $(BIN)/ruff check $(LINT_PATHS) || status=1; \
	echo "ruff format --check"; $(BIN)/ruff format --check $(LINT_PATHS) || status=1; \
	echo "mypy"; $(BIN)/mypy || status=1; \
	exit $$status

fmt: $(VENV)/.installed-dev  ## fix what ruff can fix (import order, pyupgrade, unused imports), then format
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

bench: install  ## every benchmark beside its reference: one table, also benchmarks/results.json (BENCH_ARGS=--quick)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

docs: $(VENV)/.docs-installed  ## the docs site into site/; --strict: a broken link or anchor fails the build
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .drift-retrain site
