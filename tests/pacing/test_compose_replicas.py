"""deploy/docker-compose.replicas.yml: replicas that share one budget, each app on its own proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.harness import REPO, run_cli

COMPOSE = REPO / "deploy" / "docker-compose.replicas.yml"
PASSWORD = "s3cret-for-the-test"


def services() -> dict[str, Any]:
    # Compose interpolates ${REDIS_PASSWORD:?…}; the test does the same, textually.
    text = COMPOSE.read_text().replace("${REDIS_PASSWORD:?set REDIS_PASSWORD}", PASSWORD)
    assert "${" not in text
    loaded: dict[str, Any] = yaml.safe_load(text)["services"]
    return loaded


def proxies() -> dict[str, Any]:
    return {name: s for name, s in services().items() if name.startswith("ses-proxy-")}


def test_every_replica_paces_on_the_one_redis_of_the_file() -> None:
    replicas = proxies()
    assert len(replicas) >= 2
    for service in replicas.values():
        env = service["environment"]
        assert env["SES_PROXY_RATE__BACKEND"] == "redis"
        url = urlsplit(env["SES_PROXY_RATE__REDIS_URL"])
        assert (url.scheme, url.hostname, url.password) == ("redis", "redis", PASSWORD)
        assert service["read_only"] is True
        assert "2525" not in str(service.get("ports", []))
    accounts = {s["environment"]["SES_PROXY_SES__ACCOUNT_ID"] for s in replicas.values()}
    assert len(accounts) == 1, "one account: one bucket"


def test_redis_keeps_nothing_on_disk_and_is_not_published() -> None:
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--requirepass") + 1] == PASSWORD
    assert "ports" not in redis


def test_each_app_talks_to_its_own_proxy_on_loopback() -> None:
    apps = {name: s for name, s in services().items() if name.startswith("app-")}
    assert {a["network_mode"] for a in apps.values()} == {f"service:{name}" for name in proxies()}
    for app in apps.values():
        assert app["environment"]["SMTP_HOST"] == "127.0.0.1"


def test_the_replica_config_passes_check_config_with_its_environment(tmp_path: Path) -> None:
    service = next(iter(proxies().values()))
    [mount] = [v for v in service["volumes"] if v.endswith(":/etc/ses-proxy/config.yaml:ro")]
    config = (COMPOSE.parent / mount.split(":")[0]).resolve()
    env = {k: str(v) for k, v in service["environment"].items()}
    result = run_cli("check-config", "-c", str(config), env=env)
    assert result.returncode == 0, result.stderr
    # The effective config names the shared backend, with the password redacted.
    assert "backend: redis" in result.stdout or '"backend": "redis"' in result.stdout
    assert PASSWORD not in result.stdout
