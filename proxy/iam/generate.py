"""The least-privilege IAM policy for a config: JSON, CloudFormation or Terraform.

`build_policy` is pure (settings and an account id in, a policy document out); the
wiring passes its JSON as the AssumeRole session policy, and `iam-policy` prints it.
The only I/O is `caller_account_id` (STS GetCallerIdentity, used by the JSON format
when `ses.account_id` is not set) and the `--write-deploy` regeneration path.

What the policy allows, and why:
- only the one call the proxy makes to send, `ses:SendRawEmail` (`ses.api: v1`) or
  `ses:SendEmail` (v2), and, in a second statement on "*", the read-only call pacing
  needs to follow the account's MaxSendRate (`rate.max_send_rate: auto`):
  `ses:GetSendQuota` (v1) or `ses:GetAccount` (v2);
- on the identities the allowed senders can need: SES authorizes a send against the
  address identity when that address is verified, else against its domain's
  identity, so each pattern gives both `identity/PATTERN` and `identity/DOMAIN`
  (an IAM resource pattern: the sender patterns' `*`/`?` mean the same there);
  plus the configuration set the proxy always names, when one is configured;
- `ses:FromAddress` StringLike the allowed senders, `ses:Recipients`
  ForAllValues:StringLike the allowed recipients (omitted when any recipient is
  allowed), `aws:SourceIp` the host's CIDRs and `aws:SecureTransport` true.
The proxy sends Source and Destinations lowercased and the patterns are lowercased
by settings, so IAM's case-sensitive StringLike judges what the local policy judged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxy.settings import ConfigError, Settings, load_settings

# Per `ses.api`: the sending action, and the read-only quota action, which has no
# resource-level permissions (its Resource can only be "*").
SEND_ACTIONS = {"v1": "ses:SendRawEmail", "v2": "ses:SendEmail"}
QUOTA_ACTIONS = {"v1": "ses:GetSendQuota", "v2": "ses:GetAccount"}


def _sid(action: str) -> str:
    return "SesProxy" + action.removeprefix("ses:")


# Placeholders used when the account is not known: the template resolves them
# where it is deployed, so it needs no STS call to be generated.
_CFN_ACCOUNT, _CFN_PARTITION = "${AWS::AccountId}", "${AWS::Partition}"
_TF_ACCOUNT = "${data.aws_caller_identity.current.account_id}"
_TF_PARTITION = "${data.aws_partition.current.partition}"

_WILDCARDS = ("*", "?")


def partition_for(region: str) -> str:
    """The ARN partition of a region (aws, aws-cn, aws-us-gov)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _domain_pattern(pattern: str) -> str | None:
    """The domain part of `local@domain`, or None when the pattern has no single '@'
    and so could match an address at any domain."""
    if pattern.count("@") != 1:
        return None
    return pattern.partition("@")[2] or None


def identity_names(sender_patterns: Sequence[str]) -> list[str]:
    """The SES identity names (IAM resource patterns) the senders may need, in order."""
    names: list[str] = []
    for pattern in sender_patterns:
        domain = _domain_pattern(pattern)
        if domain is None or domain.strip("*") == "":
            # Any domain could be the sender's: only "every identity" covers it.
            return ["*"]
        names.append(pattern)  # the address identity, if that address is verified
        names.append(domain)  # the domain identity otherwise
    return list(dict.fromkeys(names))


def sender_keys(settings: Settings) -> dict[str, str]:
    """Every sender pattern of `policy` and the clients, with the keys that name it."""
    named: dict[str, list[str]] = {}
    for pattern in settings.policy.allowed_senders:
        named.setdefault(pattern, []).append("policy.allowed_senders")
    for index, client in enumerate(settings.clients):
        for pattern in client.allowed_senders:
            named.setdefault(pattern, []).append(f"clients[{index}].allowed_senders")
    return {pattern: " and ".join(dict.fromkeys(keys)) for pattern, keys in named.items()}


def all_senders(settings: Settings) -> list[str]:
    """The sender patterns of `policy` and of every client: they all share one role, so
    IAM allows their union and the relay draws each client's line locally."""
    return list(sender_keys(settings))


def all_recipients(settings: Settings) -> list[str]:
    """The recipient patterns of `policy` and of every client (its own, or the policy's)."""
    patterns = list(settings.policy.allowed_recipients)
    for client in settings.clients:
        if client.allowed_recipients is not None:
            patterns += client.allowed_recipients
    return list(dict.fromkeys(patterns))


def configuration_set_keys(settings: Settings) -> dict[str, str]:
    """Every configuration set a message may be sent with, and the keys that name it."""
    named: dict[str, list[str]] = {}
    if settings.ses.configuration_set is not None:
        named.setdefault(settings.ses.configuration_set, []).append("ses.configuration_set")
    for name in settings.policy.allowed_configuration_sets:
        named.setdefault(name, []).append("policy.allowed_configuration_sets")
    for index, client in enumerate(settings.clients):
        if client.configuration_set is not None:
            named.setdefault(client.configuration_set, []).append(
                f"clients[{index}].configuration_set"
            )
        for name in client.allowed_configuration_sets:
            named.setdefault(name, []).append(f"clients[{index}].allowed_configuration_sets")
    return {name: " and ".join(dict.fromkeys(keys)) for name, keys in named.items()}


def all_configuration_sets(settings: Settings) -> list[str]:
    """Every configuration set a message may be sent with: ses.configuration_set, each
    client's own, and every one an X-SES-CONFIGURATION-SET header may choose."""
    return list(configuration_set_keys(settings))


def policy_warnings(settings: Settings, *, allow_any_source_ip: bool = False) -> list[str]:
    """Why the generated policy is wider than it could be, for stderr."""
    warnings = []
    for pattern in all_senders(settings):
        domain = _domain_pattern(pattern)
        if domain is None or domain.strip("*") == "":
            warnings.append(
                f"policy.allowed_senders: {pattern!r} does not name a domain, so the policy "
                "allows every SES identity of the account (identity/*); ses:FromAddress "
                "still restricts the sender"
            )
        elif any(w in domain for w in _WILDCARDS):
            warnings.append(
                f"policy.allowed_senders: {pattern!r} has a wildcard domain, so the resource "
                f"is the pattern identity/{domain}"
            )
    if not settings.ses.source_ips and allow_any_source_ip:
        warnings.append(
            "ses.source_ips is empty and --allow-any-source-ip was given: these credentials "
            "will send from anywhere"
        )
    return warnings


def build_policy(
    settings: Settings,
    account_id: str,
    *,
    allow_any_source_ip: bool = False,
    partition: str | None = None,
) -> dict[str, Any]:
    """The identity policy allowing exactly the sends this config allows.

    Raises ConfigError when ses.source_ips is empty, unless allow_any_source_ip.
    """
    ses = settings.ses
    if not ses.source_ips and not allow_any_source_ip:
        raise ConfigError(
            "ses.source_ips: empty, so the policy would let these credentials send from "
            "anywhere; list this host's public egress CIDRs (e.g. [203.0.113.7/32]), or "
            "pass --allow-any-source-ip"
        )
    arn = f"arn:{partition or partition_for(ses.region)}:ses:{ses.region}:{account_id}"
    senders = all_senders(settings)
    resources = [f"{arn}:identity/{name}" for name in identity_names(senders)]
    # Sending authorization: the other account's identity is the resource sent on.
    for identity_arn in (ses.source_arn, ses.from_arn, ses.return_path_arn):
        if identity_arn is not None and identity_arn not in resources:
            resources.append(identity_arn)
    resources += [f"{arn}:configuration-set/{name}" for name in all_configuration_sets(settings)]

    condition: dict[str, dict[str, Any]] = {
        "StringLike": {"ses:FromAddress": senders},
    }
    recipients = all_recipients(settings)
    if "*" not in recipients:
        # ForAllValues: every recipient must match. A plain StringLike on this
        # multivalued key would pass a list in which a single address matches.
        condition["ForAllValues:StringLike"] = {"ses:Recipients": list(recipients)}
    if ses.source_ips:
        condition["IpAddress"] = {"aws:SourceIp": [str(net) for net in ses.source_ips]}
    condition["Bool"] = {"aws:SecureTransport": "true"}
    quota_condition = {k: v for k, v in condition.items() if k in ("IpAddress", "Bool")}
    send_action, quota_action = SEND_ACTIONS[ses.api], QUOTA_ACTIONS[ses.api]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": _sid(send_action),
                "Effect": "Allow",
                "Action": send_action,
                "Resource": resources,
                "Condition": condition,
            },
            {
                "Sid": _sid(quota_action),
                "Effect": "Allow",
                "Action": quota_action,
                "Resource": "*",
                "Condition": quota_condition,
            },
        ],
    }


# AWS's limit on the plaintext of an AssumeRole session policy.
SESSION_POLICY_MAX_CHARS = 2048


def session_policy(settings: Settings) -> str | None:
    """With ses.role_arn, the policy JSON to pass to AssumeRole as the session policy.

    Whatever the role itself grants, credentials assumed with it can only do what
    this config allows: the local policy and IAM judge the same patterns.
    """
    role_arn = settings.ses.role_arn
    if role_arn is None:
        return None
    account_id = settings.ses.account_id or role_arn.split(":")[4]
    text = json.dumps(
        build_policy(settings, account_id, allow_any_source_ip=True), separators=(",", ":")
    )
    if len(text) > SESSION_POLICY_MAX_CHARS:
        raise ConfigError(
            f"policy.allowed_senders: the session policy for ses.role_arn is {len(text)} "
            f"characters, AWS accepts {SESSION_POLICY_MAX_CHARS}; use fewer, broader patterns"
        )
    return text


def render_json(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


# ---------------------------------------------------------------------------
# CloudFormation
# ---------------------------------------------------------------------------


def render_cloudformation(
    settings: Settings, account_id: str | None, *, allow_any_source_ip: bool = False
) -> str:
    """A template with the role (trusting a service, EC2 by default), the policy inline
    and an instance profile. Without an account id the ARNs use ${AWS::AccountId}."""
    if account_id is None:
        policy = build_policy(
            settings,
            _CFN_ACCOUNT,
            allow_any_source_ip=allow_any_source_ip,
            partition=_CFN_PARTITION,
        )
        statement = policy["Statement"][0]
        # Only our placeholders contain "${": settings refuses it in patterns.
        statement["Resource"] = [{"Fn::Sub": r} if "${" in r else r for r in statement["Resource"]]
    else:
        policy = build_policy(settings, account_id, allow_any_source_ip=allow_any_source_ip)
    api = settings.ses.api
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"ses-proxy: a role allowed only {SEND_ACTIONS[api]} for the configured senders, "
            f"recipients and source IPs (and {QUOTA_ACTIONS[api]}, to pace to the account's "
            "rate), and its instance profile. Generated by "
            "`ses-proxy iam-policy --format cloudformation`: regenerate, do not edit."
        ),
        "Parameters": {
            "TrustedServicePrincipal": {
                "Type": "String",
                "Default": "ec2.amazonaws.com",
                "Description": "The service that may assume the role (the proxy's host).",
            }
        },
        "Resources": {
            "SesProxyRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Description": (
                        f"ses-proxy: sends through SES {SEND_ACTIONS[api].removeprefix('ses:')} "
                        "only"
                    ),
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": {"Ref": "TrustedServicePrincipal"}},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    },
                    "Policies": [{"PolicyName": "ses-proxy-send", "PolicyDocument": policy}],
                },
            },
            "SesProxyInstanceProfile": {
                "Type": "AWS::IAM::InstanceProfile",
                "Properties": {"Roles": [{"Ref": "SesProxyRole"}]},
            },
        },
        "Outputs": {
            "RoleArn": {"Value": {"Fn::GetAtt": ["SesProxyRole", "Arn"]}},
            "InstanceProfileArn": {"Value": {"Fn::GetAtt": ["SesProxyInstanceProfile", "Arn"]}},
        },
    }
    return json.dumps(template, indent=2) + "\n"


# ---------------------------------------------------------------------------
# Terraform
# ---------------------------------------------------------------------------


def _hcl_string(text: str, interpolations: Sequence[str] = ()) -> str:
    """A quoted HCL string: escapes, and `${`/`%{` doubled so that nothing from the
    config is read as a template; the given interpolations stay live."""
    found = [(text.find(live), live) for live in interpolations if live in text]
    if found:
        index, live = min(found)
        head, tail = text[:index], text[index + len(live) :]
        return _hcl_string(head)[:-1] + live + _hcl_string(tail, interpolations)[1:]
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif not char.isprintable() or not char.isascii():
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    escaped = "".join(out).replace("${", "$${").replace("%{", "%%{")
    return f'"{escaped}"'


def _hcl_value(value: Any, indent: int, interpolations: Sequence[str]) -> str:
    pad = "  " * (indent + 1)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return _hcl_string(value, interpolations)
    if isinstance(value, Mapping):
        items = [
            f"{pad}{_hcl_string(str(k))} = {_hcl_value(v, indent + 1, interpolations)}"
            for k, v in value.items()
        ]
        return "{\n" + "\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list | tuple):
        items = [f"{pad}{_hcl_value(v, indent + 1, interpolations)}," for v in value]
        return "[\n" + "\n".join(items) + "\n" + "  " * indent + "]"
    raise TypeError(f"cannot write {type(value).__name__} as HCL")


def render_terraform(
    settings: Settings, account_id: str | None, *, allow_any_source_ip: bool = False
) -> str:
    """aws_iam_policy + role + attachment + instance profile. Without an account id
    the ARNs use the aws_caller_identity / aws_partition data sources."""
    header = [
        "# ses-proxy: generated by `ses-proxy iam-policy --format terraform`. Regenerate it",
        "# from the config rather than editing it: the proxy checks the same rules locally.",
        "",
    ]
    interpolations: tuple[str, ...] = ()
    if account_id is None:
        policy = build_policy(
            settings, _TF_ACCOUNT, allow_any_source_ip=allow_any_source_ip, partition=_TF_PARTITION
        )
        interpolations = (_TF_ACCOUNT, _TF_PARTITION)
        header += [
            'data "aws_caller_identity" "current" {}',
            "",
            'data "aws_partition" "current" {}',
            "",
        ]
    else:
        policy = build_policy(settings, account_id, allow_any_source_ip=allow_any_source_ip)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "${var.trusted_service_principal}"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    body = f"""variable "trusted_service_principal" {{
  description = "The service that may assume the role (the proxy's host)."
  type        = string
  default     = "ec2.amazonaws.com"
}}

resource "aws_iam_policy" "ses_proxy_send" {{
  name_prefix = "ses-proxy-send-"
  description = "ses-proxy: {SEND_ACTIONS[settings.ses.api]} for the configured senders only"
  policy = jsonencode({_hcl_value(policy, 1, interpolations)})
}}

resource "aws_iam_role" "ses_proxy" {{
  name_prefix          = "ses-proxy-"
  max_session_duration = 3600
  assume_role_policy = jsonencode({_hcl_value(trust, 1, ("${var.trusted_service_principal}",))})
}}

resource "aws_iam_role_policy_attachment" "ses_proxy_send" {{
  role       = aws_iam_role.ses_proxy.name
  policy_arn = aws_iam_policy.ses_proxy_send.arn
}}

resource "aws_iam_instance_profile" "ses_proxy" {{
  name_prefix = "ses-proxy-"
  role        = aws_iam_role.ses_proxy.name
}}

output "role_arn" {{
  value = aws_iam_role.ses_proxy.arn
}}

output "instance_profile_arn" {{
  value = aws_iam_instance_profile.ses_proxy.arn
}}
"""
    return "\n".join(header) + "\n" + body


# ---------------------------------------------------------------------------
# I/O: the account id, the command line, the deploy/ files
# ---------------------------------------------------------------------------


async def caller_account_id(region: str) -> str:
    """The account of the credentials at hand (STS GetCallerIdentity).

    botocore resolves the endpoint itself, so AWS_ENDPOINT_URL_STS reaches a fake.
    """
    from aiobotocore.session import get_session

    try:
        async with get_session().create_client("sts", region_name=region) as sts:
            identity = await sts.get_caller_identity()
    except Exception as error:  # any botocore failure means the same to the operator
        raise ConfigError(
            f"ses.account_id: not set, and STS GetCallerIdentity failed "
            f"({type(error).__name__}); set ses.account_id or provide credentials"
        ) from None
    return str(identity["Account"])


async def render_for_cli(settings: Settings, fmt: str, *, allow_any_source_ip: bool = False) -> str:
    """The text `ses-proxy iam-policy` prints; warnings go to stderr."""
    # Refuse before any network call: the missing source IPs are the bigger problem.
    build_policy(settings, "000000000000", allow_any_source_ip=allow_any_source_ip)
    for warning in policy_warnings(settings, allow_any_source_ip=allow_any_source_ip):
        print(f"ses-proxy: warning: {warning}", file=sys.stderr)
    account = settings.ses.account_id
    if fmt == "cloudformation":
        return render_cloudformation(settings, account, allow_any_source_ip=allow_any_source_ip)
    if fmt == "terraform":
        return render_terraform(settings, account, allow_any_source_ip=allow_any_source_ip)
    if fmt != "json":
        raise ValueError(f"unknown format {fmt!r}")
    if account is None:
        account = await caller_account_id(settings.ses.region)
    return render_json(build_policy(settings, account, allow_any_source_ip=allow_any_source_ip))


def deploy_files(settings: Settings, account_id: str) -> dict[str, str]:
    """deploy/iam/'s files for a config: name -> content. Pure.

    The template and the Terraform take the account they are deployed in (an
    example config's account id is a placeholder); policy.json needs a literal one.
    """
    return {
        "policy.json": render_json(build_policy(settings, account_id)),
        "cloudformation.json": render_cloudformation(settings, None),
        "main.tf": render_terraform(settings, None),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m proxy.iam.generate --write-deploy`: regenerate deploy/iam/."""
    parser = argparse.ArgumentParser(prog="python -m proxy.iam.generate")
    parser.add_argument("--write-deploy", action="store_true", required=True)
    parser.add_argument("-c", "--config", type=Path, default=Path("config/ses.example.yaml"))
    parser.add_argument("--out", type=Path, default=Path("deploy/iam"))
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        account = settings.ses.account_id or asyncio.run(caller_account_id(settings.ses.region))
        files = deploy_files(settings, account)
    except ConfigError as error:
        print(f"ses-proxy: config error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
