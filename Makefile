# Two commands on a fresh machine: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/local.yaml

.PHONY: run test lint typecheck unit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ses-proxy serve -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis outbox

# ---------------------------------------------------------------------------------
# Deploy artefacts (issue #3): container image with buildah, see deploy/README.md.
# `make test` already runs tests/deploy (promtool, prometheus, kubernetes-validate,
# systemd-analyze); these targets build and run the image, which needs root + buildah.
IMAGE ?= localhost/ses-proxy:test

.PHONY: image-base image image-test

image-base:
	deploy/container/make-local-base.sh

image:
	deploy/container/build.sh $(IMAGE)

image-test: $(STAMP)
	SES_PROXY_IMAGE_TEST=1 $(BIN)/pytest -q -rs tests/deploy/test_image.py

# Issue #6: the benchmark (not part of `make test`). Installs Postfix's smtp-source when
# apt-get is available; BENCH_ARGS passes options, e.g. BENCH_ARGS="--quick".
.PHONY: bench
bench: $(STAMP)
	@command -v smtp-source >/dev/null || { command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null; } || \
		echo "smtp-source unavailable: using the asyncio load generator"
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)
