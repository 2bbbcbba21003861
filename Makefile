# Red Flag - every target sets up what it needs (a venv in .venv, SAM CLI in .venv-sam, checkov in .venv-checkov).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
# checkov pins dependencies that clash with ours (boto3, pydantic, ...): it gets a venv of its own
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
export AWS_ACCOUNT_ID_ENDPOINT_MODE := disabled
export SAM_CLI_TELEMETRY := 0

.PHONY: help demo serve test install lint typecheck security checkov bandit unit integration openapi build validate deploy bench soak clean

help:
	@echo "make demo   - run the whole pipeline locally on moto (simulated clock)"
	@echo "make test   - lint (ruff, cfn-lint), type check (mypy), security (checkov, bandit), every pytest"
	@echo "make serve  - local HTTP API on 127.0.0.1:3000 with real-time alerts into ./outbox"
	@echo "make bench  - cost and speed: AWS calls, write units, latency model, alert lateness, cold start, cost -> docs/benchmarks.md (~4 min)"
	@echo "make soak   - the slow suites at full size (fault run 10,000 tasks, fuzz 10,000, property 1,000; 20-40 min) -> docs/soak.md"
	@echo "make build  - sam validate --lint && sam build (python3.13, arm64)"
	@echo "make deploy - sam deploy --guided"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov==$(CHECKOV_VERSION)
	@touch $@

# both venvs at once (each install is mostly waiting on downloads); output kept per target
install:
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(BIN)/.installed $(CHECKOV_STAMP)

demo: $(BIN)/.installed
	$(BIN)/redflag demo

serve: $(BIN)/.installed
	$(BIN)/redflag serve

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml

# the product's code: functions/ and layers/ ([tool.mypy] in pyproject.toml)
typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit -q

integration: $(BIN)/.installed
	$(BIN)/pytest tests/integration -q

# Two scans: template.yaml as written, and as CloudFormation deploys it (translated by the SAM transform, so
# what SAM generates is checked too: the implicit API's stage, the functions' roles). Every suppression of
# ours is in template.yaml, with its reason, under the resource's Metadata.checkov.skip (the translation
# passes each on to what SAM generates from that resource). The translated scan adds, for the one resource
# SAM generates with no Metadata of ours to carry a skip (the implicit API's Prod stage):
#   CKV_AWS_120 (stage caching): nothing to cache. POST/PUT/DELETE answers are never cached, and the one GET
#     (the unsubscribe page) is per token and sent no-store: a cache would hold tokens. A cache cluster is
#     also billed by the hour, used or not (0.5 GB, the smallest: about $14.60 a month whatever the traffic).
CHECKOV_TRANSLATED_SKIPS := CKV_AWS_120
checkov: $(CHECKOV_STAMP) $(BIN)/.installed
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --quiet --compact --skip-download
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	  PYTHONPATH=local $(BIN)/python -m redflag_local.translated --out "$$out/template.json" && \
	  echo "checkov on the SAM-translated template:" && \
	  $(CHECKOV_VENV)/bin/checkov -f "$$out/template.json" --framework cloudformation --quiet --compact \
	    --skip-download --skip-check $(CHECKOV_TRANSLATED_SKIPS)

# B101 (assert) skipped: the asserts narrow types and state invariants, none guards input or
# access (ruff's S101, the same rule, is ignored project-wide); Lambda does not run python -O
bandit: $(BIN)/.installed
	$(BIN)/bandit -q -r functions layers --skip B101

security: checkov bandit

# the checks two at a time, then the suite on two workers (this machine's cores), each taking whole test files: a file's fixtures
# (one deployed stack, one `redflag serve`) are built once
test: install
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint typecheck security
	$(BIN)/pytest -q -n 2 --dist loadfile

openapi: $(BIN)/.installed
	$(BIN)/python -m redflag_local.openapi > docs/openapi.json

bench: $(BIN)/.installed
	$(BIN)/python -m redflag_local.bench

# one suite after the other (each prints as it goes); figures, pass/fail and any failure in docs/soak.md
soak: $(BIN)/.installed
	$(BIN)/python -m redflag_local.bench.soak --out docs/soak.md

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
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam outbox .pytest_cache .ruff_cache .hypothesis
