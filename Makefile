# Red Flag - every target sets up what it needs (a venv in .venv, SAM CLI in .venv-sam).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
export AWS_ACCOUNT_ID_ENDPOINT_MODE := disabled
export SAM_CLI_TELEMETRY := 0

.PHONY: help demo serve test lint unit integration openapi build validate deploy bench clean

help:
	@echo "make demo   - run the whole pipeline locally on moto (simulated clock)"
	@echo "make test   - lint (ruff, cfn-lint), OpenAPI drift check and every pytest"
	@echo "make serve  - local HTTP API on 127.0.0.1:3000 with real-time alerts into ./outbox"
	@echo "make bench  - alert lateness: sweeper vs TTL-only"
	@echo "make build  - sam validate --lint && sam build (python3.13, arm64)"
	@echo "make deploy - sam deploy --guided"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

demo: $(BIN)/.installed
	$(BIN)/redflag demo

serve: $(BIN)/.installed
	$(BIN)/redflag serve

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit -q

integration: $(BIN)/.installed
	$(BIN)/pytest tests/integration -q

test: lint
	$(BIN)/pytest -q

openapi: $(BIN)/.installed
	$(BIN)/python -m redflag_local.openapi > docs/openapi.json

bench: $(BIN)/.installed
	$(BIN)/python -m redflag_local.bench

$(SAM): 
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install -q aws-sam-cli==1.170.0

validate: $(SAM)
	$(SAM) validate --lint

build: validate
	PYENV_VERSION=3.13.0 $(SAM) build

deploy: build
	$(SAM) deploy --guided

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam outbox .pytest_cache .ruff_cache .hypothesis
