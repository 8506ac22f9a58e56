"""The Dockerfile's contract, read statically; its HEALTHCHECK run against a real proxy.

Building and running the image is tests/deploy/test_image.py (`make image-test`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

from tests.conftest import StartProxy
from tests.harness import REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def _all(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def _final_stage() -> list[tuple[str, str]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages[-1]


def test_multi_stage_on_a_configurable_slim_base() -> None:
    assert _all("ARG")[0] == "BASE_IMAGE=python:3.11-slim-bookworm"
    froms = _all("FROM")
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE}"]
    final = _final_stage()
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=builder /opt/ses-proxy /opt/ses-proxy"]


def test_runtime_contract() -> None:
    final = dict(_final_stage())
    user = final["USER"]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid >= 1000
    assert gid >= 1000
    assert sorted(final["EXPOSE"].split()) == ["2525", "9101"]
    assert json.loads(final["ENTRYPOINT"]) == ["ses-proxy"]
    assert json.loads(final["CMD"]) == ["serve", "-c", "/etc/ses-proxy/config.yaml"]
    assert final["STOPSIGNAL"] == "SIGTERM"


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!proxy/"} <= set(lines)


def healthcheck_command() -> list[str]:
    [healthcheck] = _all("HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    argv: list[str] = json.loads(command)
    return argv


def test_healthcheck_command_answers_for_a_real_proxy(start_outbox_proxy: StartProxy) -> None:
    argv = healthcheck_command()
    assert argv[0] == "python3"
    assert "/healthz" in argv[-1]
    proxy = start_outbox_proxy()
    env = dict(os.environ, SES_PROXY_METRICS__PORT=str(proxy.config["metrics"]["port"]))
    local = [sys.executable, *argv[1:]]
    assert subprocess.run(local, env=env, timeout=30, check=False).returncode == 0
    proxy.stop()
    failed = subprocess.run(local, env=env, capture_output=True, timeout=30, check=False)
    assert failed.returncode != 0
