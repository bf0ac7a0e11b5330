# Every target installs what it needs into .venv first (pinned requirements): `make run` only the
# runtime set (requirements.txt), tests, lint and benchmarks the dev set on top (requirements-dev.txt).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DOCS_STAMP := $(VENV)/.installed-docs
# uv installs the pinned sets: parallel downloads, no bytecode compiled ahead (Python compiles what it
# imports), about 5x faster than pip from a cold cache. `make run`'s venv holds the runtime alone (no pip,
# no installer: 60 MB): uv, pinned, runs there from a throwaway folder that pip fills from its cache in a
# few seconds. The dev, docs and bench targets put uv into the venv for their installs.
UV_VERSION := 0.13.8
WITH_UV := t=$$(mktemp -d) && trap 'rm -rf "$$t"' EXIT && python3 -m venv "$$t" && \
	"$$t/bin/pip" install -q --disable-pip-version-check uv==$(UV_VERSION) && "$$t/bin/uv" pip install -q --python $(PY)
INSTALL := $(VENV)/bin/uv pip install -q --python $(PY)
PYTEST_ARGS ?=

.PHONY: venv dev-venv run test test-fast bench lint docs hosts-demo clean

# requirements.txt is a lock file (every package pinned): --no-deps installs exactly it. Then what nothing
# imports at run time goes, a tenth of the venv: the wheels' own test suites (pandas' alone is 18 MB;
# numpy.testing and streamlit.testing are APIs: kept), pyarrow's C++ headers and Cython sources, and
# Plotly's Jupyter extension and widget bundle (the dev set below puts Plotly back whole for the notebooks).
$(STAMP): requirements.txt pyproject.toml
	python3 -m venv --without-pip $(VENV)
	$(WITH_UV) --no-deps -r requirements.txt -e .
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	find "$$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} + && \
	rm -rf "$$site/pyarrow/include" && find "$$site/pyarrow" \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete && \
	rm -rf "$$site/plotly/labextension" "$$site/plotly/package_data/widgetbundle.js" $(VENV)/share/jupyter
	touch $(STAMP)

$(VENV)/bin/uv: $(STAMP)
	$(WITH_UV) uv==$(UV_VERSION)
	touch $@

$(DEV_STAMP): $(VENV)/bin/uv requirements-dev.txt
	$(INSTALL) --reinstall-package plotly -r requirements-dev.txt
	touch $(DEV_STAMP)

$(DOCS_STAMP): $(VENV)/bin/uv docs/requirements.txt
	$(INSTALL) -r docs/requirements.txt
	touch $(DOCS_STAMP)

venv: $(STAMP)

dev-venv: $(DEV_STAMP)

## Start the whole system: broker + Redis (if none answers), monitor, dashboard, farm (the Procfile).
## Ctrl+C stops them in order: farm, dashboard, monitor, services. RUN_ARGS="--grace 60" passes options.
## BROKER=kafka: Apache Kafka instead of the embedded broker (jars fetched once).
RUN_ARGS ?=
run: venv
	$(if $(filter kafka,$(BROKER)),$(PY) -m yadtq.ops.kafka_cluster)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(if $(BROKER),YADTQ_BROKER=$(BROKER)) exec $(VENV)/bin/yadtq run $(RUN_ARGS)

## Lint, types and the docs site (strict) first, then the test suite against real broker and Redis processes (both brokers).
## On TEST_PROCS processes (pytest-xdist): the Kafka tests are meant to stay on one process (one JVM), the
## others are shared out (see tests/conftest.py: with pytest 9.2 xdist applies no group yet, so all are);
## the system tests mostly wait on the brokers, so two halve the time even on 2 cores. Then the tests
## marked serial (chaos, the 3-node cluster, the rate of a limited backlog) alone. TEST_PROCS=0: everything on one process.
## (pytest's exit status 5 is "no test selected": a PYTEST_ARGS selection may leave one part empty.)
TEST_PROCS ?= 2
# The tests start hundreds of Python processes (workers, monitors, CLI calls, notebook kernels); each
# compiles what it imports unless the bytecode is cached in __pycache__. Where PYTHONDONTWRITEBYTECODE
# is set (as on the CI machine), nothing is cached and every process compiled redis, kafka, pydantic...
# again: about 1 s of CPU per start. Empty, it lets Python write the cache (tests/conftest.py does the
# same for a bare `pytest`).
test test-fast bench: export PYTHONDONTWRITEBYTECODE :=
test: dev-venv lint docs
ifeq ($(TEST_PROCS),0)
	$(PY) -m pytest $(PYTEST_ARGS)
else
	rm -f .pytest-parallel.xml .pytest-serial.xml
	$(PY) -m pytest -n $(TEST_PROCS) --dist loadgroup -m "not serial" --junitxml=.pytest-parallel.xml $(PYTEST_ARGS); s=$$?; \
	$(PY) -m pytest -m serial --junitxml=.pytest-serial.xml $(PYTEST_ARGS); t=$$?; \
	$(PY) tests/totals.py .pytest-parallel.xml .pytest-serial.xml; \
	for c in $$s $$t; do [ $$c -eq 0 ] || [ $$c -eq 5 ] || exit $$c; done
endif

## The inner loop, under 2 minutes: lint, then the unit tests (no process) and the engine tests (the worker
## in-process on a real Redis); no broker is started. `make test` runs these too, and the system tests.
test-fast: dev-venv lint
ifeq ($(TEST_PROCS),0)
	$(PY) -m pytest tests/unit tests/engine $(PYTEST_ARGS)
else
	$(PY) -m pytest -n $(TEST_PROCS) --dist loadgroup tests/unit tests/engine $(PYTEST_ARGS)
endif

## Lint, layers and types: ruff, import-linter's contracts (pyproject.toml), mypy --strict.
lint: dev-venv
	$(VENV)/bin/ruff check yadtq worker_farm notebooks/analysis.py
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

## YADTQ on five hosts made of network namespaces (root): tasks spread over three worker hosts, one cut off and back.
hosts-demo: venv
	$(PY) -m worker_farm.hosts_demo $(DEMO_ARGS)

## Benchmarks (not part of the tests): prints tables, writes bench/results/*.json; the peers' pins are in
## bench/requirements.txt. Then docs/benchmarks.md is rendered again from the newest result (bench/report.py).
bench: dev-venv
	$(INSTALL) -r bench/requirements.txt
	$(PY) bench/run.py --broker embedded kafka; status=$$?; $(PY) bench/report.py && exit $$status

## The documentation site: docs/ and mkdocs.yml into site/, strict (a broken link or a page left out fails).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) logs data .pytest_cache site .pytest-*.xml
