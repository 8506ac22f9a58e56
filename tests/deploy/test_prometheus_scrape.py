"""A real Prometheus (Debian's binary) scrapes a running proxy and evaluates our rules."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import StartProxy
from tests.deploy.support import (
    ALLOWED_SENDER,
    DENIED_SENDER,
    RULES,
    get_json,
    get_text,
    require_tool,
    send,
    send_refused,
)
from tests.harness import free_port

WAIT_SECONDS = 30.0


@dataclass
class RunningPrometheus:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        answer = get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        if len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, expected: float) -> float | None:
        """Poll until `expr` has one sample equal to `expected` (bounded); the last value."""
        deadline = time.monotonic() + WAIT_SECONDS
        seen = None
        while time.monotonic() < deadline:
            seen = self.value(expr)
            if seen == expected:
                break
            time.sleep(0.5)
        return seen


@contextlib.contextmanager
def run_prometheus(workdir: Path, target: str) -> Iterator[RunningPrometheus]:
    binary = require_tool("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "ses-proxy", "static_configs": [{"targets": [target]}]}],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--storage.tsdb.retention.time=1h",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                "--query.lookback-delta=10s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prometheus = RunningPrometheus(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited {process.returncode}:\n{log_path.read_text()}")
            with contextlib.suppress(OSError, urllib.error.HTTPError):
                if "Ready" in get_text(prometheus.url + "/-/ready", timeout=1):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield prometheus
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_prometheus_scrapes_sends_and_rejections(
    tmp_path: Path, start_outbox_proxy: StartProxy
) -> None:
    proxy = start_outbox_proxy()
    target = f"127.0.0.1:{proxy.config['metrics']['port']}"
    with run_prometheus(tmp_path, target) as prometheus:
        for n in range(3):
            send(proxy.smtp_port, ALLOWED_SENDER, f"user{n}@example.net", f"mail {n}")
        for _ in range(2):
            assert send_refused(proxy.smtp_port, DENIED_SENDER, "user@example.net") == 550
        # The proxy itself says so…
        assert proxy.metric("sesproxy_messages_sent_total") == 3
        assert proxy.metric("sesproxy_messages_rejected_total", reason="sender") == 2
        # …and Prometheus, having scraped it, agrees.
        sent = prometheus.wait_for('sesproxy_messages_sent_total{job="ses-proxy"}', 3)
        assert sent == 3
        rejected = 'sesproxy_messages_rejected_total{job="ses-proxy",reason="sender"}'
        assert prometheus.wait_for(rejected, 2) == 2
        assert prometheus.value(f'up{{job="ses-proxy",instance="{target}"}}') == 1
        assert prometheus.value('sesproxy_messages_rejected_total{reason="recipient"}') == 0

        # The rules load into a real Prometheus and evaluate without error.
        deadline = time.monotonic() + WAIT_SECONDS
        rules: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            groups = get_json(prometheus.url + "/api/v1/rules")["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if rules and all(rule["health"] == "ok" for rule in rules):
                break
            time.sleep(0.5)
        expected = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
        assert {rule["name"] for rule in rules} == {rule["alert"] for rule in expected}
        assert [rule for rule in rules if rule["health"] != "ok"] == []
        # Three sends and two refusals are no incident: nothing fires.
        firing = [a for rule in rules for a in rule["alerts"] if a["state"] == "firing"]
        assert firing == []
