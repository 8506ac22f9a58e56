"""Shared fixtures: the fake AWS peers and a factory for real proxy processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import tests.properties  # noqa: F401  (hypothesis profiles: ci in make test, fuzz in make fuzz)
from tests.fakes.aws import FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.harness import RunningProxy, deep_merge, free_port, start_proxy

ALLOWED_SENDERS = ["noreply@example.com", "*@example.org"]

StartProxy = Callable[..., RunningProxy]


def base_config(backend: str, outbox: Path | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "smtp": {"host": "127.0.0.1", "port": free_port(), "hostname": "relay.test"},
        "policy": {"allowed_senders": ALLOWED_SENDERS, "allowed_recipients": ["*"]},
        "delivery": {"backend": backend},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "logging": {"format": "json", "level": "info"},
    }
    if outbox is not None:
        config["delivery"]["outbox_dir"] = str(outbox)
    return config


@pytest.fixture
def fake_aws() -> Iterator[FakeAWS]:
    with FakeAWS() as aws:
        yield aws


@pytest.fixture
def container_credentials(fake_aws: FakeAWS) -> Iterator[FakeContainerCredentials]:
    with FakeContainerCredentials(fake_aws) as credentials:
        yield credentials


@pytest.fixture
def start_ses_proxy(
    tmp_path: Path, fake_aws: FakeAWS, container_credentials: FakeContainerCredentials
) -> Iterator[StartProxy]:
    """Start a proxy sending to the fake SES with container credentials; stopped at teardown."""
    started: list[RunningProxy] = []

    def start(
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> RunningProxy:
        config = base_config("ses")
        config["ses"] = {
            "region": fake_aws.region,
            "endpoint_url": fake_aws.url,
            "allow_insecure_endpoint": True,
        }
        config = deep_merge(config, overrides or {})
        workdir = tmp_path / f"proxy{len(started)}"
        workdir.mkdir()
        process_env = container_credentials.env()
        process_env.update(env or {})
        proxy = start_proxy(workdir, config, process_env, wait_ready=wait_ready)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop(timeout=30)


@pytest.fixture
def start_outbox_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    """Start a proxy with the outbox backend (no AWS at all); stopped at teardown."""
    started: list[RunningProxy] = []

    def start(overrides: Mapping[str, Any] | None = None) -> RunningProxy:
        workdir = tmp_path / f"proxy{len(started)}"
        workdir.mkdir()
        config = deep_merge(base_config("outbox", workdir / "outbox"), overrides or {})
        proxy = start_proxy(workdir, config)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop(timeout=30)
