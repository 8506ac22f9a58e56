"""deploy/docker-compose.yml: the essentials, and the healthcheck run against a real proxy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import StartProxy
from tests.deploy.support import DEPLOY, load_yaml
from tests.harness import REPO, run_cli

COMPOSE = DEPLOY / "docker-compose.yml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return services


def _mounts(service: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """container path -> (host path, options) for bind mounts relative to the file."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        if source.startswith("."):
            mounts[target] = ((COMPOSE.parent / source).resolve(), ",".join(options))
    return mounts


def test_services_and_build() -> None:
    services = _services()
    assert set(services) == {"app", "ses-proxy", "prometheus"}
    build = services["ses-proxy"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).is_file()


def test_ses_proxy_runs_read_only_unprivileged_with_its_config() -> None:
    proxy = _services()["ses-proxy"]
    assert proxy["read_only"] is True
    uid, gid = (int(part) for part in proxy["user"].split(":"))
    assert uid == gid == 10001
    assert proxy["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in proxy["security_opt"]
    config_host, options = _mounts(proxy)["/etc/ses-proxy/config.yaml"]
    assert options == "ro"
    result = run_cli("check-config", "-c", str(config_host))
    assert result.returncode == 0, result.stderr
    assert "2525" not in str(proxy.get("ports", []))


def test_drain_fits_in_the_stop_grace_period() -> None:
    proxy = _services()["ses-proxy"]
    config_host, _ = _mounts(proxy)["/etc/ses-proxy/config.yaml"]
    grace = load_yaml(config_host)["smtp"]["shutdown_grace_seconds"]
    assert proxy["stop_signal"] == "SIGTERM"
    assert int(proxy["stop_grace_period"].rstrip("s")) > grace


def test_app_shares_the_proxy_network_namespace_and_waits_for_ready() -> None:
    app = _services()["app"]
    assert app["network_mode"] == "service:ses-proxy"
    assert app["depends_on"] == {"ses-proxy": {"condition": "service_healthy"}}
    assert app["environment"]["SMTP_HOST"] == "127.0.0.1"


def test_prometheus_uses_the_deploy_config() -> None:
    prometheus = _services()["prometheus"]
    host_dir, options = _mounts(prometheus)["/etc/prometheus"]
    assert host_dir == DEPLOY / "prometheus"
    assert options == "ro"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    scrape = load_yaml(host_dir / "prometheus.yml")["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["ses-proxy:9101"]
    assert prometheus["read_only"] is True
    assert all(port.startswith("127.0.0.1:") for port in prometheus["ports"])


def test_healthcheck_command_answers_for_a_real_proxy(start_outbox_proxy: StartProxy) -> None:
    check = _services()["ses-proxy"]["healthcheck"]
    kind, *command = check["test"]
    assert kind == "CMD"
    assert command[0] == "python3"
    assert "/readyz" in command[-1]
    proxy = start_outbox_proxy()
    # The same command, pointed at this test's proxy instead of the container's 9101.
    port = str(proxy.config["metrics"]["port"])
    argv = [sys.executable, *command[1:-1], command[-1].replace("9101", port)]
    assert subprocess.run(argv, timeout=30, check=False).returncode == 0
    proxy.stop()
    assert subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode != 0
