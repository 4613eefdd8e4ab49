# mailintake: `make demo` and `make test` work from a fresh clone on a new Debian machine (as root, or with
# sudo for the apt step). Everything Python goes into .venv/ at the repository root.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := dovecot-imapd dovecot-pop3d openssl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: install system-deps up down reset demo test lint unit integration build bench clean

install: system-deps $(STAMP)

# Dovecot comes from Debian; the project never uses the system service, only its binaries.
system-deps:
	@if ! command -v dovecot >/dev/null || ! dpkg -s dovecot-pop3d >/dev/null 2>&1 || ! command -v openssl >/dev/null; then \
		echo "installing $(APT_PACKAGES)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

$(STAMP): pyproject.toml hatch_requirements.py layers/mailintake/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

up: install
	$(PY) -m mailintake.localstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m mailintake.localstack down; fi

reset: up
	$(PY) -m mailintake.localstack reset

demo: reset
	bash demo/run.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --region us-east-1

build: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam build --region us-east-1

unit: install
	$(PY) -m pytest -q tests/unit tests/corpus $(PYTEST_ARGS)

test: lint build up
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: up build
	$(PY) bench/cold_import.py
	$(PY) bench/memory.py
	$(PY) bench/ingest.py 1000
	$(PY) bench/drain.py
	$(PY) bench/worst_case.py
	$(PY) bench/corpus_report.py

clean: down
	rm -rf .aws-sam .local
