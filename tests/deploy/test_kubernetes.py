"""deploy/kubernetes: schema-valid for a Kubernetes that has native sidecars, and the
properties the example promises (hardening, probes, IRSA, scraping, network fence)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.support import DEPLOY
from tests.harness import run_cli

K8S_DIR = DEPLOY / "kubernetes"
# Native sidecars (initContainers[].restartPolicy: Always) are on by default from 1.29.
K8S_VERSION = "1.30.0"
CRD_GROUPS = ("monitoring.coreos.com/",)


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def _one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in _documents() if doc["kind"] == kind]
    assert len(found) == 1, kind
    doc: dict[str, Any] = found[0]
    return doc


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment")["spec"]["template"]["spec"]
    return spec


def _sidecar() -> dict[str, Any]:
    found = [c for c in _pod_spec()["initContainers"] if c["name"] == "ses-proxy"]
    assert len(found) == 1
    sidecar: dict[str, Any] = found[0]
    return sidecar


def _proxy_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_one("ConfigMap")["data"]["config.yaml"])
    return config


def _subset(small: dict[str, str], big: dict[str, str]) -> bool:
    return all(big.get(key) == value for key, value in small.items())


CORE_DOCS = [
    pytest.param(doc, id=f"{name}:{doc['kind']}")
    for name, doc in _documents()
    if not doc["apiVersion"].startswith(CRD_GROUPS)
]


def test_every_kind_is_present() -> None:
    kinds = sorted(doc["kind"] for _, doc in _documents())
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "NetworkPolicy", "Service", "ServiceAccount", "ServiceMonitor"]
    )


@pytest.mark.parametrize("doc", CORE_DOCS)
def test_manifest_is_valid_for_kubernetes(doc: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == "1.30"


def test_validator_knows_native_sidecars_and_rejects_typos() -> None:
    deployment = _one("Deployment")
    # Before native sidecars, restartPolicy on an init container is not in the schema:
    # the validation above is really checking against the chosen version.
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(deployment, "1.27.0", strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["initContainers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_ses_proxy_is_a_hardened_native_sidecar() -> None:
    pod = _pod_spec()
    sidecar = _sidecar()
    assert sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in pod["containers"]] == ["app"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = sidecar["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001  # the image's USER
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = sidecar["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}
    assert sidecar["args"] == ["serve", "-c", "/etc/ses-proxy/config.yaml"]


def test_probes_use_health_and_readiness_on_the_metrics_port() -> None:
    sidecar = _sidecar()
    [metrics_port] = [p for p in sidecar["ports"] if p["name"] == "metrics"]
    assert metrics_port["containerPort"] == _proxy_config()["metrics"]["port"]
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_config_comes_from_the_configmap_and_env() -> None:
    sidecar = _sidecar()
    [mount] = sidecar["volumeMounts"]
    assert mount == {"name": "ses-proxy-config", "mountPath": "/etc/ses-proxy", "readOnly": True}
    [volume] = [v for v in _pod_spec()["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == _one("ConfigMap")["metadata"]["name"]
    assert all(e["name"].startswith("SES_PROXY_") for e in sidecar["env"])


def test_configmap_config_passes_check_config(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(_one("ConfigMap")["data"]["config.yaml"])
    result = run_cli("check-config", "-c", str(config_path))
    assert result.returncode == 0, result.stderr
    config = _proxy_config()
    assert config["smtp"]["host"] == "127.0.0.1"  # the app reaches it over the pod's loopback
    assert config["delivery"]["backend"] == "ses"
    grace = config["smtp"]["shutdown_grace_seconds"]
    assert _pod_spec()["terminationGracePeriodSeconds"] > grace


def test_no_kubernetes_api_token_but_irsa_role() -> None:
    account = _one("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )
    pod = _pod_spec()
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_scrape_annotations_point_at_the_metrics_port() -> None:
    annotations = _one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(_proxy_config()["metrics"]["port"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_service_monitor_selects_the_metrics_service() -> None:
    monitor = _one("ServiceMonitor")
    service = _one("Service")
    deployment = _one("Deployment")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert _subset(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    assert service["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
    [endpoint] = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # The Service reaches the sidecar's named metrics port on this Deployment's pods.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _subset(service["spec"]["selector"], pod_labels)
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in _sidecar()["ports"]}
    assert 2525 not in {p["port"] for p in service["spec"]["ports"]}


def test_network_policy_admits_only_monitoring_to_metrics() -> None:
    policy = _one("NetworkPolicy")["spec"]
    pod_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _subset(policy["podSelector"]["matchLabels"], pod_labels)
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9101}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
