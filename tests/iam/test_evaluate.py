"""The evaluator on its own, against examples from the AWS IAM and SES documentation.

Each case is data: a policy, a request, and the decision the documentation gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.iam.evaluate import Decision, PolicyError, Request, arn_match, evaluate, glob_match

ALLOW, DENY, IMPLICIT = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY
IDENTITY = "arn:aws:ses:us-east-1:123456789012:identity/example.com"


def allow(
    action: Any = "ses:SendRawEmail", resource: Any = "*", **condition: Any
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def send(context: dict[str, Any] | None = None, resource: str = IDENTITY) -> Request:
    return Request("ses:SendRawEmail", resource, context or {})


@dataclass(frozen=True)
class Case:
    name: str
    policy: dict[str, Any] | list[dict[str, Any]]
    request: Request
    expected: Decision


# SES developer guide, "Controlling access to Amazon SES": restrict the sender.
FROM_MARKETING = allow(
    ["ses:SendEmail", "ses:SendRawEmail"],
    **{"StringEquals": {"ses:FromAddress": "marketing@example.com"}},
)
# ... and the recipients: every one of them must be at example.com.
RECIPIENTS_EXAMPLE_COM = allow(
    ["ses:SendEmail", "ses:SendRawEmail"],
    **{"ForAllValues:StringLike": {"ses:Recipients": ["*@example.com"]}},
)
# IAM user guide, "AWS: Denies access to AWS based on the source IP".
DENY_OUTSIDE_IPS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]},
                "Bool": {"aws:ViaAWSService": "false"},
            },
        },
    ],
}
# IAM user guide, multivalued context key examples: Deny ForAllValues:StringNotLike key1*.
DENY_ALL_NOT_KEY1 = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": ["iam:Tag*", "iam:UnTag*"],
            "Resource": ["*"],
            "Condition": {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}},
        },
    ],
}
# ... and Deny ForAnyValue:StringEquals [webserver, environment] on ec2:CreateSnapshot.
DENY_ANY_TAG = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "ec2:CreateSnapshot",
            "Resource": "*",
            "Condition": {
                "ForAnyValue:StringEquals": {"aws:TagKeys": ["webserver", "environment"]}
            },
        },
    ],
}
# IAM condition operators: ...IfExists (instance types) and the Null check.
IF_EXISTS = allow("ec2:*", **{"StringLikeIfExists": {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}})
NULL_TEMPORARY = allow("ec2:*", **{"Null": {"aws:TokenIssueTime": "false"}})
# IAM user guide: Deny requests not sent over TLS.
DENY_INSECURE = [
    allow("s3:*"),
    {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    },
]
# IAM user guide: date window with aws:CurrentTime; numeric s3:max-keys.
DATE_WINDOW = allow(
    "ec2:*",
    **{
        "DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"},
        "DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"},
    },
)
MAX_KEYS = allow("s3:ListBucket", **{"NumericLessThanEquals": {"s3:max-keys": "10"}})
NOT_ACTION = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}],
}
SES_RESOURCE = allow(resource="arn:aws:ses:*:123456789012:identity/example.com")

CASES = [
    Case(
        "sender matches", FROM_MARKETING, send({"ses:FromAddress": "marketing@example.com"}), ALLOW
    ),
    Case(
        "sender differs", FROM_MARKETING, send({"ses:FromAddress": "sales@example.com"}), IMPLICIT
    ),
    Case(
        "StringEquals is case-sensitive",
        FROM_MARKETING,
        send({"ses:FromAddress": "Marketing@example.com"}),
        IMPLICIT,
    ),
    Case("sender key absent", FROM_MARKETING, send(), IMPLICIT),
    Case(
        "context key names ignore case",
        FROM_MARKETING,
        send({"SES:FROMADDRESS": "marketing@example.com"}),
        ALLOW,
    ),
    Case(
        "action names ignore case",
        FROM_MARKETING,
        Request("SES:sendrawemail", IDENTITY, {"ses:FromAddress": "marketing@example.com"}),
        ALLOW,
    ),
    Case(
        "other action",
        FROM_MARKETING,
        Request("ses:SendBounce", IDENTITY, {"ses:FromAddress": "marketing@example.com"}),
        IMPLICIT,
    ),
    Case(
        "all recipients match",
        RECIPIENTS_EXAMPLE_COM,
        send({"ses:Recipients": ["a@example.com", "b@example.com"]}),
        ALLOW,
    ),
    Case(
        "one recipient outside",
        RECIPIENTS_EXAMPLE_COM,
        send({"ses:Recipients": ["a@example.com", "b@example.net"]}),
        IMPLICIT,
    ),
    Case("ForAllValues with the key absent", RECIPIENTS_EXAMPLE_COM, send(), ALLOW),
    Case(
        "ForAllValues with an empty list",
        RECIPIENTS_EXAMPLE_COM,
        send({"ses:Recipients": []}),
        ALLOW,
    ),
    Case(
        "inside the allowed range",
        DENY_OUTSIDE_IPS,
        Request(
            "s3:GetObject",
            "arn:aws:s3:::b/k",
            {"aws:SourceIp": "192.0.2.10", "aws:ViaAWSService": "false"},
        ),
        ALLOW,
    ),
    Case(
        "outside the range",
        DENY_OUTSIDE_IPS,
        Request(
            "s3:GetObject",
            "arn:aws:s3:::b/k",
            {"aws:SourceIp": "198.51.100.1", "aws:ViaAWSService": "false"},
        ),
        DENY,
    ),
    Case(
        "outside but via a service",
        DENY_OUTSIDE_IPS,
        Request(
            "s3:GetObject",
            "arn:aws:s3:::b/k",
            {"aws:SourceIp": "198.51.100.1", "aws:ViaAWSService": "true"},
        ),
        ALLOW,
    ),
    Case(
        "NotIpAddress with the key absent holds",
        DENY_OUTSIDE_IPS,
        Request("s3:GetObject", "arn:aws:s3:::b/k", {"aws:ViaAWSService": "false"}),
        DENY,
    ),
    Case(
        "tag key1:legal is not denied",
        DENY_ALL_NOT_KEY1,
        Request("iam:TagUser", "*", {"aws:TagKeys": ["key1:legal"]}),
        ALLOW,
    ),
    Case(
        "tags key1:hr key1:personnel not denied",
        DENY_ALL_NOT_KEY1,
        Request("iam:TagUser", "*", {"aws:TagKeys": ["key1:hr", "key1:personnel"]}),
        ALLOW,
    ),
    Case(
        "tag key2:audit is denied",
        DENY_ALL_NOT_KEY1,
        Request("iam:TagUser", "*", {"aws:TagKeys": ["key2:audit"]}),
        DENY,
    ),
    Case("no tags: ForAllValues denies", DENY_ALL_NOT_KEY1, Request("iam:TagUser", "*", {}), DENY),
    Case(
        "ForAnyValue one tag matches",
        DENY_ANY_TAG,
        Request("ec2:CreateSnapshot", "*", {"aws:TagKeys": ["webserver"]}),
        DENY,
    ),
    Case(
        "ForAnyValue several tags",
        DENY_ANY_TAG,
        Request("ec2:CreateSnapshot", "*", {"aws:TagKeys": ["environment", "webserver", "test"]}),
        DENY,
    ),
    Case(
        "ForAnyValue no match",
        DENY_ANY_TAG,
        Request("ec2:CreateSnapshot", "*", {"aws:TagKeys": ["test"]}),
        ALLOW,
    ),
    Case("ForAnyValue key absent", DENY_ANY_TAG, Request("ec2:CreateSnapshot", "*", {}), ALLOW),
    Case(
        "IfExists key present and allowed",
        IF_EXISTS,
        Request("ec2:RunInstances", "*", {"ec2:InstanceType": "t2.micro"}),
        ALLOW,
    ),
    Case(
        "IfExists key present, other value",
        IF_EXISTS,
        Request("ec2:RunInstances", "*", {"ec2:InstanceType": "c5.large"}),
        IMPLICIT,
    ),
    Case("IfExists key absent", IF_EXISTS, Request("ec2:DescribeImages", "*", {}), ALLOW),
    Case(
        "Null false: key present",
        NULL_TEMPORARY,
        Request("ec2:RunInstances", "*", {"aws:TokenIssueTime": "2024-01-01T00:00:00Z"}),
        ALLOW,
    ),
    Case("Null false: key absent", NULL_TEMPORARY, Request("ec2:RunInstances", "*", {}), IMPLICIT),
    Case(
        "Bool deny over plain http",
        DENY_INSECURE,
        Request("s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": False}),
        DENY,
    ),
    Case(
        "Bool over TLS",
        DENY_INSECURE,
        Request("s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": True}),
        ALLOW,
    ),
    Case(
        "inside the date window",
        DATE_WINDOW,
        Request("ec2:RunInstances", "*", {"aws:CurrentTime": "2020-05-01T12:00:00Z"}),
        ALLOW,
    ),
    Case(
        "after the date window",
        DATE_WINDOW,
        Request("ec2:RunInstances", "*", {"aws:CurrentTime": "2020-07-01T00:00:00Z"}),
        IMPLICIT,
    ),
    Case(
        "max-keys within",
        MAX_KEYS,
        Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:max-keys": 10}),
        ALLOW,
    ),
    Case(
        "max-keys over",
        MAX_KEYS,
        Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:max-keys": 11}),
        IMPLICIT,
    ),
    Case("NotAction allows other services", NOT_ACTION, Request("s3:GetObject", "*", {}), ALLOW),
    Case("NotAction excludes iam", NOT_ACTION, Request("iam:CreateUser", "*", {}), IMPLICIT),
    Case("resource region wildcard", SES_RESOURCE, send(resource=IDENTITY), ALLOW),
    Case(
        "resource other identity",
        SES_RESOURCE,
        send(resource=IDENTITY.replace("example.com", "example.net")),
        IMPLICIT,
    ),
    Case(
        "resource other account",
        SES_RESOURCE,
        send(resource=IDENTITY.replace("123456789012", "210987654321")),
        IMPLICIT,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_documented_example(case: Case) -> None:
    assert evaluate(case.policy, case.request) is case.expected


def test_single_valued_operator_on_a_list_passes_if_any_value_matches() -> None:
    # The documented pitfall that `lint-policy` warns about: a plain StringLike on
    # ses:Recipients lets a list through as soon as one address matches.
    policy = allow(**{"StringLike": {"ses:Recipients": "*@example.com"}})
    request = send({"ses:Recipients": ["a@example.com", "victim@elsewhere.net"]})
    assert evaluate(policy, request) is ALLOW


def test_for_any_value_on_recipients_passes_a_mixed_list() -> None:
    policy = allow(**{"ForAnyValue:StringLike": {"ses:Recipients": "*@example.com"}})
    assert evaluate(policy, send({"ses:Recipients": ["a@example.com", "x@evil.net"]})) is ALLOW
    assert evaluate(policy, send()) is IMPLICIT


def test_nonexistent_key_in_an_allow_denies_every_send() -> None:
    policy = allow(**{"Bool": {"ses:RequireTLS": "true"}})
    assert evaluate(policy, send({"ses:FromAddress": "a@example.com"})) is IMPLICIT


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("*@example.com", "a@example.com", True),
        ("*@example.com", "a@example.com.evil", False),
        ("a*b*c", "aXbYbZc", True),
        ("a*b*c", "aXbYbZ", False),
        ("**", "x", True),
        ("A", "a", False),
    ],
)
def test_glob(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def test_glob_stays_fast_on_many_stars() -> None:
    assert not glob_match("*a" * 40 + "b", "a" * 200)


def test_arn_wildcards_do_not_cross_segments() -> None:
    assert arn_match("arn:aws:ses:*:123456789012:identity/*", IDENTITY)
    assert not arn_match("arn:aws:ses:eu-*:123456789012:identity/*", IDENTITY)
    # The resource segment may contain ":" and "/": the wildcard spans them there.
    assert arn_match("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c")


@pytest.mark.parametrize(
    "policy",
    [
        {"Statement": [{"Effect": "Permit", "Action": "*", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "*"}]},
        allow(**{"StringFuzzy": {"a:b": "c"}}),
        allow(**{"IpAddress": {"aws:SourceIp": "456.456.456.456"}}),
        allow(resource="arn:aws:s3:::${aws:username}/*"),
    ],
)
def test_policies_iam_would_refuse_raise(policy: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        evaluate(policy, send({"aws:SourceIp": "192.0.2.1"}))
