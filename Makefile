# Two commands on a fresh machine: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/local.yaml

.PHONY: run test lint typecheck unit fuzz clean system-packages

# Debian packages the tests drive for real (tool:package). Installed when missing and
# this is root with apt-get; otherwise the tests that need them are skipped (and fail
# under CI=true, where a green run must not hide a missing install).
# The AUTH clients (tests/smtp/test_auth_clients.py): a package with no command is named by
# a file it installs (PHPMailer's autoload.php), which /bin/sh's (dash's) `command -v`
# finds like a command; Ruby's net/smtp is a bundled gem of Debian's ruby (no package).
TEST_TOOLS := swaks:swaks redis-server:redis-server promtool:prometheus prometheus:prometheus \
	curl:curl msmtp:msmtp php:php-cli \
	/usr/share/php/libphp-phpmailer/autoload.php:libphp-phpmailer \
	ruby:ruby go:golang-go node:nodejs npm:npm
IMAGE_TOOLS := buildah:buildah debootstrap:debootstrap
define install-missing
	@missing=""; for pair in $(1); do command -v "$${pair%%:*}" >/dev/null || \
		missing="$$missing $${pair#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	else echo "missing Debian packages (tests that need them are skipped):$$missing"; fi
endef

# constraints.txt holds every version the tests passed with: installs are reproducible.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ses-proxy serve -c $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

system-packages:
	$(call install-missing,$(TEST_TOOLS))

unit: $(STAMP) system-packages
	$(BIN)/pytest -q

test: lint typecheck unit

# The property tests and fuzz targets, long and random (make test runs them derandomized,
# a fixed count each). FUZZ_FACTOR multiplies every test's count of examples.
FUZZ_FACTOR ?= 50
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz SES_PROXY_FUZZ_FACTOR=$(FUZZ_FACTOR) $(BIN)/pytest -q -m hypothesis

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
	$(call install-missing,$(IMAGE_TOOLS))
	SES_PROXY_IMAGE_TEST=1 $(BIN)/pytest -q -rs tests/deploy/test_image.py

# Issue #6: the benchmark (not part of `make test`). Installs Postfix's smtp-source when
# apt-get is available; BENCH_ARGS passes options, e.g. BENCH_ARGS="--quick".
.PHONY: bench
bench: $(STAMP)
	@command -v smtp-source >/dev/null || { command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null; } || \
		echo "smtp-source unavailable: using the asyncio load generator"
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)
