"""Run the real `ses-proxy serve` as a child process, the way an operator would.

Tests talk to it over real sockets only: SMTP on its listener, HTTP on /metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent


def require_tool(name: str, package: str) -> str:
    """The path of an external tool the test drives for real.

    `make test` installs the Debian packages when it can; without them a test is
    skipped on a workstation, but fails under CI (CI=true), where a green run must
    never hide a missing install.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {package})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m proxy ARGS` as an operator runs it: no SES_PROXY_* from this process,
    `env` added on top."""
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("SES_PROXY_")}
    process_env["PYTHONPATH"] = str(REPO)
    process_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        env=process_env,
        timeout=60,
        check=False,
        cwd=cwd or REPO,
    )


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class RunningProxy:
    process: subprocess.Popen[bytes]
    config: dict[str, Any]
    log_path: Path
    exit_code: int | None = field(default=None)

    @property
    def smtp_port(self) -> int:
        return int(self.config["smtp"]["port"])

    @property
    def tls_port(self) -> int:
        return int(self.config["smtp"]["tls_port"])

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.config['metrics']['port']}"

    def logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entries.append(json.loads(line))
        return entries

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs() if entry.get("event") == name]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.metrics_url + path, timeout=5) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` on /metrics that carry `labels` (0 when none):
        `metric("sesproxy_messages_sent_total")` counts every client's."""
        _, body = self.http_get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code of a process expected to end by itself."""
        self.exit_code = self.process.wait(timeout=timeout)
        return self.exit_code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.exit_code is None:
            if self.process.poll() is None:
                self.process.send_signal(sig)
            self.exit_code = self.process.wait(timeout=timeout)
        return self.exit_code


def start_proxy(
    workdir: Path,
    config: dict[str, Any],
    env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
) -> RunningProxy:
    config_path = workdir / "ses-proxy.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "proxy.log"
    process_env = dict(os.environ if env is None else env)
    process_env["PYTHONPATH"] = str(REPO)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "-c", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=process_env,
            cwd=workdir,
        )
    proxy = RunningProxy(process=process, config=config, log_path=log_path)
    if wait_ready:
        _wait_ready(proxy)
    return proxy


def _wait_ready(proxy: RunningProxy, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"proxy exited with {proxy.process.returncode}:\n{proxy.log_text()}")
        with contextlib.suppress(OSError):
            status, _ = proxy.http_get("/readyz")
            if status == 200:
                return
        time.sleep(0.05)
    proxy.stop(signal.SIGKILL)
    raise RuntimeError(f"proxy not ready within {timeout}s:\n{proxy.log_text()}")
