# Two commands do all the set-up: `make up` runs the whole topology, `make test` runs the tests.
# Both install what they need first (virtualenv in .venv, the package, the Kafka/Hazelcast jars).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TOPOLOGY ?= topology.yaml

.PHONY: install jars up down status console test bench clean

install: $(STAMP) jars

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

jars: $(STAMP)
	$(PY) -m supervisor fetch

up: install
	$(PY) -m supervisor up $(TOPOLOGY)

down: $(STAMP)
	$(PY) -m supervisor down $(TOPOLOGY)

status: $(STAMP)
	$(PY) -m supervisor status

console: $(STAMP)
	$(PY) -m supervisor console

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) tools/bench.py $(BENCH_ARGS)

clean:
	rm -rf .runtime .pytest_cache
