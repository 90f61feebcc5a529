# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test loadtest bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m chat.server $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests bench --benchmark-disable

loadtest: $(STAMP)
	$(PY) -m loadtest.run $(ARGS)

bench: $(STAMP)
	$(PY) -m pytest bench/ --benchmark-only --benchmark-json=results/bench.json $(ARGS)
	$(PY) -m bench.report --check results/bench.json

lint: $(STAMP)
	$(VENV)/bin/ruff check chat loadtest bench tests
	$(VENV)/bin/ruff format --check chat loadtest bench tests

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
