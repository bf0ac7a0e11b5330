# Every target installs what it needs into .venv first (pinned requirements): `make run` only the
# runtime set (requirements.txt), tests, lint and benchmarks the dev set on top (requirements-dev.txt).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# uv installs the pinned sets: parallel downloads, no bytecode compiled ahead (Python compiles what it
# imports), about 5x faster than pip from a cold cache. pip brings uv itself, pinned.
UV_VERSION := 0.13.8
INSTALL := $(VENV)/bin/uv pip install -q --python $(PY)
PYTEST_ARGS ?=

.PHONY: venv dev-venv run test bench lint clean

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(INSTALL) -r requirements.txt
	$(INSTALL) --no-deps -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(INSTALL) -r requirements-dev.txt
	touch $(DEV_STAMP)

venv: $(STAMP)

dev-venv: $(DEV_STAMP)

## Start the whole system: broker + Redis (if none answers), monitor, dashboard, farm (the Procfile).
## Ctrl+C stops them in order: farm, dashboard, monitor, services. RUN_ARGS="--grace 60" passes options.
## BROKER=kafka: Apache Kafka instead of the embedded broker (jars fetched once).
RUN_ARGS ?=
run: venv
	$(if $(filter kafka,$(BROKER)),$(PY) -m yadtq.ops.kafka_cluster)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(if $(BROKER),YADTQ_BROKER=$(BROKER)) exec $(VENV)/bin/yadtq run $(RUN_ARGS)

## Lint and types first, then the test suite against real broker and Redis processes (both brokers).
test: dev-venv lint
	$(PY) -m pytest $(PYTEST_ARGS)

## Lint and types: ruff and mypy --strict on the library and the farm.
lint: dev-venv
	$(VENV)/bin/ruff check yadtq worker_farm
	$(VENV)/bin/mypy

## Benchmarks (not part of the tests): prints tables, writes bench/results/*.json.
bench: dev-venv
	$(PY) bench/run.py --broker embedded kafka

clean:
	rm -rf $(VENV) logs data .pytest_cache
