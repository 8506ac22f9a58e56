"""The generator: the policy document, its CloudFormation and Terraform forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest

from proxy.iam.generate import (
    build_policy,
    identity_names,
    partition_for,
    policy_warnings,
    render_cloudformation,
    render_terraform,
    session_policy,
)
from proxy.iam.lint import lint_text
from proxy.settings import ConfigError, Settings
from tests.iam.configs import ACCOUNT, config_data, make_settings
from tests.iam.evaluate import Decision, Request, evaluate

ARN = f"arn:aws:ses:eu-west-3:{ACCOUNT}"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def statement(policy: dict[str, Any]) -> dict[str, Any]:
    """The sending statement (the other one lets pacing read the quota)."""
    [only] = [s for s in policy["Statement"] if s["Action"] == "ses:SendRawEmail"]
    assert isinstance(only, dict)
    return only


def test_the_only_other_statement_reads_the_send_quota_from_the_same_hosts() -> None:
    settings = make_settings(source_ips=["203.0.113.7/32"], recipients=["*@example.com"])
    send, quota = build_policy(settings, ACCOUNT)["Statement"]
    assert send["Action"] == "ses:SendRawEmail"
    assert quota == {
        "Sid": "SesProxyGetSendQuota",
        "Effect": "Allow",
        "Action": "ses:GetSendQuota",
        "Resource": "*",
        "Condition": {
            "IpAddress": {"aws:SourceIp": ["203.0.113.7/32"]},
            "Bool": {"aws:SecureTransport": "true"},
        },
    }


def test_policy_allows_only_send_raw_email_under_every_condition() -> None:
    settings = make_settings(
        recipients=["*@example.com"],
        source_ips=["203.0.113.7/32", "2001:db8::/48"],
        account_id=ACCOUNT,
        configuration_set="relay",
    )
    policy = build_policy(settings, ACCOUNT)
    assert policy["Version"] == "2012-10-17"
    only = statement(policy)
    assert only["Effect"] == "Allow"
    assert only["Action"] == "ses:SendRawEmail"
    assert only["Resource"] == [
        f"{ARN}:identity/noreply@example.com",
        f"{ARN}:identity/example.com",
        f"{ARN}:identity/*@example.org",
        f"{ARN}:identity/example.org",
        f"{ARN}:configuration-set/relay",
    ]
    assert only["Condition"] == {
        "StringLike": {"ses:FromAddress": ["noreply@example.com", "*@example.org"]},
        "ForAllValues:StringLike": {"ses:Recipients": ["*@example.com"]},
        "IpAddress": {"aws:SourceIp": ["203.0.113.7/32", "2001:db8::/48"]},
        "Bool": {"aws:SecureTransport": "true"},
    }


def test_unrestricted_recipients_add_no_recipient_condition() -> None:
    for recipients in (["*"], ["*@example.com", "*"]):
        condition = statement(build_policy(make_settings(recipients=recipients), ACCOUNT))[
            "Condition"
        ]
        assert "ForAllValues:StringLike" not in condition


def test_no_configuration_set_no_configuration_set_resource() -> None:
    resources = statement(build_policy(make_settings(), ACCOUNT))["Resource"]
    assert not any(":configuration-set/" in r for r in resources)


def test_empty_source_ips_refused_naming_the_key() -> None:
    settings = make_settings(source_ips=[])
    with pytest.raises(ConfigError, match=r"^ses\.source_ips"):
        build_policy(settings, ACCOUNT)
    policy = build_policy(settings, ACCOUNT, allow_any_source_ip=True)
    assert "IpAddress" not in statement(policy)["Condition"]
    assert any(
        "--allow-any-source-ip" in w for w in policy_warnings(settings, allow_any_source_ip=True)
    )


@pytest.mark.parametrize(
    ("senders", "names"),
    [
        (["a@example.com"], ["a@example.com", "example.com"]),
        (["*@example.com", "b@example.com"], ["*@example.com", "example.com", "b@example.com"]),
        (["*@*.example.com"], ["*@*.example.com", "*.example.com"]),
        (["*"], ["*"]),
        (["a@example.com", "*example.org"], ["*"]),
        (["a@*"], ["*"]),
    ],
)
def test_identity_names(senders: list[str], names: list[str]) -> None:
    assert identity_names(senders) == names


def test_senders_without_a_domain_warn() -> None:
    assert policy_warnings(make_settings(senders=["noreply@example.com"])) == []
    [warning] = policy_warnings(make_settings(senders=["*"]))
    assert "identity/*" in warning
    [warning] = policy_warnings(make_settings(senders=["*@*.example.com"]))
    assert "identity/*.example.com" in warning


@pytest.mark.parametrize(
    ("region", "partition"),
    [("eu-west-3", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")],
)
def test_partition(region: str, partition: str) -> None:
    assert partition_for(region) == partition
    resource = statement(build_policy(make_settings(region=region), ACCOUNT))["Resource"][0]
    assert resource.startswith(f"arn:{partition}:ses:{region}:{ACCOUNT}:identity/")


def test_only_the_identities_the_patterns_name_are_allowed() -> None:
    # A known limit: a sender at mail.example.com gets identity/mail.example.com and the
    # address identity, not the parent example.com. If the account verified only the
    # parent domain, SES may authorize against it and this policy denies: `doctor`
    # (issue #4, later) is the place to compare the patterns with the verified identities.
    policy = build_policy(make_settings(senders=["noreply@mail.example.com"]), ACCOUNT)
    request = Request(
        "ses:SendRawEmail",
        f"{ARN}:identity/example.com",
        {
            "ses:FromAddress": "noreply@mail.example.com",
            "aws:SourceIp": "203.0.113.7",
            "aws:SecureTransport": "true",
        },
    )
    assert evaluate(policy, request) is Decision.IMPLICIT_DENY


def test_generated_policy_lints_clean() -> None:
    settings = make_settings(
        senders=["noreply@example.com", "*@example.org", "*"],
        recipients=["*@example.com", "ops@partner.net"],
        source_ips=["203.0.113.7/32", "2001:db8::/48"],
        configuration_set="relay",
    )
    findings = lint_text(json.dumps(build_policy(settings, ACCOUNT)))
    # The sender "*" can only be covered by identity/*: the one finding, on purpose.
    assert [(f.severity, f.code) for f in findings] == [("LOW", "RESOURCE_WILDCARD")]
    settings = make_settings(
        recipients=["*@example.com"], source_ips=["2001:db8::/32"], configuration_set="relay"
    )
    assert lint_text(json.dumps(build_policy(settings, ACCOUNT))) == []


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), "--regions", "eu-west-3", "--", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("account", [ACCOUNT, None])
def test_cloudformation_template_passes_cfn_lint(tmp_path: Path, account: str | None) -> None:
    settings = make_settings(recipients=["*@example.com"], configuration_set="relay")
    text = render_cloudformation(settings, account)
    template = json.loads(text)
    resources = template["Resources"]
    assert {r["Type"] for r in resources.values()} == {
        "AWS::IAM::Role",
        "AWS::IAM::InstanceProfile",
    }
    role = resources["SesProxyRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": {"Ref": "TrustedServicePrincipal"}}
    assert template["Parameters"]["TrustedServicePrincipal"]["Default"] == "ec2.amazonaws.com"
    document = role["Policies"][0]["PolicyDocument"]
    if account is None:
        # No account configured: the stack's own account, and no STS call to generate it.
        assert document["Statement"][0]["Resource"][0] == {
            "Fn::Sub": "arn:${AWS::Partition}:ses:eu-west-3:${AWS::AccountId}"
            ":identity/noreply@example.com"
        }
    else:
        assert document == build_policy(settings, ACCOUNT)
    path = tmp_path / "template.json"
    path.write_text(text, encoding="utf-8")
    result = cfn_lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_does_catch_a_broken_template(tmp_path: Path) -> None:
    # Guards the test above: cfn-lint really runs and fails on a bad template.
    template = json.loads(render_cloudformation(make_settings(), ACCOUNT))
    template["Resources"]["SesProxyInstanceProfile"]["Properties"]["Roles"] = [{"Ref": "Nope"}]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    assert cfn_lint(path).returncode != 0


def _unquote(value: str) -> str:
    assert value.startswith('"'), value
    assert value.endswith('"'), value
    return value[1:-1]


@pytest.mark.parametrize("account", [ACCOUNT, None])
def test_terraform_parses_as_hcl_with_the_policy_inside(account: str | None) -> None:
    settings = make_settings(
        recipients=["*@example.com"], configuration_set="relay", account_id=account
    )
    text = render_terraform(settings, account)
    parsed = hcl2.loads(text)
    resources = {
        (_unquote(kind), _unquote(name))
        for block in parsed["resource"]
        for kind, named in block.items()
        for name in named
    }
    assert resources == {
        ("aws_iam_policy", "ses_proxy_send"),
        ("aws_iam_role", "ses_proxy"),
        ("aws_iam_role_policy_attachment", "ses_proxy_send"),
        ("aws_iam_instance_profile", "ses_proxy"),
    }
    data_sources = {_unquote(k) for block in parsed.get("data", []) for k in block}
    assert data_sources == (set() if account else {"aws_caller_identity", "aws_partition"})
    # The jsonencode() argument is our policy, written as an HCL object.
    policy_block = next(
        b['"aws_iam_policy"'] for b in parsed["resource"] if '"aws_iam_policy"' in b
    )
    expression = policy_block['"ses_proxy_send"']["policy"]
    assert expression.startswith("${jsonencode({")
    assert expression.endswith("})}")
    inner = expression[len("${jsonencode(") : -len(")}")]
    as_json = json.loads(inner.replace('" = ', '": '))
    if account:
        assert as_json == build_policy(settings, account)
    else:
        resource = as_json["Statement"][0]["Resource"][0]
        assert resource == (
            "arn:${data.aws_partition.current.partition}:ses:eu-west-3:"
            "${data.aws_caller_identity.current.account_id}:identity/noreply@example.com"
        )


def test_terraform_escapes_template_sequences_from_the_config() -> None:
    # Settings refuse "${" in patterns; "%{" is the other HCL template opener.
    settings = make_settings(senders=["a%{b}@example.com"])
    text = render_terraform(settings, ACCOUNT)
    assert '"a%%{b}@example.com"' in text
    hcl2.loads(text)


def test_every_configuration_set_and_identity_arn_named_anywhere_is_a_resource() -> None:
    data = config_data(account_id=ACCOUNT, configuration_set="tls-required")
    data["policy"]["allowed_configuration_sets"] = ["marketing"]
    data["ses"]["source_arn"] = "arn:aws:ses:eu-west-3:210987654321:identity/partner.example"
    data["clients"] = [
        {
            "name": "billing",
            "networks": ["10.0.0.0/24"],
            "allowed_senders": ["billing@example.com"],
            "configuration_set": "billing-events",
            "allowed_configuration_sets": ["marketing", "billing-bounces"],
        }
    ]
    [send, _quota] = build_policy(Settings(**data), ACCOUNT)["Statement"]
    arn = f"arn:aws:ses:eu-west-3:{ACCOUNT}"
    assert f"{arn}:identity/billing@example.com" in send["Resource"]
    assert send["Resource"][-5:] == [
        "arn:aws:ses:eu-west-3:210987654321:identity/partner.example",
        f"{arn}:configuration-set/tls-required",
        f"{arn}:configuration-set/marketing",
        f"{arn}:configuration-set/billing-events",
        f"{arn}:configuration-set/billing-bounces",
    ]


# ---------------------------------------------------------------- ses.api: v2


def _v2(**kwargs: Any) -> Any:
    return make_settings(api="v2", **kwargs)


def test_v2_allows_send_email_and_get_account_under_v1s_conditions() -> None:
    kwargs: dict[str, Any] = {
        "recipients": ["*@example.com"],
        "source_ips": ["203.0.113.7/32"],
        "configuration_set": "relay",
    }
    v1 = build_policy(make_settings(**kwargs), ACCOUNT)
    v2 = build_policy(_v2(**kwargs), ACCOUNT)
    send, quota = v2["Statement"]
    assert (send["Sid"], send["Action"]) == ("SesProxySendEmail", "ses:SendEmail")
    assert (quota["Sid"], quota["Action"], quota["Resource"]) == (
        "SesProxyGetAccount",
        "ses:GetAccount",
        "*",
    )
    # Only the actions differ: the same identities, configuration set and conditions.
    for v1_statement, v2_statement in zip(v1["Statement"], v2["Statement"], strict=True):
        assert {k: v for k, v in v1_statement.items() if k not in ("Sid", "Action")} == {
            k: v for k, v in v2_statement.items() if k not in ("Sid", "Action")
        }
    assert "SendRawEmail" not in json.dumps(v2)
    assert "GetSendQuota" not in json.dumps(v2)


def test_v2_policy_authorizes_send_email_not_send_raw_email() -> None:
    policy = build_policy(_v2(), ACCOUNT)
    context = {
        "ses:FromAddress": "noreply@example.com",
        "aws:SourceIp": "203.0.113.7",
        "aws:SecureTransport": "true",
    }
    identity = f"{ARN}:identity/example.com"
    assert evaluate(policy, Request("ses:SendEmail", identity, context)) is Decision.ALLOW
    assert (
        evaluate(policy, Request("ses:SendRawEmail", identity, context)) is Decision.IMPLICIT_DENY
    )
    assert evaluate(policy, Request("ses:GetAccount", "*", context)) is Decision.ALLOW


def test_v2_policy_lints_clean() -> None:
    settings = _v2(recipients=["*@example.com"], configuration_set="relay")
    assert lint_text(json.dumps(build_policy(settings, ACCOUNT))) == []


def test_v2_session_policy_is_the_v2_policy() -> None:
    settings = _v2(role_arn=f"arn:aws:iam::{ACCOUNT}:role/ses-proxy")
    text = session_policy(settings)
    assert text is not None
    assert json.loads(text) == build_policy(settings, ACCOUNT, allow_any_source_ip=True)
    assert '"ses:SendEmail"' in text
    assert "SendRawEmail" not in text


@pytest.mark.parametrize("account", [ACCOUNT, None])
def test_v2_cloudformation_passes_cfn_lint(tmp_path: Path, account: str | None) -> None:
    settings = _v2(recipients=["*@example.com"], configuration_set="relay")
    text = render_cloudformation(settings, account)
    template = json.loads(text)
    document = template["Resources"]["SesProxyRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert [s["Action"] for s in document["Statement"]] == ["ses:SendEmail", "ses:GetAccount"]
    if account is not None:
        assert document == build_policy(settings, ACCOUNT)
    assert "ses:SendEmail" in template["Description"]
    assert "SendRawEmail" not in text
    path = tmp_path / "template.json"
    path.write_text(text, encoding="utf-8")
    result = cfn_lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_v2_terraform_carries_the_v2_policy() -> None:
    settings = _v2(recipients=["*@example.com"], configuration_set="relay")
    text = render_terraform(settings, ACCOUNT)
    parsed = hcl2.loads(text)
    policy_block = next(
        b['"aws_iam_policy"'] for b in parsed["resource"] if '"aws_iam_policy"' in b
    )
    expression = policy_block['"ses_proxy_send"']["policy"]
    inner = expression[len("${jsonencode(") : -len(")}")]
    assert json.loads(inner.replace('" = ', '": ')) == build_policy(settings, ACCOUNT)
    assert "SendRawEmail" not in text
