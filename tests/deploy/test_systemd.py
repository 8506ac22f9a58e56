"""deploy/systemd/ses-proxy.service: the hardening it promises, checked by systemd itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, load_yaml, require_tool
from tests.harness import REPO

UNIT = DEPLOY / "systemd" / "ses-proxy.service"
INSTALLED_EXEC = "/opt/ses-proxy/bin/ses-proxy"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat and accumulate)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None, f"line {number}: outside a section"
        assert sep, f"line {number}: {raw!r}"
        assert re.fullmatch(r"[A-Za-z]+", key), f"line {number}: bad key {key!r}"
        current.setdefault(key, []).append(value)
    return sections


def _service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def test_unit_parses_into_the_three_sections() -> None:
    sections = parse_unit(UNIT.read_text())
    assert set(sections) == {"Unit", "Service", "Install"}
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_hardening_directives() -> None:
    service = _service()
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "LockPersonality": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "UMask": "0077",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert service["SystemCallFilter"][0] == "@system-service"


def test_stop_timeout_outlasts_the_drain() -> None:
    grace = load_yaml(REPO / "config" / "ses.example.yaml")["smtp"]["shutdown_grace_seconds"]
    assert grace == 25
    assert int(_service()["TimeoutStopSec"][0]) > grace


def test_execstart_runs_serve_with_the_config() -> None:
    assert _service()["ExecStart"] == [f"{INSTALLED_EXEC} serve -c /etc/ses-proxy/config.yaml"]


def _unit_with_local_exec(tmp_path: Path) -> Path:
    """systemd-analyze checks that ExecStart exists: point it at this checkout's entry
    point (the venv running the tests) instead of /opt/ses-proxy."""
    executable = Path(sys.executable).parent / "ses-proxy"
    if not executable.is_file():
        pytest.skip(f"no ses-proxy entry point beside {sys.executable} (pip install -e .)")
    unit = tmp_path / "ses-proxy.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_EXEC, str(executable)))
    return unit


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    unit = _unit_with_local_exec(tmp_path)
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings: none may mention our unit.
    assert unit.name not in result.stderr, result.stderr


def test_systemd_analyze_verify_catches_a_bad_directive(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    unit = _unit_with_local_exec(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictly"))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "protect system" in result.stderr.lower(), result.stderr


def test_systemd_analyze_security_rates_it_ok(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    unit = _unit_with_local_exec(tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout
    assert match.group(2) == "OK"
