"""`ses-proxy check-config` and `serve` as an operator runs them: exit codes and messages."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import deep_merge, free_port, run_cli

GOOD = {
    "policy": {"allowed_senders": ["noreply@example.com"]},
    "delivery": {"backend": "outbox"},
}


def write_config(tmp_path: Path, overrides: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(deep_merge(GOOD, overrides or {})))
    return path


def test_check_config_prints_the_effective_config_with_env_overrides(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, {"rate": {"backend": "redis", "redis_url": "redis://:hunter2@redis:6379/0"}}
    )
    result = run_cli(
        "check-config",
        "-c",
        str(path),
        env={
            "SES_PROXY_SES__REGION": "us-east-1",
            "SES_PROXY_POLICY__ALLOWED_SENDERS": '["Alerts@Example.org"]',
        },
    )
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["ses"]["region"] == "us-east-1"
    assert effective["policy"]["allowed_senders"] == ["alerts@example.org"]
    assert effective["smtp"]["port"] == 2525
    assert "hunter2" not in result.stdout
    assert effective["rate"]["redis_url"] == "redis://***@redis:6379/0"


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = run_cli("check-config", env={"SES_PROXY_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"smtp": {"allowed_networks": ["10.0.0.0/33"]}}, "smtp.allowed_networks"),
        ({"delivery": {"backend": "sendmail"}}, "delivery.backend"),
        ({"ses": {"endpoint_url": "http://ses.test"}}, "endpoint_url must be https"),
        (
            {
                "smtp": {
                    "tls_cert_file": "/nonexistent/cert.pem",
                    "tls_key_file": "/nonexistent/key.pem",
                }
            },
            "smtp.tls_cert_file: cannot read",
        ),
        ({"smtp": {"require_tls": True}}, "require_tls needs tls_cert_file"),
        ({"smtp": {"colour": "blue"}}, "smtp.colour: unknown key"),
        ({"policy": {"max_recipients": 51}}, "policy.max_recipients"),
        ({"policy": {"allowed_senders": ["no reply@example.com"]}}, "policy.allowed_senders"),
        ({"rate": {"backend": "redis"}}, "redis_url"),
        ({"ses": {"role_arn": "my-role"}}, "ses.role_arn"),
        ({"ses": {"api": "v3"}}, "ses.api"),
        ({"policy": {"max_message_bytes": 10485761}}, "policy.max_message_bytes: 10485761"),
        (
            {"ses": {"api": "v2"}, "policy": {"max_message_bytes": 41943041}},
            "policy.max_message_bytes: 41943041 is above the 41943040 bytes",
        ),
    ],
)
def test_invalid_config_exits_2_naming_the_key(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    result = run_cli("check-config", "-c", str(write_config(tmp_path, overrides)))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "effective"),
    [
        ({}, 10485760),
        ({"ses": {"api": "v1"}}, 10485760),
        ({"ses": {"api": "v2"}}, 41943040),
        ({"ses": {"api": "v2"}, "policy": {"max_message_bytes": 10485761}}, 10485761),
        ({"policy": {"max_message_bytes": 1000}}, 1000),
    ],
)
def test_max_message_bytes_defaults_to_the_apis_limit(
    tmp_path: Path, overrides: dict[str, Any], effective: int
) -> None:
    result = run_cli("check-config", "-c", str(write_config(tmp_path, overrides)))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["policy"]["max_message_bytes"] == effective


def test_the_apis_limit_follows_an_env_override_of_ses_api(tmp_path: Path) -> None:
    result = run_cli(
        "check-config",
        "-c",
        str(write_config(tmp_path)),
        env={"SES_PROXY_SES__API": "v2"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["policy"]["max_message_bytes"] == 41943040


def test_missing_allowed_senders(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("delivery:\n  backend: outbox\n")
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 2
    assert "policy: required key is missing" in result.stderr


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("policy:\n  allowed_senders: [a@b.c\n")
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 2
    assert f"{path}:3:" in result.stderr


def test_unreadable_file_and_no_file(tmp_path: Path) -> None:
    assert run_cli("check-config", "-c", str(tmp_path / "missing.yaml")).returncode == 2
    result = run_cli("check-config")
    assert result.returncode == 2
    assert "SES_PROXY_CONFIG" in result.stderr


def test_a_certificate_that_does_not_match_its_key(tmp_path: Path) -> None:
    import trustme

    authority = trustme.CA()
    one, other = authority.issue_cert("localhost"), authority.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    one.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    path = write_config(tmp_path, {"smtp": {"tls_cert_file": str(cert), "tls_key_file": str(key)}})
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 2
    assert "smtp.tls_cert_file" in result.stderr


@pytest.mark.parametrize("key", ["smtp.port", "metrics.port"])
def test_serve_with_a_port_in_use_exits_2(tmp_path: Path, key: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = {"smtp": free_port(), "metrics": free_port()}
        ports[key.split(".")[0]] = taken
        path = write_config(
            tmp_path,
            {
                "smtp": {"port": ports["smtp"]},
                "metrics": {"port": ports["metrics"]},
                "delivery": {"outbox_dir": str(tmp_path / "outbox")},
            },
        )
        result = run_cli("serve", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{key}: 127.0.0.1:{taken} is already in use" in result.stderr


@pytest.mark.parametrize("inside", ["", "sub"])
def test_serve_with_an_outbox_dir_that_cannot_be_made_exits_2(tmp_path: Path, inside: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = write_config(
        tmp_path,
        {
            "smtp": {"port": free_port()},
            "metrics": {"port": free_port()},
            "delivery": {"backend": "outbox", "outbox_dir": str(blocker / inside)},
        },
    )
    result = run_cli("serve", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ses-proxy: config error: delivery.outbox_dir: cannot make")
    assert "Traceback" not in result.stderr


def test_a_session_policy_over_the_aws_limit_is_refused(tmp_path: Path) -> None:
    senders = [f"sender-number-{i}@department-{i}.example.com" for i in range(60)]
    path = write_config(
        tmp_path,
        {
            "policy": {"allowed_senders": senders},
            "delivery": {"backend": "ses"},
            "ses": {"role_arn": "arn:aws:iam::123456789012:role/ses-sender"},
        },
    )
    result = run_cli("serve", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "session policy for ses.role_arn is" in result.stderr
    assert "AWS accepts 2048" in result.stderr


def test_the_gateway_example_is_valid_once_its_files_exist(tmp_path: Path) -> None:
    """config/gateway.example.yaml with its certificate and hash files made real."""
    import trustme

    from proxy.smtp.auth import HASHER

    text = (Path(__file__).parent.parent / "config" / "gateway.example.yaml").read_text()
    issued = trustme.CA().issue_cert("mail-gateway.internal")
    issued.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "tls.crt"))
    issued.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    for name in ("billing", "support"):
        (tmp_path / f"{name}.hash").write_text(HASHER.hash(f"{name} password") + "\n")
    text = text.replace("/etc/ses-proxy/secrets/", f"{tmp_path}/").replace(
        "/etc/ses-proxy/", f"{tmp_path}/"
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert [c["name"] for c in effective["clients"]] == ["billing", "support", "batch"]
    assert {c["password_hash"] for c in effective["clients"][:2]} == {"***"}
    assert "argon2id" not in result.stdout
    policy = json.loads(run_cli("iam-policy", "-c", str(path)).stdout)
    senders = policy["Statement"][0]["Condition"]["StringLike"]["ses:FromAddress"]
    assert set(senders) == {
        "noreply@example.com",
        "billing@example.com",
        "invoices@example.com",
        "*@support.example.com",
        "reports@example.com",
    }
