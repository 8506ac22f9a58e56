"""deploy/grafana: the dashboard is well-formed, promtool parses every query, and every
series and label a query names is one a running relay exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartProxy
from tests.deploy.support import ALLOWED_SENDER, DEPLOY, require_tool, send
from tests.harness import free_port

DASHBOARD = DEPLOY / "grafana" / "ses-proxy.json"

# Prometheus attaches these to every scraped series (deploy/prometheus/prometheus.yml):
# a query may use them although the relay never exports them.
_TARGET_LABELS = {"instance", "job"}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = _dashboard()["panels"]
    return panels


def _queries() -> list[tuple[str, str, str]]:
    """(where, query, legend) for every panel query and every query variable."""
    panels = [
        (f"panel {panel['id']} {target['refId']}", target["expr"], target["legendFormat"])
        for panel in _panels()
        for target in panel["targets"]
    ]
    variables = [
        (f"variable {variable['name']}", variable["definition"], "")
        for variable in _dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]
    return panels + variables


def _exprs() -> list[tuple[str, str]]:
    """(where, expr) for every panel query: label_values() in a variable is not PromQL."""
    return [(where, expr) for where, expr, _ in _queries() if where.startswith("panel")]


def _as_promql(expr: str) -> str:
    # Grafana substitutes its own range variables ($__rate_interval, $__range…) before
    # Prometheus sees the query; `$instance` sits inside a string and parses as it is.
    return re.sub(r"\$__\w+", "5m", expr)


def test_dashboard_is_well_formed() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels()
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    for panel in panels:
        assert panel["title"].strip(), panel["id"]
        # No row panels: a collapsed row nests its panels where these checks would miss them.
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.fixture
def promtool() -> str:
    return require_tool("promtool")


def _check_as_rules(
    promtool: str, exprs: list[tuple[str, str]], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """promtool check rules on the exprs, each as one recording rule."""
    rules = [
        {"record": "grafana_" + re.sub(r"\W", "_", where), "expr": _as_promql(expr)}
        for where, expr in exprs
    ]
    path = workdir / "grafana.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    return subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_query_parses_as_promql(promtool: str, tmp_path: Path) -> None:
    exprs = _exprs()
    result = _check_as_rules(promtool, exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_refuses_a_query_that_does_not_parse(promtool: str, tmp_path: Path) -> None:
    """The check above is promtool's, not a formality: one broken query fails it."""
    where, expr = _exprs()[0]
    result = _check_as_rules(promtool, [(where, expr.replace(")", "", 1))], tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def _exported(start_ses_proxy: StartProxy) -> dict[str, set[str]]:
    """Every series name on a live relay's /metrics, with the label names it carries."""
    # sesproxy_rate_shared_budget_up exists only with the SES backend and rate.backend
    # redis; a Redis nobody listens on is enough: the relay falls back and exports 0.
    proxy = start_ses_proxy(
        {"rate": {"backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"}}
    )
    # Labelled histograms such as the SES request duration have no series before a send.
    send(proxy.smtp_port, ALLOWED_SENDER, "someone@example.net")
    _, body = proxy.http_get("/metrics")
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    return exported


def _labels_used(query: str) -> set[str]:
    """Label names in matchers, in `by`/`without` clauses and in label_values()."""
    used: set[str] = set()
    for selector in re.findall(r"\{([^}]*)\}", query):
        used.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
    for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", query):
        used.update(name.strip() for name in clause.split(",") if name.strip())
    used.update(re.findall(r"label_values\(\s*[^,()]+,\s*(\w+)\s*\)", query))
    return used


def test_queries_use_only_series_and_labels_the_relay_exports(
    start_ses_proxy: StartProxy,
) -> None:
    """A panel on a metric or label the relay does not export would just stay empty."""
    exported = _exported(start_ses_proxy)
    for where, query, legend in _queries():
        names = re.findall(r"\bsesproxy_\w+", query)
        assert names, f"{where}: no sesproxy_ series in {query}"
        for name in names:
            assert name in exported, f"{where}: {name} is not exported"
        labels = set().union(*(exported[name] for name in names)) | _TARGET_LABELS
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        for label in _labels_used(query) | legend_labels:
            assert label in labels, f"{where}: {names} carry no label {label}"
