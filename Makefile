# Two commands a new user needs: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AIRFLOW_VERSION ?= 3.3.2
STAMP := $(VENV)/.installed

.PHONY: venv system-packages lint test test-compat demo bench clean dist

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test,lint]"
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests use for real: a browser for the pages, a Redis server for the shared store,
# Node.js and npm for the jsforce interop tests
system-packages:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server)
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm)

# ruff (pyflakes, bugbear, import order, complexity ≤ 15) and mypy on the package
lint: $(STAMP)
	$(VENV)/bin/ruff check sf_oauth_provider
	$(VENV)/bin/mypy sf_oauth_provider

# PYTEST_ARGS: more pytest arguments for `make test` and every `make test-compat` row, e.g. the
# slowest tests' times as CI prints them: make test PYTEST_ARGS=--durations=15
PYTEST_ARGS ?=

test: $(STAMP) system-packages
	$(PY) -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m sf_oauth_provider.demo

# The whole suite on every Airflow 3 release the package admits (README "Supported versions"):
# one fresh venv per row under .venv-compat/, installed as of the release's day; a summary table
# at the end; fails if any row fails. COMPAT_ROWS="3.1.8 3.2.2" runs only those rows.
COMPAT_ROWS ?=
test-compat: $(STAMP) system-packages
	$(PY) .ci/compat_matrix.py --uv $(VENV)/bin/uv $(if $(COMPAT_ROWS),--only $(COMPAT_ROWS)) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# sdist and wheel into $(DIST_DIR) (the wheel is built from the sdist, so the sdist is proven
# complete): `pip install dist/sf_oauth_provider-*.whl` until the package is on PyPI
DIST_DIR ?= dist
dist: $(STAMP)
	rm -rf build
	$(VENV)/bin/uv build --quiet --out-dir $(DIST_DIR) .
	ls -1 $(DIST_DIR)

clean:
	rm -rf $(VENV) .venv-compat .demo build dist

# Benchmarks (DESIGN §7) side by side with apache-airflow-providers-salesforce, which lives only in
# its own virtualenv (it pulls pandas, numpy, zeep, lxml): never in runtime or test dependencies.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
SF_PROVIDER ?= apache-airflow-providers-salesforce

$(BENCH_STAMP): $(STAMP) pyproject.toml
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(VENV)/bin/uv pip install -q --python $(BENCH_PY) "apache-airflow==$(AIRFLOW_VERSION)" "$(SF_PROVIDER)" -e ".[redis]"
	touch $(BENCH_STAMP)

# BENCH_ARGS="--only imports --import-baseline DIR": one section; an old source tree measured beside this one
BENCH_ARGS ?=
bench: $(STAMP) $(BENCH_STAMP)
	$(BENCH_PY) -m benchmarks.run $(BENCH_ARGS)
