"""`ses-proxy lint-policy FILE…`: what is wrong with an SES sending policy, and the fix.

Two sources of findings, one line each (`FILE: SEVERITY CODE: message — fix: ...`):
- parliament (Duo Labs' IAM linter, with AWS's action/condition-key database):
  unknown condition keys for the action, malformed ARNs, unknown actions...
  Two of its results are replaced, not repeated: its generic "unknown condition"
  for keys we know better (below), and its IP type check, whose pattern rejects
  compressed IPv6 CIDRs such as 2001:db8::/32 (ours parses them properly).
- our own checks for the mistakes seen in SES policies in the field: keys that do
  not exist (ses:RequireTLS, ses:MessageSize: an Allow naming them never matches,
  so it denies every send), bad CIDRs, no aws:SourceIp, single-valued or
  ForAnyValue operators on the multivalued ses:Recipients, wildcard resources,
  actions beyond sending (ses:GetSendQuota, or v2's ses:GetAccount, read-only, is what
  pacing needs, and its Resource can only be "*": neither is a finding).

Exit codes: 0 clean, 1 findings, 2 a file unreadable or not JSON (with line:col).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from proxy.addresses import string_like

EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2

# ses:SendEmail is SES v2's SendEmail, which `ses.api: v2` sends raw messages with.
SEND_ACTIONS = ("ses:SendRawEmail", "ses:SendEmail")
# Read-only actions the proxy calls besides sending; none has resource-level permissions.
READ_ACTIONS = ("ses:GetSendQuota", "ses:GetAccount")
SES_SEND_KEYS = (
    "ses:FromAddress, ses:FromDisplayName, ses:Recipients, ses:FeedbackAddress, "
    "ses:ApiVersion and the globals aws:SourceIp, aws:SecureTransport, aws:SourceVpce"
)


@dataclass(frozen=True)
class Finding:
    severity: str  # HIGH, MEDIUM, LOW (CRITICAL from parliament)
    code: str
    message: str
    fix: str

    def render(self, file: str) -> str:
        """One line, whatever the policy's strings (a Sid, an operator) hold."""
        line = f"{file}: {self.severity} {self.code}: {self.message} — fix: {self.fix}"
        return "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line
        )


# Keys people write into SES policies that SES never puts in a request context.
_NONEXISTENT_KEYS: dict[str, str] = {
    "ses:requiretls": (
        "remove it; require TLS to recipients with the configuration set's TLS policy "
        "(TlsPolicy: Require) named in ses.configuration_set, and TLS to SES with "
        '"Bool": {"aws:SecureTransport": "true"}'
    ),
    "ses:messagesize": (
        "remove it; IAM never sees the size: the proxy enforces policy.max_message_bytes "
        "(SES caps SendRawEmail at 10 MB)"
    ),
    "ses:sourceip": 'use the global key "IpAddress": {"aws:SourceIp": [...]}',
    "ses:toaddress": 'use "ForAllValues:StringLike": {"ses:Recipients": [...]}',
    "ses:destinations": 'use "ForAllValues:StringLike": {"ses:Recipients": [...]}',
}
_SOURCE_KEYS = ("aws:sourceip", "aws:sourcevpce", "aws:vpcsourceip")
_IP_KEYS = ("aws:sourceip", "aws:vpcsourceip")


@dataclass(frozen=True)
class _Operator:
    qualifier: str  # "", "forallvalues", "foranyvalue"
    base: str  # lowercase, without IfExists
    if_exists: bool

    @property
    def negated(self) -> bool:
        return "not" in self.base  # stringnotlike, notipaddress, arnnotequals...

    @property
    def holds_when_key_absent(self) -> bool:
        return self.if_exists or self.negated or self.qualifier == "forallvalues"


def _operator(name: str) -> _Operator:
    qualifier, _, base = name.rpartition(":")
    base = base.lower()
    if_exists = base.endswith("ifexists")
    return _Operator(qualifier.lower(), base.removesuffix("ifexists"), if_exists)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = document.get("Statement")
    return [s for s in _as_list(raw) if isinstance(s, Mapping)]


def _conditions(statement: Mapping[str, Any]) -> Iterable[tuple[str, _Operator, str, list[Any]]]:
    """(operator name, parsed operator, lowercase key, values) for each condition."""
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return
    for name, block in condition.items():
        if isinstance(block, Mapping):
            for key, values in block.items():
                yield str(name), _operator(str(name)), str(key).lower(), _as_list(values)


def _label(index: int, statement: Mapping[str, Any]) -> str:
    sid = statement.get("Sid")
    return f"Statement[{index}]" + (f" ({sid})" if sid else "")


def _grants_sending(statement: Mapping[str, Any]) -> bool:
    if "NotAction" in statement:
        return True
    actions = [str(a) for a in _as_list(statement.get("Action", []))]
    # IAM reads an action's wildcards as StringLike does (`*`, `?`, case-insensitive).
    return any(string_like(a, send) for a in actions for send in SEND_ACTIONS)


def check_document(document: Any) -> list[Finding]:
    """Our own checks on a parsed policy document. Pure."""
    if not isinstance(document, Mapping) or "Statement" not in document:
        return [
            Finding(
                "HIGH",
                "NOT_A_POLICY",
                "the file is JSON but not an IAM policy document",
                'write {"Version": "2012-10-17", "Statement": [...]}',
            )
        ]
    findings: list[Finding] = []
    statements = _statements(document)
    # A Deny on aws:SourceIp / aws:SourceVpce elsewhere restricts the Allows as well.
    source_limited = any(
        key in _SOURCE_KEYS
        for statement in statements
        if statement.get("Effect") == "Deny"
        for _name, _op, key, _values in _conditions(statement)
    )
    for index, statement in enumerate(statements):
        label = _label(index, statement)
        allow = statement.get("Effect") == "Allow"
        findings += _check_conditions(label, statement, allow=allow)
        if not allow:
            continue
        findings += _check_actions(label, statement)
        findings += _check_resources(label, statement)
        if _grants_sending(statement) and not source_limited:
            keys = {key for _name, _op, key, _values in _conditions(statement)}
            if not keys & set(_SOURCE_KEYS):
                findings.append(
                    Finding(
                        "MEDIUM",
                        "NO_SOURCE_IP",
                        f"{label} allows sending from anywhere: a leaked key works from any host",
                        'add "IpAddress": {"aws:SourceIp": [...]} with the proxy host\'s '
                        "egress CIDRs (ses.source_ips); through a VPC interface endpoint "
                        'aws:SourceIp is absent, so use "StringEquals": {"aws:SourceVpce": '
                        '"vpce-..."} there instead',
                    )
                )
    return findings


def _check_actions(label: str, statement: Mapping[str, Any]) -> list[Finding]:
    fix = (
        "allow only ses:SendRawEmail (the one call the proxy makes; ses:SendEmail with ses.api: v2)"
    )
    if "NotAction" in statement:
        return [
            Finding(
                "HIGH",
                "ACTION_BEYOND_SENDING",
                f"{label} uses NotAction in an Allow: every action not listed is allowed",
                fix,
            )
        ]
    findings = []
    allowed = {a.lower() for a in SEND_ACTIONS + READ_ACTIONS}
    for action in _as_list(statement.get("Action", [])):
        text = str(action)
        if text.lower() in allowed:
            continue
        wild = "*" in text or "?" in text
        findings.append(
            Finding(
                "HIGH" if wild else "MEDIUM",
                "ACTION_BEYOND_SENDING",
                f"{label} allows {text!r}"
                + (", which covers far more than sending" if wild else ", which is not sending"),
                fix,
            )
        )
    return findings


def _check_resources(label: str, statement: Mapping[str, Any]) -> list[Finding]:
    fix = (
        "list the identity ARNs (identity/DOMAIN, identity/ADDRESS) and the "
        "configuration-set ARN: `ses-proxy iam-policy -c FILE` prints them"
    )
    if "NotResource" in statement:
        return [
            Finding(
                "MEDIUM",
                "RESOURCE_WILDCARD",
                f"{label} uses NotResource in an Allow: every other resource is allowed",
                fix,
            )
        ]
    actions = {str(a).lower() for a in _as_list(statement.get("Action", []))}
    if actions and actions <= {a.lower() for a in READ_ACTIONS}:
        return []  # "*" is the only resource these actions accept
    findings = []
    for resource in _as_list(statement.get("Resource", [])):
        text = str(resource)
        parts = text.split(":", 5)
        if text == "*" or (len(parts) == 6 and parts[5] in ("*", "identity/*")):
            findings.append(
                Finding(
                    "MEDIUM" if text == "*" else "LOW",
                    "RESOURCE_WILDCARD",
                    f"{label} allows the resource {text!r}: any identity"
                    + (" or configuration set" if parts[-1] != "identity/*" else "")
                    + " of the account may be used",
                    fix,
                )
            )
    return findings


def _check_conditions(label: str, statement: Mapping[str, Any], *, allow: bool) -> list[Finding]:
    findings = []
    for name, op, key, values in _conditions(statement):
        if key in _NONEXISTENT_KEYS:
            if op.holds_when_key_absent:
                effect = "so this condition always holds and checks nothing"
            elif allow:
                effect = (
                    "so this condition never holds: the statement allows nothing "
                    "and every send is denied"
                )
            else:
                effect = "so this condition never holds and the statement denies nothing"
            findings.append(
                Finding(
                    "HIGH",
                    "NONEXISTENT_CONDITION_KEY",
                    f"{label}: {key_name(statement, key)} does not exist in SES requests, {effect}",
                    _NONEXISTENT_KEYS[key],
                )
            )
        if key in _IP_KEYS or op.base in ("ipaddress", "notipaddress"):
            if key in _IP_KEYS and op.base not in ("ipaddress", "notipaddress", "null"):
                findings.append(
                    Finding(
                        "MEDIUM",
                        "IP_OPERATOR",
                        f"{label}: {name} compares {key_name(statement, key)} as text",
                        'use "IpAddress" (or "NotIpAddress" in a Deny) with CIDRs',
                    )
                )
            elif op.base != "null":
                findings += _check_ips(label, values)
        if key == "ses:recipients":
            findings += _check_recipients(label, name, op, allow=allow)
    return findings


def key_name(statement: Mapping[str, Any], lower_key: str) -> str:
    """The key as the author spelled it (keys are case-insensitive)."""
    for _operator_name, block in (statement.get("Condition") or {}).items():
        if isinstance(block, Mapping):
            for key in block:
                if str(key).lower() == lower_key:
                    return str(key)
    return lower_key


def _check_ips(label: str, values: Sequence[Any]) -> list[Finding]:
    findings = []
    for value in values:
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            findings.append(
                Finding(
                    "HIGH",
                    "INVALID_IP",
                    f"{label}: {value!r} is not an IP address or CIDR, so it never matches "
                    "(or IAM refuses the policy)",
                    "write a CIDR such as 203.0.113.7/32: the proxy host's public egress address",
                )
            )
    return findings


def _check_recipients(label: str, name: str, op: _Operator, *, allow: bool) -> list[Finding]:
    positive = not op.negated
    if op.base == "null":
        return []
    if op.qualifier == "":
        if allow and positive:
            message = (
                f"{label}: {name} on the multivalued ses:Recipients holds when any one "
                "recipient matches: a list mixing an allowed and any other address passes"
            )
            fix = 'use "ForAllValues:StringLike": every recipient must match'
        else:
            message = (
                f"{label}: {name} on the multivalued ses:Recipients is a single-valued "
                "operator: what it does with several recipients is easy to misread"
            )
            fix = 'in an Allow use "ForAllValues:StringLike"; in a Deny "ForAnyValue:StringNotLike"'
        return [Finding("HIGH", "RECIPIENTS_SINGLE_VALUED", message, fix)]
    if op.qualifier == "foranyvalue" and allow and positive:
        return [
            Finding(
                "HIGH",
                "RECIPIENTS_FOR_ANY_VALUE",
                f"{label}: {name} on ses:Recipients allows any recipient list that "
                "contains one allowed address",
                'use "ForAllValues:StringLike": every recipient must match',
            )
        ]
    if op.qualifier == "forallvalues" and not allow and op.negated:
        return [
            Finding(
                "HIGH",
                "RECIPIENTS_FOR_ANY_VALUE",
                f"{label}: {name} in a Deny denies only when every recipient is outside "
                "the list: one allowed address lets all the others through",
                'use "ForAnyValue:StringNotLike" in the Deny',
            )
        ]
    return []


# ---------------------------------------------------------------------------
# parliament
# ---------------------------------------------------------------------------

_PARLIAMENT_FIXES = {
    "UNKNOWN_CONDITION_FOR_ACTION": (
        f"condition keys apply per action; for ses:SendRawEmail and ses:SendEmail use "
        f"{SES_SEND_KEYS}"
    ),
    "INVALID_ARN": "write arn:aws:ses:REGION:ACCOUNT(12 digits):identity/NAME",
    "UNKNOWN_ACTION": (
        "check the spelling: the sending action is ses:SendRawEmail (ses:SendEmail with "
        "ses.api: v2)"
    ),
    "UNKNOWN_PREFIX": "check the service prefix: SES is ses",
    "RESOURCE_STAR": "name the resources the actions need",
    "RESOURCE_EFFECTIVELY_STAR": "name the resources the actions need",
    "NO_VERSION": 'add "Version": "2012-10-17"',
    "OLD_VERSION": 'use "Version": "2012-10-17"',
    "INVALID_VERSION": 'use "Version": "2012-10-17"',
    "UNKNOWN_OPERATOR": "use a documented condition operator (StringLike, IpAddress, Bool...)",
    "MISMATCHED_TYPE": "use the operator family that matches the key's type",
    "DUPLICATE_SID": "give each statement its own Sid",
}
_UNKNOWN_CONDITION = re.compile(r"Unknown condition (\S+) for action (\S+)")


def _load_parliament() -> Any | None:
    """parliament, or None where it is not installed (only our checks run then)."""
    try:
        with warnings.catch_warnings():
            # parliament 1.6 leaves its data files open at import (ResourceWarning).
            warnings.simplefilter("ignore")
            import parliament  # type: ignore[import-untyped]
    except ImportError:
        return None
    return parliament


def _parliament_findings(text: str) -> list[Finding]:
    parliament = _load_parliament()
    if parliament is None:
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            policy = parliament.analyze_policy_string(text)
    except Exception as error:  # a crash in a third-party linter is itself a finding
        return [
            Finding(
                "LOW",
                "PARLIAMENT_FAILED",
                f"parliament could not analyse this file ({type(error).__name__})",
                "check the policy structure; our own checks above still ran",
            )
        ]
    severities = parliament.config
    unknown: dict[str, list[str]] = {}
    lines: dict[str, Any] = {}
    findings = []
    for found in policy.findings:
        issue, detail, location = str(found.issue), found.detail, dict(found.location or {})
        match = _UNKNOWN_CONDITION.fullmatch(str(detail))
        if issue == "UNKNOWN_CONDITION_FOR_ACTION" and match:
            key, action = match.groups()
            if key.lower() not in _NONEXISTENT_KEYS:
                unknown.setdefault(key, []).append(action)
                lines.setdefault(key, location.get("line"))
            continue
        if issue == "MISMATCHED_TYPE" and any(k in str(detail).lower() for k in _IP_KEYS):
            continue  # its IP regex rejects compressed IPv6; _check_ips decides instead
        where = f" (line {location['line']})" if location.get("line") else ""
        findings.append(
            Finding(
                str(severities.get(issue, {}).get("severity", "MEDIUM")),
                issue,
                f"{_describe(detail)}{where}",
                _PARLIAMENT_FIXES.get(
                    issue, str(severities.get(issue, {}).get("title", "see parliament"))
                ),
            )
        )
    for key, actions in unknown.items():
        more = f" and {len(actions) - 1} more actions" if len(actions) > 1 else ""
        where = f" (line {lines[key]})" if lines.get(key) else ""
        findings.append(
            Finding(
                str(severities["UNKNOWN_CONDITION_FOR_ACTION"]["severity"]),
                "UNKNOWN_CONDITION_FOR_ACTION",
                f"{key} is not a condition key of {actions[0]}{more}, so the condition "
                f"never holds for it{where}",
                _PARLIAMENT_FIXES["UNKNOWN_CONDITION_FOR_ACTION"],
            )
        )
    return findings


def _describe(detail: Any) -> str:
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text if len(text) <= 300 else text[:300] + "…"


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def lint_text(text: str) -> list[Finding]:
    """All findings for one policy's JSON text; json.JSONDecodeError if it is not JSON."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise
    # JSON, but beyond what Python reads: a number of thousands of digits, deep nesting.
    except (ValueError, RecursionError) as error:
        reason = "nested too deep" if isinstance(error, RecursionError) else str(error)
        raise json.JSONDecodeError(f"cannot be read ({reason[:120]})", text, 0) from None
    findings = check_document(document)
    if isinstance(document, Mapping) and "Statement" in document:
        ours = {f.code for f in findings}
        for finding in _parliament_findings(text):
            if finding.code in ("RESOURCE_STAR", "RESOURCE_EFFECTIVELY_STAR") and (
                "RESOURCE_WILDCARD" in ours or "ACTION_BEYOND_SENDING" in ours
            ):
                continue  # ours already says it, with the SES-specific fix
            findings.append(finding)
    return findings


def lint_files(paths: Sequence[Path], out: TextIO) -> int:
    """Lint each file, one line per finding on `out`; the exit code for all of them."""
    status = EXIT_CLEAN
    if _load_parliament() is None:
        print(
            "ses-proxy: note: parliament is not installed, only ses-proxy's own checks run "
            "(pip install parliament)",
            file=sys.stderr,
        )
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            out.write(f"{path}: ERROR UNREADABLE: cannot read the file ({reason})\n")
            status = EXIT_UNUSABLE
            continue
        try:
            findings = lint_text(text)
        except json.JSONDecodeError as error:
            out.write(f"{path}:{error.lineno}:{error.colno}: ERROR INVALID_JSON: {error.msg}\n")
            status = EXIT_UNUSABLE
            continue
        for finding in findings:
            out.write(finding.render(str(path)) + "\n")
        if findings and status == EXIT_CLEAN:
            status = EXIT_FINDINGS
    return status
