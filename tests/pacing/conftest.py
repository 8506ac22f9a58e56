"""Fixtures for pacing: a real redis-server (plain or TLS), stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.harness import require_tool
from tests.pacing.redis_server import RedisServer, RedisTls


@pytest.fixture(autouse=True)
def _redis_installed(request: pytest.FixtureRequest) -> None:
    needs = {"redis_server", "redis_tls_server"} & set(request.fixturenames)
    if needs:
        require_tool("redis-server", "redis-server")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_tls_server(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis-tls"
    workdir.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls = RedisTls(workdir / "server.pem", workdir / "server.key", workdir / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(tls.cert_file))
    cert.private_key_pem.write_to_path(str(tls.key_file))
    ca.cert_pem.write_to_path(str(tls.ca_file))
    server = RedisServer(workdir, tls)
    server.start()
    yield server
    server.stop()
