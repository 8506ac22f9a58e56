"""Fuzz the policy linter's input (proxy/iam/lint.py): whatever file an operator hands
to `ses-proxy lint-policy`, it answers with findings or exit 2, never a traceback.

- `check_document(document)` on arbitrary JSON values and on mutations of the policy
  `ses-proxy iam-policy` generates: a list of our own Findings, NOT_A_POLICY alone for
  what is not a policy document, the input left untouched, and the same findings for
  the spellings IAM treats alike (a lone statement or value, or a list of one).
- `lint_text(text)` on arbitrary text, JSON fragments and mutated policy text: findings,
  ours first then parliament's, or json.JSONDecodeError (its documented refusal).
- `lint_files` on arbitrary file octets: exit 2 exactly for what is not UTF-8 JSON, 0
  exactly when there is nothing to say, and one rendered line per finding.

Inputs that once broke lint.py are pinned at the end.
"""

from __future__ import annotations

import copy
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.iam.generate import build_policy
from proxy.iam.lint import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_UNUSABLE,
    Finding,
    check_document,
    lint_files,
    lint_text,
)
from tests.iam.configs import ACCOUNT, make_settings
from tests.properties import examples

OUR_CODES = {
    "NOT_A_POLICY",
    "NONEXISTENT_CONDITION_KEY",
    "IP_OPERATOR",
    "INVALID_IP",
    "RECIPIENTS_SINGLE_VALUED",
    "RECIPIENTS_FOR_ANY_VALUE",
    "ACTION_BEYOND_SENDING",
    "RESOURCE_WILDCARD",
    "NO_SOURCE_IP",
}
OUR_SEVERITIES = {"HIGH", "MEDIUM", "LOW"}
SEVERITIES = OUR_SEVERITIES | {"CRITICAL"}  # parliament's scale has one more

# The generated policy is the one every operator starts from; mutations of it reach the
# checks' deeper branches far more often than random JSON does.
GENERATED = build_policy(
    make_settings(recipients=["*@example.com"], configuration_set="relay"), ACCOUNT
)

# The vocabulary of SES policies, so that random documents hit the checks' branches.
policy_words = st.sampled_from(
    [
        *("Version", "2012-10-17", "Statement", "Sid", "Effect", "Allow", "Deny"),
        *("Action", "NotAction", "Resource", "NotResource", "Condition", "Principal"),
        *("ses:SendRawEmail", "ses:SendEmail", "ses:GetSendQuota", "ses:*", "*", "s?s:*"),
        *("arn:aws:ses:eu-west-3:123456789012:identity/*", "arn:aws:ses:::", "a:b:c:d:e:*"),
        *("StringLike", "ForAllValues:StringLike", "ForAnyValue:StringLike", "StringEquals"),
        *("ForAllValues:StringNotLike", "ForAnyValue:StringNotLike", "StringLikeIfExists"),
        *("IpAddress", "NotIpAddress", "Null", "Bool", "NumericLessThanEquals", ":", "::"),
        *("aws:SourceIp", "AWS:SOURCEIP", "aws:SourceVpce", "aws:VpcSourceIp"),
        *("ses:Recipients", "ses:FromAddress", "ses:RequireTLS", "ses:MessageSize"),
        *("ses:sourceip", "ses:ToAddress", "ses:Destinations"),
        *("203.0.113.7/32", "2001:db8::/32", "10.0.0.0/33", "1.2.3", "::1", "999.1.1.1"),
    ]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity too: json.loads accepts them
    | st.text(max_size=12)
    | policy_words
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(policy_words | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=24,
)


@st.composite
def mutated_policy(draw: st.DrawFn) -> Any:
    """The generated policy with a few of its nodes replaced, deleted or added."""
    document: Any = copy.deepcopy(GENERATED)
    for _ in range(draw(st.integers(1, 4))):
        # Walk down from the root to a random container, then change one of its slots.
        parent = document
        while True:
            if isinstance(parent, dict) and parent:
                key: Any = draw(st.sampled_from(sorted(parent)))
            elif isinstance(parent, list) and parent:
                key = draw(st.integers(0, len(parent) - 1))
            else:
                break
            child = parent[key]
            if not isinstance(child, dict | list) or not child or draw(st.booleans()):
                action = draw(st.sampled_from(["replace", "delete", "add", "wrap"]))
                if action == "replace":
                    parent[key] = draw(json_values)
                elif action == "delete":
                    del parent[key]
                elif action == "wrap":
                    parent[key] = [child]
                elif isinstance(parent, dict):
                    parent[draw(policy_words)] = draw(json_values)
                else:
                    parent.insert(key, draw(json_values))
                break
            parent = child
    return document


documents = json_values | mutated_policy()


def all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_strings(item)


def has_line_break(document: Any) -> bool:
    # Whatever str.splitlines breaks at (LF, CR, VT, FF, NEL, U+2028...); the "x" makes
    # a break at the very end count too.
    return any(len((text + "x").splitlines()) > 1 for text in all_strings(document))


def assert_findings(findings: Any, severities: set[str]) -> None:
    assert isinstance(findings, list)
    for finding in findings:
        assert isinstance(finding, Finding)
        assert finding.severity in severities, finding
        assert finding.code, finding
        assert finding.fix, finding
        if finding.code in OUR_CODES:
            # Parliament's own details may be empty (its NO_VERSION has none); ours never.
            assert finding.message, finding


def is_policy(document: Any) -> bool:
    return isinstance(document, dict) and "Statement" in document


# ---------------------------------------------------------------------------
# check_document
# ---------------------------------------------------------------------------


def test_the_generated_policy_is_clean() -> None:
    # The mutations start from a clean policy: any finding below comes from the change.
    assert check_document(copy.deepcopy(GENERATED)) == []


@given(document=documents)
@example(document={"Statement": None})
@example(document={"Statement": [{"Effect": "Allow", "Condition": []}]})
@example(document={"Statement": {"Effect": "Allow", "Condition": {"IpAddress": {"a": [[]]}}}})
@settings(max_examples=examples(300))
def test_fuzz_check_document(document: Any) -> None:
    before = copy.deepcopy(document)
    findings = check_document(document)
    assert_findings(findings, OUR_SEVERITIES)
    assert {finding.code for finding in findings} <= OUR_CODES
    if not is_policy(document):
        assert [finding.code for finding in findings] == ["NOT_A_POLICY"]
    else:
        assert "NOT_A_POLICY" not in {finding.code for finding in findings}
    # Pure: the caller's document is not changed, and the answer is the same twice.
    assert json.dumps(document, sort_keys=True) == json.dumps(before, sort_keys=True)
    assert check_document(document) == findings


@given(document=mutated_policy())
@settings(max_examples=examples(200))
def test_a_lone_statement_or_value_reads_as_a_list_of_one(document: Any) -> None:
    if not is_policy(document):
        return
    statements = document["Statement"]
    statement = (
        statements[0] if isinstance(statements, list) and len(statements) == 1 else statements
    )
    if not isinstance(statement, dict):
        return
    # IAM reads "Statement": {...} and "Statement": [{...}] alike; so must we.
    assert check_document({**document, "Statement": statement}) == check_document(
        {**document, "Statement": [statement]}
    )
    for field in ("Action", "Resource"):
        if field in statement and not isinstance(statement[field], list):
            listed = {**statement, field: [statement[field]]}
            assert check_document({**document, "Statement": [listed]}) == check_document(
                {**document, "Statement": [statement]}
            )


# ---------------------------------------------------------------------------
# lint_text
# ---------------------------------------------------------------------------

json_fragments = st.lists(
    st.sampled_from(
        [
            *("{", "}", "[", "]", ",", ":", '"', "\\", "\\u", "\\ud800", " ", "\n", "\t"),
            *('"Statement"', '"Effect"', '"Allow"', '"Action"', '"Condition"', '"*"'),
            *("null", "true", "NaN", "-Infinity", "1e999", "-0", "0.1", "1" * 40, "\ufeff"),
        ]
    ),
    max_size=30,
).map("".join)


@st.composite
def mutated_policy_text(draw: st.DrawFn) -> str:
    """The generated policy's JSON with a few characters inserted or deleted."""
    text = json.dumps(GENERATED, indent=2)
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:position] + draw(json_fragments | st.text(max_size=3)) + text[position:]
        else:
            text = text[:position] + text[position + draw(st.integers(1, 8)) :]
    return text


texts = st.text(max_size=200) | json_fragments | mutated_policy_text()


@given(text=texts | documents.map(json.dumps))
@example(text="")
@example(text='{"Statement": []}')
@settings(max_examples=examples(300))
def test_fuzz_lint_text(text: str) -> None:
    try:
        findings = lint_text(text)
    except json.JSONDecodeError:
        # The documented refusal, and only for what json.loads itself refuses.
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        return
    document = json.loads(text)
    assert_findings(findings, SEVERITIES)
    # Our own findings come first and whole; parliament's follow.
    ours = check_document(document)
    assert findings[: len(ours)] == ours
    if not is_policy(document):
        assert findings == ours
    if not has_line_break(document):
        # One finding, one line of lint-policy's output.
        for finding in findings:
            assert len(finding.render("p.json").splitlines()) == 1, finding


# ---------------------------------------------------------------------------
# lint_files
# ---------------------------------------------------------------------------


@given(
    raw=st.binary(max_size=200)
    | texts.map(lambda text: text.encode("utf-8", "surrogatepass"))
    | documents.map(lambda document: json.dumps(document).encode())
)
@example(raw=b"\xef\xbb\xbf{}")  # a UTF-8 BOM: JSON text must not start with one
@settings(max_examples=examples(150))
def test_fuzz_lint_files(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.json"
        path.write_bytes(raw)
        out = io.StringIO()
        status = lint_files([path], out)
        try:
            text = path.read_text(encoding="utf-8")  # as lint_files reads it
            findings = lint_text(text)
        except (UnicodeDecodeError, json.JSONDecodeError):
            assert status == EXIT_UNUSABLE
            (line,) = out.getvalue().splitlines()
            assert line.startswith(f"{path}")
            assert "ERROR UNREADABLE" in line or "ERROR INVALID_JSON" in line
            return
    assert status == (EXIT_FINDINGS if findings else EXIT_CLEAN)
    assert out.getvalue() == "".join(f"{finding.render(str(path))}\n" for finding in findings)


# ---------------------------------------------------------------------------
# Inputs these targets found breaking lint.py (fixed): kept as examples.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"Version": "2012-10-17", "Statement": [' + "1" * 5000 + "]}", id="long-int"),
        pytest.param("[" * 100_000, id="deep-nesting"),
    ],
)
def test_json_that_python_cannot_read_is_exit_2_not_a_crash(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.json"
        path.write_text(text, encoding="utf-8")
        out = io.StringIO()
        assert lint_files([path], out) == EXIT_UNUSABLE
    assert "ERROR INVALID_JSON" in out.getvalue()


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param({"Sid": "a\nb"}, id="sid"),
        pytest.param({"Condition": {"String\nLike": {"aws:SourceIp": "1.2.3.4/32"}}}, id="op"),
    ],
)
def test_every_finding_renders_on_one_line(statement: dict[str, Any]) -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ses:SendRawEmail",
                "Resource": f"arn:aws:ses:eu-west-3:{ACCOUNT}:identity/example.com",
                **statement,
            }
        ],
    }
    findings = lint_text(json.dumps(document))
    assert findings
    for finding in findings:
        assert len(finding.render("p.json").splitlines()) == 1, finding
