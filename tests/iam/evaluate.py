"""A small, independent evaluator of IAM identity-policy semantics.

Pure: policy documents and one request in, a Decision out. It lives with the tests
(it is not part of the relay) so that they can check, without AWS, that the policy
`iam-policy` generates allows exactly what the proxy's local checks allow. It therefore
shares no code with proxy.addresses (its wildcard matcher is a different algorithm) and
follows the IAM documentation, not our own reading of what a policy should mean:

- Deny wins over Allow; nothing matching is an implicit deny.
- Action / NotAction match case-insensitively with `*` and `?`.
- Resource / NotResource match ARN by ARN segment, case-sensitively, with wildcards.
- Condition: operators AND, keys within an operator AND, a key's values OR (NOR for
  the negated operators). Context key names are case-insensitive.
- A key absent from the request context makes a condition false, except that a
  negated operator (StringNotLike, NotIpAddress...) is then true, `...IfExists` is
  true, `ForAllValues:` is true and `Null` tests exactly that absence.

Out of scope: policy variables (`${...}`), resource policies and principals,
permission boundaries, SCPs. A policy using them raises PolicyError rather than
getting a guessed answer.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class PolicyError(ValueError):
    """The policy is not one this evaluator (or IAM) accepts."""


class Decision(enum.Enum):
    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"


ContextValue = str | bool | int | Sequence[str]


@dataclass(frozen=True)
class Request:
    """One authorization question: may `action` be done on `resource` in `context`?

    A context value that is a list or tuple is a multivalued key (ses:Recipients);
    booleans and numbers are given as IAM sees them, as strings ("true", "10").
    """

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


def evaluate(
    policies: Mapping[str, Any] | Sequence[Mapping[str, Any]], request: Request
) -> Decision:
    """The decision of IAM for `request` under the given identity policies."""
    documents = [policies] if isinstance(policies, Mapping) else list(policies)
    context = _normalize_context(request.context)
    allowed = False
    for document in documents:
        for statement in _statements(document):
            if not _applies(statement, request, context):
                continue
            if statement["Effect"] == "Deny":
                return Decision.EXPLICIT_DENY
            allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


# ---------------------------------------------------------------------------
# Wildcards
# ---------------------------------------------------------------------------


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """`*` any run (also empty), `?` one character, anything else itself.

    Simulates the pattern as a set of reachable positions (an NFA), so the cost is
    bounded by len(pattern) * len(value) whatever the number of `*`.
    """
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    states = _skip_stars({0}, pattern)
    for char in value:
        following: set[int] = set()
        for position in states:
            if position == len(pattern):
                continue
            wanted = pattern[position]
            if wanted == "*":
                following.add(position)
            elif wanted in ("?", char):
                following.add(position + 1)
        states = _skip_stars(following, pattern)
        if not states:
            return False
    return len(pattern) in states


def _skip_stars(states: set[int], pattern: str) -> set[int]:
    # A `*` may match nothing: whoever stands before it also stands after it.
    reached = set(states)
    pending = list(states)
    while pending:
        position = pending.pop()
        if position < len(pattern) and pattern[position] == "*" and position + 1 not in reached:
            reached.add(position + 1)
            pending.append(position + 1)
    return reached


def arn_match(pattern: str, arn: str) -> bool:
    """ArnLike: each of the six colon-separated parts matched on its own."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return glob_match(pattern, arn)
    return all(glob_match(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


# ---------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise PolicyError("a policy document is an object with a Statement")
    raw = document["Statement"]
    statements = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(statements, list):
        raise PolicyError("Statement must be an object or a list of objects")
    for statement in statements:
        if not isinstance(statement, Mapping):
            raise PolicyError("each statement must be an object")
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"Effect must be Allow or Deny, not {statement.get('Effect')!r}")
        if ("Action" in statement) == ("NotAction" in statement):
            raise PolicyError("a statement needs exactly one of Action and NotAction")
        if ("Resource" in statement) == ("NotResource" in statement):
            raise PolicyError("an identity policy statement needs Resource or NotResource")
    return statements


def _strings(value: Any, what: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out = []
    for item in values:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, int | float | str):
            out.append(str(item))
        else:
            raise PolicyError(f"{what}: {item!r} is not a string")
    return out


def _no_variables(values: Iterable[str], what: str) -> None:
    for value in values:
        if "${" in value:
            raise PolicyError(f"{what}: policy variables are not supported ({value!r})")


def _applies(
    statement: Mapping[str, Any], request: Request, context: Mapping[str, tuple[str, ...]]
) -> bool:
    if "Action" in statement:
        actions = _strings(statement["Action"], "Action")
        if not any(glob_match(a, request.action, ignore_case=True) for a in actions):
            return False
    else:
        actions = _strings(statement["NotAction"], "NotAction")
        if any(glob_match(a, request.action, ignore_case=True) for a in actions):
            return False
    key = "Resource" if "Resource" in statement else "NotResource"
    resources = _strings(statement[key], key)
    _no_variables(resources, key)
    matched = any(arn_match(r, request.resource) for r in resources)
    if matched != (key == "Resource"):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


# ---------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------


def _normalize_context(context: Mapping[str, ContextValue]) -> dict[str, tuple[str, ...]]:
    normalized: dict[str, tuple[str, ...]] = {}
    for key, value in context.items():
        if isinstance(value, bool):
            values: tuple[str, ...] = ("true" if value else "false",)
        elif isinstance(value, int | str):
            values = (str(value),)
        else:
            values = tuple(value)
        # Context key names are case-insensitive (aws:SourceIP is aws:SourceIp).
        normalized[key.lower()] = values
    return normalized


def _condition_holds(condition: Any, context: Mapping[str, tuple[str, ...]]) -> bool:
    if not isinstance(condition, Mapping):
        raise PolicyError("Condition must be an object")
    for operator, block in condition.items():
        if not isinstance(block, Mapping):
            raise PolicyError(f"{operator}: must map condition keys to values")
        for key, policy_value in block.items():
            values = _strings(policy_value, f"{operator} {key}")
            if not _test(operator, key.lower(), values, context):
                return False
    return True


def _test(
    operator: str, key: str, policy_values: list[str], context: Mapping[str, tuple[str, ...]]
) -> bool:
    qualifier, base = "", operator
    if ":" in operator:
        qualifier, base = operator.split(":", 1)
        if qualifier.lower() not in ("forallvalues", "foranyvalue"):
            raise PolicyError(f"unknown set operator {qualifier!r}")
        qualifier = qualifier.lower()
    present = context.get(key)

    if base.lower() == "null":
        if qualifier:
            raise PolicyError("Null takes no set operator")
        wants_absent = [v.lower() == "true" for v in policy_values]
        return (present is None or not present) in wants_absent

    if_exists = base.lower().endswith("ifexists")
    if if_exists:
        base = base[: -len("IfExists")]
    spec = _OPERATORS.get(base.lower())
    if spec is None:
        raise PolicyError(f"unknown condition operator {operator!r}")
    match, negated = spec
    if base.lower().startswith(("string", "arn")):
        _no_variables(policy_values, operator)

    def value_ok(value: str) -> bool:
        hit = any(match(policy_value, value) for policy_value in policy_values)
        return not hit if negated else hit

    if qualifier == "forallvalues":
        # Documented: true when the key is missing or empty, so an Allow with it
        # also allows a request that carries no such key at all.
        return all(value_ok(v) for v in present or ())
    if qualifier == "foranyvalue":
        return any(value_ok(v) for v in present or ())
    if not present:
        # Absent: no value matches, so a positive operator fails and a negated one
        # ("the key is not like X") holds; IfExists holds either way.
        return if_exists or negated
    if negated:
        # A single-valued operator on a multivalued key: no value may match.
        return all(value_ok(v) for v in present)
    # ...and a positive one holds if any value matches (the documented pitfall).
    return any(value_ok(v) for v in present)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromtimestamp(float(text), tz=datetime.UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _compare(
    parse: Callable[[str], Any], test: Callable[[Any, Any], bool]
) -> Callable[[str, str], bool]:
    def match(policy_value: str, value: str) -> bool:
        wanted, actual = parse(policy_value), parse(value)
        if wanted is None:
            raise PolicyError(f"{policy_value!r} is not a valid value for this operator")
        return actual is not None and bool(test(actual, wanted))

    return match


def _ip_match(policy_value: str, value: str) -> bool:
    try:
        network = ipaddress.ip_network(policy_value, strict=False)
    except ValueError:
        raise PolicyError(f"{policy_value!r} is not an IP address or CIDR") from None
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False


def _binary_match(policy_value: str, value: str) -> bool:
    try:
        return base64.b64decode(policy_value, validate=True) == base64.b64decode(value)
    except binascii.Error:
        return False


def _equals(a: Any, b: Any) -> bool:
    return bool(a == b)


# base operator (lowercase) -> (per-value match of policy value against request value, negated)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "stringequals": (lambda p, v: p == v, False),
    "stringnotequals": (lambda p, v: p == v, True),
    "stringequalsignorecase": (lambda p, v: p.lower() == v.lower(), False),
    "stringnotequalsignorecase": (lambda p, v: p.lower() == v.lower(), True),
    "stringlike": (glob_match, False),
    "stringnotlike": (glob_match, True),
    "numericequals": (_compare(_number, _equals), False),
    "numericnotequals": (_compare(_number, _equals), True),
    "numericlessthan": (_compare(_number, lambda a, b: a < b), False),
    "numericlessthanequals": (_compare(_number, lambda a, b: a <= b), False),
    "numericgreaterthan": (_compare(_number, lambda a, b: a > b), False),
    "numericgreaterthanequals": (_compare(_number, lambda a, b: a >= b), False),
    "dateequals": (_compare(_date, _equals), False),
    "datenotequals": (_compare(_date, _equals), True),
    "datelessthan": (_compare(_date, lambda a, b: a < b), False),
    "datelessthanequals": (_compare(_date, lambda a, b: a <= b), False),
    "dategreaterthan": (_compare(_date, lambda a, b: a > b), False),
    "dategreaterthanequals": (_compare(_date, lambda a, b: a >= b), False),
    "bool": (lambda p, v: p.lower() == v.lower(), False),
    "binaryequals": (_binary_match, False),
    "ipaddress": (_ip_match, False),
    "notipaddress": (_ip_match, True),
    "arnequals": (arn_match, False),
    "arnlike": (arn_match, False),
    "arnnotequals": (arn_match, True),
    "arnnotlike": (arn_match, True),
}
