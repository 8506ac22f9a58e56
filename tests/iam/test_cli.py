"""`ses-proxy iam-policy` and `lint-policy`, run for real as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hcl2

from tests.fakes.aws import FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.iam.configs import ACCOUNT, write_config
from tests.iam.test_lint import ISSUE_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SES_PROXY_")}
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or base,
        timeout=120,
        check=False,
    )


def test_iam_policy_json_then_lint_policy_is_clean(tmp_path: Path) -> None:
    config = write_config(tmp_path, recipients=["*@example.com"], account_id=ACCOUNT)
    result = run("iam-policy", "-c", str(config))
    assert result.returncode == 0, result.stderr
    policy = json.loads(result.stdout)
    assert policy["Statement"][0]["Action"] == "ses:SendRawEmail"
    path = tmp_path / "policy.json"
    path.write_text(result.stdout, encoding="utf-8")
    linted = run("lint-policy", str(path))
    assert (linted.returncode, linted.stdout) == (0, "")


def test_iam_policy_formats(tmp_path: Path) -> None:
    config = write_config(tmp_path, account_id=ACCOUNT)
    cfn = run("iam-policy", "-c", str(config), "--format", "cloudformation")
    assert cfn.returncode == 0, cfn.stderr
    assert "AWS::IAM::InstanceProfile" in {
        r["Type"] for r in json.loads(cfn.stdout)["Resources"].values()
    }
    tf = run("iam-policy", "-c", str(config), "--format", "terraform")
    assert tf.returncode == 0, tf.stderr
    assert "resource" in hcl2.loads(tf.stdout)


def test_iam_policy_refuses_empty_source_ips(tmp_path: Path) -> None:
    config = write_config(tmp_path, source_ips=[], account_id=ACCOUNT)
    result = run("iam-policy", "-c", str(config))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "ses.source_ips" in result.stderr
    anyway = run("iam-policy", "-c", str(config), "--allow-any-source-ip")
    assert anyway.returncode == 0, anyway.stderr
    assert "aws:SourceIp" not in anyway.stdout
    assert "warning" in anyway.stderr


def test_iam_policy_warns_on_senders_without_a_domain(tmp_path: Path) -> None:
    config = write_config(tmp_path, senders=["*"], account_id=ACCOUNT)
    result = run("iam-policy", "-c", str(config))
    assert result.returncode == 0
    assert "identity/*" in result.stderr
    assert json.loads(result.stdout)["Statement"][0]["Resource"] == [
        f"arn:aws:ses:eu-west-3:{ACCOUNT}:identity/*"
    ]


def test_account_id_comes_from_sts_when_not_configured(
    tmp_path: Path, fake_aws: FakeAWS, container_credentials: FakeContainerCredentials
) -> None:
    fake_aws.account_id = "210987654321"
    config = write_config(tmp_path)
    env = container_credentials.env()
    env["AWS_ENDPOINT_URL_STS"] = fake_aws.url  # botocore's own endpoint resolution
    result = run("iam-policy", "-c", str(config), env=env)
    assert result.returncode == 0, result.stderr
    resources = json.loads(result.stdout)["Statement"][0]["Resource"]
    assert all(":210987654321:identity/" in r for r in resources)


def test_sts_failure_is_a_config_error_naming_account_id(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SES_PROXY_"))}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    result = run("iam-policy", "-c", str(config), env=env)
    assert result.returncode == 2
    assert "ses.account_id" in result.stderr


def test_lint_policy_exit_codes(tmp_path: Path) -> None:
    issue = tmp_path / "issue.json"
    issue.write_text(ISSUE_EXAMPLE, encoding="utf-8")
    found = run("lint-policy", str(issue))
    assert found.returncode == 1
    assert "ses:RequireTLS" in found.stdout
    assert "ses:MessageSize" in found.stdout
    assert len(found.stdout.splitlines()) == 2

    trailing = tmp_path / "trailing.json"
    trailing.write_text('{"Version": "2012-10-17", "Statement": [],}', encoding="utf-8")
    bad = run("lint-policy", str(trailing))
    assert bad.returncode == 2
    assert f"{trailing}:1:43: ERROR INVALID_JSON" in bad.stdout

    missing = run("lint-policy", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
