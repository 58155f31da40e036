# ML Event Bridge — `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AZURITE := .tools/azurite/node_modules/.bin/azurite-blob
KAFKA_LIBS := .tools/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.pom.sha256
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ml-event-bridge:$(VERSION)
DOCKER ?= docker
DOCKER_BUILD_FLAGS ?=
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" --quiet

.DEFAULT_GOAL := help

help: ## List the targets with what they do
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(AZURITE): scripts/install-azurite.sh
	bash scripts/install-azurite.sh

$(KAFKA_STAMP): scripts/kafka/pom.xml scripts/install-kafka.sh
	bash scripts/install-kafka.sh $(KAFKA_LIBS)

install: $(STAMP) $(AZURITE) kafka redis prometheus ## Create .venv (package, test and dev tools); fetch Apache Kafka, azurite, redis, prometheus
	@echo "installed: $(BIN)/bridge"

kafka: $(KAFKA_STAMP) ## Apache Kafka's jars (the test broker) from Maven Central into .tools/kafka (needs a JDK 17+ and Maven)

redis: ## Debian's redis-server for the tests (they start private servers); starts no service
	@if command -v redis-server >/dev/null; then :; else bash scripts/install-redis.sh; fi

prometheus: ## Debian's prometheus package (server, promtool) for the observability tests; starts no service
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then :; \
	else bash scripts/install-prometheus.sh; fi

test: install ## Run the whole test suite (starts the test brokers itself); what CI runs
	$(BIN)/pytest -q

test-fast: install ## The tests that need no broker, no container engine and are not slow (under 90 s)
	$(BIN)/pytest -q -m "not broker and not container and not slow"

lint: install ## ruff and mypy --strict
	$(BIN)/ruff check bridge testbed tests bench
	$(BIN)/mypy

image: ## Build the container image ml-event-bridge:VERSION (DOCKER_BUILD_FLAGS=--network=host where the engine has no bridge)
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) -t $(IMAGE) .

lock: install ## Regenerate requirements.lock and requirements-build.lock (hashes; LOCK_ARGS=--upgrade to update pins)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) $(LOCK_ARGS) -o requirements.lock
	$(BIN)/uv pip compile requirements-build.in $(LOCK_FLAGS) $(LOCK_ARGS) -o requirements-build.lock

stack: install ## Run the bridge on a local stack of real brokers and show events flowing, then stop
	$(BIN)/python -m testbed.stack

FUZZ_SECONDS ?= 600
FUZZ_DIR ?= .fuzz
fuzz: install ## Coverage-guided fuzzing (atheris) of normalize/filters/encoding for FUZZ_SECONDS (600); crashes in .fuzz/
	mkdir -p $(FUZZ_DIR)
	$(BIN)/python -m tests.fuzz.atheris_target --seed $(FUZZ_DIR)/corpus
	$(BIN)/python -m tests.fuzz.atheris_target -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=20 \
		-rss_limit_mb=3000 -dict=$(FUZZ_DIR)/fuzz.dict -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus

BENCH_ARGS ?=
bench: install ## Benchmark on Apache Kafka: raw pass-through vs the full bridge, 200k events (BENCH_ARGS="--broker tansu|both"; BENCHMARKS.md)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean: ## Remove the venv, tools and caches
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis .fuzz

.PHONY: help install kafka redis prometheus test test-fast lint image lock stack bench fuzz clean
