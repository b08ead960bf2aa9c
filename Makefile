# authserver: `make help` lists the targets.
SHELL := /bin/bash
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := .venv/bin/python
# Tests run against a real PostgreSQL and Redis (the local defaults below; override freely).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/authserver
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

install: $(UV) ## Install the locked dependencies into .venv
	$(UV) sync --frozen --python python3.11

run: install ## Install, then run server + Celery worker + beat on embedded defaults (SQLite, no broker)
	./scripts/run.sh

test: install ## Install, then run the whole test suite on PostgreSQL + Redis
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) AUTHSERVER_ENVIRONMENT=test DATABASE_CONN_MAX_AGE=0 \
		$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: install ## Benchmark against oidc-provider and vanilla DOT (about 40 min; BENCH_ARGS=--quick for 10): bench/RESULTS.md
	.venv/bin/python bench/run.py $(BENCH_ARGS)

lint: install ## ruff (lint + format check) and mypy
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .

format: install ## Format the code with ruff
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

migrations-check: install ## Fail when models and migrations disagree
	$(PY) manage.py makemigrations --check --dry-run

clean: ## Remove the virtualenvs and the embedded data directory
	rm -rf .venv $(TOOLS) var

.PHONY: help install run test bench lint format migrations-check clean
