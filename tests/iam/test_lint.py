"""The linter: each check on a small policy, the issue's example, and lint_files' exits."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from proxy.iam.lint import EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNUSABLE, lint_files, lint_text

IDENTITY = "arn:aws:ses:eu-west-3:123456789012:identity/example.com"

# The policy from issue #4, as found in the field.
ISSUE_EXAMPLE = """\
{"Version": "2012-10-17", "Statement": [{"Sid": "SESSendingPermissions", "Effect": "Allow",
  "Action": "ses:SendRawEmail",
  "Resource": ["arn:aws:ses:eu-west-3:000000000000:identity/yourdomain.com",
               "arn:aws:ses:eu-west-3:000000000000:configuration-set/go-yourdomain"],
  "Condition": {"StringLike": {"ses:FromAddress": "noreply@yourdomain.com"},
                "IpAddress": {"aws:SourceIp": "123.123.123.123/32"},
                "Bool": {"ses:RequireTLS": "true"},
                "NumericLessThanEquals": {"ses:MessageSize": "10485760"}}}]}
"""

GOOD_CONDITION: dict[str, Any] = {
    "StringLike": {"ses:FromAddress": "noreply@example.com"},
    "IpAddress": {"aws:SourceIp": "203.0.113.7/32"},
}


def policy(
    action: Any = "ses:SendRawEmail",
    resource: Any = IDENTITY,
    condition: dict[str, Any] | None = None,
    effect: str = "Allow",
) -> str:
    statement = {
        "Effect": effect,
        "Action": action,
        "Resource": resource,
        "Condition": GOOD_CONDITION if condition is None else condition,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, indent=2)


def codes(text: str) -> list[str]:
    return [finding.code for finding in lint_text(text)]


def test_issue_example_finds_require_tls_and_message_size_and_nothing_else() -> None:
    findings = lint_text(ISSUE_EXAMPLE)
    assert [f.code for f in findings] == ["NONEXISTENT_CONDITION_KEY"] * 2
    tls, size = findings
    assert "ses:RequireTLS" in tls.message
    assert "every send is denied" in tls.message
    assert "TlsPolicy: Require" in tls.fix
    assert "aws:SecureTransport" in tls.fix
    assert "ses:MessageSize" in size.message
    assert "policy.max_message_bytes" in size.fix


def test_a_good_policy_is_clean() -> None:
    assert lint_text(policy()) == []


def test_ipv6_cidrs_are_not_a_type_mismatch() -> None:
    # parliament's IP regex rejects compressed IPv6; we parse addresses ourselves.
    condition = {
        **GOOD_CONDITION,
        "IpAddress": {"aws:SourceIp": ["2001:db8::/32", "203.0.113.0/24"]},
    }
    assert lint_text(policy(condition=condition)) == []


@pytest.mark.parametrize("value", ["456.456.456.456", "10.0.0.0/33", "not-an-ip"])
def test_invalid_ip(value: str) -> None:
    condition = {**GOOD_CONDITION, "IpAddress": {"aws:SourceIp": value}}
    [finding] = lint_text(policy(condition=condition))
    assert (finding.code, finding.severity) == ("INVALID_IP", "HIGH")
    assert value in finding.message


def test_source_ip_compared_as_a_string() -> None:
    condition = {**GOOD_CONDITION, "IpAddress": {}, "StringEquals": {"aws:SourceIp": "203.0.113.7"}}
    assert "IP_OPERATOR" in codes(policy(condition=condition))


def test_no_source_ip_mentions_the_vpc_endpoint_case() -> None:
    [finding] = lint_text(policy(condition={"StringLike": {"ses:FromAddress": "a@example.com"}}))
    assert finding.code == "NO_SOURCE_IP"
    assert "aws:SourceVpce" in finding.fix
    assert "absent" in finding.fix


def test_source_vpce_or_a_deny_elsewhere_counts_as_a_source_restriction() -> None:
    vpce = {
        "StringLike": {"ses:FromAddress": "a@example.com"},
        "StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"},
    }
    assert lint_text(policy(condition=vpce)) == []
    document = json.loads(policy(condition={"StringLike": {"ses:FromAddress": "a@example.com"}}))
    document["Statement"].append(
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": "203.0.113.7/32"}},
        }
    )
    assert "NO_SOURCE_IP" not in codes(json.dumps(document))


@pytest.mark.parametrize("operator", ["StringLike", "StringEquals"])
def test_single_valued_operator_on_recipients(operator: str) -> None:
    condition = {**GOOD_CONDITION, operator: {"ses:Recipients": "*@example.com"}}
    if operator == "StringLike":
        condition[operator] = {**GOOD_CONDITION["StringLike"], "ses:Recipients": "*@example.com"}
    found = lint_text(policy(condition=condition))
    assert [f.code for f in found] == ["RECIPIENTS_SINGLE_VALUED"]
    assert "ForAllValues:StringLike" in found[0].fix


def test_for_any_value_on_recipients() -> None:
    condition = {**GOOD_CONDITION, "ForAnyValue:StringLike": {"ses:Recipients": "*@example.com"}}
    [finding] = lint_text(policy(condition=condition))
    assert finding.code == "RECIPIENTS_FOR_ANY_VALUE"
    assert "ForAllValues:StringLike" in finding.fix


def test_for_all_values_on_recipients_is_right() -> None:
    condition = {**GOOD_CONDITION, "ForAllValues:StringLike": {"ses:Recipients": "*@example.com"}}
    assert lint_text(policy(condition=condition)) == []


def test_deny_with_for_all_values_not_like_on_recipients() -> None:
    document = json.loads(policy())
    document["Statement"].append(
        {
            "Effect": "Deny",
            "Action": "ses:SendRawEmail",
            "Resource": "*",
            "Condition": {"ForAllValues:StringNotLike": {"ses:Recipients": "*@example.com"}},
        }
    )
    [finding] = lint_text(json.dumps(document))
    assert finding.code == "RECIPIENTS_FOR_ANY_VALUE"
    assert "ForAnyValue:StringNotLike" in finding.fix


def test_resource_star() -> None:
    found = lint_text(policy(resource="*"))
    assert [(f.code, f.severity) for f in found] == [("RESOURCE_WILDCARD", "MEDIUM")]
    assert "iam-policy" in found[0].fix


def test_reading_the_send_quota_on_star_is_not_a_finding() -> None:
    # Pacing needs it; it has no resource-level permissions, so "*" is the only way.
    from_hosts = {"IpAddress": {"aws:SourceIp": "203.0.113.7/32"}}
    assert lint_text(policy("ses:GetSendQuota", "*", from_hosts)) == []
    # Anything else in the same statement is still judged.
    found = codes(policy(["ses:GetSendQuota", "ses:SendBounce"], "*", from_hosts))
    assert "ACTION_BEYOND_SENDING" in found
    assert "RESOURCE_WILDCARD" in found


def test_v2s_send_email_and_get_account_are_what_the_relay_calls() -> None:
    # ses.api: v2 sends with ses:SendEmail and reads the quota with ses:GetAccount.
    assert lint_text(policy("ses:SendEmail")) == []
    from_hosts = {"IpAddress": {"aws:SourceIp": "203.0.113.7/32"}}
    assert lint_text(policy("ses:GetAccount", "*", from_hosts)) == []
    # ses:SendEmail is judged as a sending action: no source restriction is a finding.
    assert "NO_SOURCE_IP" in codes(
        policy("ses:SendEmail", condition={"StringLike": GOOD_CONDITION["StringLike"]})
    )
    assert "RESOURCE_WILDCARD" in codes(policy("ses:SendEmail", "*"))


@pytest.mark.parametrize(
    "action", ["ses:*", "ses:Send*", "*", ["ses:SendRawEmail", "ses:SendBounce"]]
)
def test_actions_beyond_sending(action: Any) -> None:
    found = codes(policy(action=action))
    assert "ACTION_BEYOND_SENDING" in found


def test_ses_star_collapses_parliaments_per_action_findings() -> None:
    found = lint_text(policy(action="ses:*"))
    unknown = [f for f in found if f.code == "UNKNOWN_CONDITION_FOR_ACTION"]
    # One line for ses:FromAddress, not one per SES action.
    assert len(unknown) == 1
    assert "more actions" in unknown[0].message


def test_parliament_finds_malformed_arns_and_unknown_keys() -> None:
    assert "INVALID_ARN" in codes(
        policy(resource="arn:aws:ses:eu-west-3:1234:identity/example.com")
    )
    condition = {**GOOD_CONDITION, "StringEquals": {"ses:Subject": "hello"}}
    [finding] = lint_text(policy(condition=condition))
    assert finding.code == "UNKNOWN_CONDITION_FOR_ACTION"
    assert "ses:Subject" in finding.message
    assert "ses:FromAddress" in finding.fix


def test_lint_files_exit_codes_and_line_format(tmp_path: Path) -> None:
    clean = tmp_path / "clean.json"
    clean.write_text(policy(), encoding="utf-8")
    issue = tmp_path / "issue.json"
    issue.write_text(ISSUE_EXAMPLE, encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "Version": "2012-10-17",\n  "Statement": [],\n}\n', encoding="utf-8")

    out = io.StringIO()
    assert lint_files([clean], out) == EXIT_CLEAN
    assert out.getvalue() == ""

    out = io.StringIO()
    assert lint_files([clean, issue], out) == EXIT_FINDINGS
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{issue}: HIGH NONEXISTENT_CONDITION_KEY: ") for line in lines)
    assert all(" — fix: " in line for line in lines)

    out = io.StringIO()
    assert lint_files([issue, broken, tmp_path / "missing.json"], out) == EXIT_UNUSABLE
    text = out.getvalue()
    # The trailing comma: json reports the position of the closing brace.
    assert f"{broken}:4:1: ERROR INVALID_JSON" in text
    assert f"{tmp_path / 'missing.json'}: ERROR UNREADABLE" in text
    assert "NONEXISTENT_CONDITION_KEY" in text  # the other files are still linted


def test_json_that_is_not_a_policy() -> None:
    assert codes("[1, 2]") == ["NOT_A_POLICY"]


def test_without_parliament_our_checks_still_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("proxy.iam.lint._load_parliament", lambda: None)
    assert codes(ISSUE_EXAMPLE) == ["NONEXISTENT_CONDITION_KEY"] * 2
    clean = tmp_path / "clean.json"
    clean.write_text(policy(), encoding="utf-8")
    assert lint_files([clean], io.StringIO()) == EXIT_CLEAN
    assert "parliament is not installed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("action", "sends"),
    [
        ("SES:SENDRAWEMAIL", True),
        ("ses:Send?awEmail", True),
        ("ses:*Raw*", True),
        ("ses:Send*", True),
        ("ses:Get*", False),
        ("ses:SendRawEmail.", False),
        ("ses:Send.awEmail", False),
        ("ses:SendRaw[E]mail", False),
    ],
)
def test_an_action_pattern_grants_sending_as_iam_reads_its_wildcards(
    action: str, sends: bool
) -> None:
    # IAM's action wildcards are `*` and `?`, case-insensitive; a dot or a bracket is
    # itself. Only a statement that grants sending needs a source restriction.
    unrestricted = {"StringLike": GOOD_CONDITION["StringLike"]}
    found = "NO_SOURCE_IP" in codes(policy(action, "*", unrestricted))
    assert found is sends
