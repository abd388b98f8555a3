# tfus: two commands on a fresh machine.
#   make demo   set up .venv (if missing) and run the main job
#   make test   set up .venv (if missing) and run the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfus-installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT := false

.PHONY: setup demo test test-slow test-all clean bench

setup: $(STAMP)

# Reinstall only when the dependency list changes; `pip install -e` keeps the code live.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (tfus needs Python 3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@bash deploy/system-deps.sh
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfus demo --out demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" --timeout 900 tests

test-slow: $(STAMP)
	$(PY) -m pytest -m slow --timeout 3600 tests

test-all: $(STAMP)
	$(PY) -m pytest --timeout 3600 tests

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache demo
