# Every target installs what it needs into .venv first (pinned requirements).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv run test bench lint clean

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## Start the whole system: broker + Redis (if none answers), monitor, farm, dashboard.
## BROKER=kafka: Apache Kafka instead of the embedded broker (jars fetched once).
run: venv
	$(if $(filter kafka,$(BROKER)),$(PY) -m yadtq.kafka_cluster)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(if $(BROKER),YADTQ_BROKER=$(BROKER)) $(VENV)/bin/honcho start

## Run the test suite against real broker and Redis processes.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

## Lint and types: ruff and mypy --strict on the library and the farm.
lint: venv
	$(VENV)/bin/ruff check yadtq worker_farm
	$(VENV)/bin/mypy

## Benchmarks (not part of the tests): prints tables, writes bench/results/*.json.
bench: venv
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) logs data .pytest_cache
