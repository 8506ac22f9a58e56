"""deploy/prometheus: promtool checks the scrape config and the alert rules, runs the
rules' unit tests, and lints a real /metrics scrape of a running proxy."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability.metrics import Metrics
from tests.conftest import StartProxy
from tests.deploy.support import (
    ALLOWED_SENDER,
    DENIED_SENDER,
    PROMETHEUS_DIR,
    RULES,
    get_text,
    load_yaml,
    require_tool,
    send,
    send_refused,
)


@pytest.fixture
def promtool() -> str:
    return require_tool("promtool")


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=PROMETHEUS_DIR,
        timeout=120,
        check=False,
    )


def _alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", "tests.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_catch_a_wrong_expectation(promtool: str, tmp_path: Any) -> None:
    """The unit tests compare what they claim: a changed expectation fails."""
    tests = (PROMETHEUS_DIR / "tests.yml").read_text()
    broken = tests.replace('instance: "a:9101"}', 'instance: "b:9101"}', 1)
    assert broken != tests
    (tmp_path / "tests.yml").write_text(broken.replace("- ses-proxy.rules.yml", f"- {RULES}"))
    result = _run(promtool, "test", "rules", str(tmp_path / "tests.yml"))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = load_yaml(PROMETHEUS_DIR / "tests.yml")["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    names = {rule["alert"] for rule in _alert_rules()}
    assert fired == names
    # A quiet case: an explicit empty expectation, or a control instance in the inputs.
    for test in tests:
        instances = {
            match.group(1)
            for series in test["input_series"]
            if (match := re.search(r'instance="([^"]+)"', series["series"]))
        }
        quiet = any(not case["exp_alerts"] for case in test["alert_rule_test"])
        assert quiet or len(instances) > 1, test["name"]


def test_every_rule_is_documented_and_graded() -> None:
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_scrape_config_passes_promtool(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def _scrape_after_traffic(start_outbox_proxy: StartProxy) -> str:
    proxy = start_outbox_proxy()
    send(proxy.smtp_port, ALLOWED_SENDER, "someone@example.net")
    assert send_refused(proxy.smtp_port, DENIED_SENDER, "someone@example.net") == 550
    return get_text(proxy.metrics_url + "/metrics")


def test_live_metrics_pass_promtool_check_metrics(
    promtool: str, start_outbox_proxy: StartProxy
) -> None:
    body = _scrape_after_traffic(start_outbox_proxy)
    assert 'sesproxy_messages_sent_total{client="-"} 1.0' in body
    result = _run(promtool, "check", "metrics", stdin=body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


# Exported only with rate.backend redis: without a shared budget there is nothing to report.
_SHARED_BUDGET_ONLY = {"sesproxy_rate_shared_budget_up"}


def test_rules_use_only_series_the_proxy_exports(start_outbox_proxy: StartProxy) -> None:
    """A typo in a metric name or a reason label would make an alert silently never fire."""
    body = _scrape_after_traffic(start_outbox_proxy)
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).add(sample.labels.get("reason", ""))
    checked = 0
    for rule in _alert_rules():
        expr = rule["expr"]
        for match in re.finditer(r"(sesproxy_\w+)(?:\{([^}]*)\})?", expr):
            name, selector = match.group(1), match.group(2) or ""
            checked += 1
            if name in _SHARED_BUDGET_ONLY:
                shared = Metrics(shared_budget=True).registry
                assert shared.get_sample_value(name) is not None, f"{rule['alert']}: {name}"
                continue
            assert name in exported, f"{rule['alert']}: {name} is not exported"
            reasons = re.search(r'reason=~?"([^"]+)"', selector)
            if reasons:
                for reason in reasons.group(1).split("|"):
                    assert reason in exported[name], f"{rule['alert']}: {name} reason {reason}"
    assert checked >= len(_alert_rules())
