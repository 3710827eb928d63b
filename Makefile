# tracer_site: `make run` starts the site with the samples loaded; `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HTMX_VERSION := 2.0.11
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-sqlite test-postgres reliability lint browser-deps demo-data bench vendor-htmx screenshots clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

## Start the site on http://127.0.0.1:8000/ with the sample traces ingested, with a
## background ingest worker and the source rescan scheduler beside it. Local use:
## anyone reaching it may upload, add sources and delete (TRACER_OPEN_WRITES=0 to close).
run: export TRACER_OPEN_WRITES ?= 1
run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ingest samples || true
	@$(PY) manage.py db_worker --queue-name "*" & worker=$$!; \
	$(PY) manage.py rescan_sources --loop --interval 30 & scheduler=$$!; \
	trap 'kill $$worker $$scheduler 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py runserver $(HOST):$(PORT)

## Every test: lint and format check, the suite on SQLite, then again on PostgreSQL.
test: $(VENV)/.installed browser-deps lint test-sqlite test-postgres

## docs/RELIABILITY.md's tables regenerated (the fault tests, the hostile pages, the
## bad-input corpus, on SQLite); a plain test run writes them to var/ instead.
reliability: $(VENV)/.installed browser-deps
	TRACER_UPDATE_DOCS=1 $(VENV)/bin/pytest -p no:cacheprovider tests/test_faults.py \
		tests/browser/test_hostile.py tests/test_hardening_corpus.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-sqlite: $(VENV)/.installed
	$(VENV)/bin/pytest -p no:cacheprovider

test-postgres: $(VENV)/.installed
	$(PY) scripts/with_postgres.py $(VENV)/bin/pytest -p no:cacheprovider -m "not browser" -n 2

## Debian's chromium for the Playwright browser tests (never `playwright install`).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## Benchmarks, on demand (bench/RESULTS.md): `make bench BENCH_ARGS=--quick` for a tenth of the sizes.
bench: $(VENV)/.installed
	bench/run_all.sh $(BENCH_ARGS)

screenshots: $(VENV)/.installed browser-deps
	$(PY) scripts/screenshots.py

vendor-htmx:
	cd /tmp && npm pack htmx.org@$(HTMX_VERSION) >/dev/null && tar xzf htmx.org-$(HTMX_VERSION).tgz \
		&& cp package/dist/htmx.min.js $(CURDIR)/static/vendor/htmx.min.js

clean:
	rm -rf $(VENV) var
