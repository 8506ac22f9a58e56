"""With clients, the one role's IAM policy allows the union of what `policy` and every
client may send, and nothing beyond it (the line between clients is drawn locally).

- Complete: whatever some session (no client, or any client) may send locally, IAM allows.
- Tight: what IAM allows has a sender some session may use and recipients some session
  may reach (the union can pair one client's sender with another's recipients: the relay
  refuses that pair itself, tests/smtp/test_auth.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import policy
from proxy.addresses import matches_any
from proxy.clients import clients_from
from proxy.iam.generate import build_policy
from proxy.settings import Settings
from tests.iam.configs import ACCOUNT, config_data
from tests.iam.evaluate import Decision, Request, evaluate
from tests.iam.test_agreement import addresses, patterns
from tests.properties import examples

SOURCE_IP = "203.0.113.7"


@st.composite
def client_entries(draw: st.DrawFn, index: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"app{index}",
        "networks": [f"10.0.{index}.0/24"],
        "allowed_senders": draw(st.lists(patterns, min_size=1, max_size=2)),
    }
    if draw(st.booleans()):
        entry["allowed_recipients"] = draw(st.lists(patterns, min_size=1, max_size=2))
    return entry


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Settings, str, list[str]]:
    count = draw(st.integers(min_value=1, max_value=3))
    config = config_data(
        senders=draw(st.lists(patterns, min_size=1, max_size=2)),
        recipients=draw(st.one_of(st.just(["*"]), st.lists(patterns, min_size=1, max_size=2))),
        account_id=ACCOUNT,
    )
    clients = [draw(client_entries(index)) for index in range(count)]
    config["clients"] = clients
    every: list[str] = list(config["policy"]["allowed_senders"])
    for entry in clients:
        every += entry["allowed_senders"]
    exact = [p for p in every if "*" not in p and "?" not in p and p.count("@") == 1]
    sender = draw(addresses)
    as_someone_allowed = draw(st.booleans())
    if exact and as_someone_allowed:
        sender = draw(st.sampled_from(exact)).upper()
    return Settings(**config), sender, draw(st.lists(addresses, min_size=1, max_size=3))


def _sessions(config: Settings) -> list[policy.Rules]:
    return [config.default_rules(), *(client.rules for client in clients_from(config))]


# The patterns alone, as test_agreement.py judges them: an address the relay refuses
# for its syntax (553) never reaches IAM, so syntax is not what the two must agree on.
def _sends_as(rules: policy.Rules, sender: str) -> bool:
    return matches_any(rules.allowed_senders, sender)


def _reaches(rules: policy.Rules, recipient: str) -> bool:
    return matches_any(rules.allowed_recipients, recipient)


def _allows(rules: policy.Rules, sender: str, recipients: list[str]) -> bool:
    return _sends_as(rules, sender) and all(_reaches(rules, r) for r in recipients)


def _iam_allows(config: Settings, sender: str, recipients: list[str]) -> bool:
    document = build_policy(config, ACCOUNT)
    source = sender.lower()
    context = {
        "ses:FromAddress": source,
        "ses:Recipients": [r.lower() for r in recipients],
        "aws:SourceIp": SOURCE_IP,
        "aws:SecureTransport": "true",
    }
    resource = f"arn:aws:ses:{config.ses.region}:{ACCOUNT}:identity/{source.partition('@')[2]}"
    return evaluate(document, Request("ses:SendRawEmail", resource, context)) is Decision.ALLOW


@settings(max_examples=examples(200), deadline=None)
@given(scenarios())
def test_iam_allows_the_union_of_every_session_and_no_more(
    scenario: tuple[Settings, str, list[str]],
) -> None:
    config, sender, recipients = scenario
    sessions = _sessions(config)
    iam = _iam_allows(config, sender, recipients)
    if any(_allows(rules, sender, recipients) for rules in sessions):
        assert iam, "a session may send this locally, IAM must allow it"
    if iam:
        assert any(_sends_as(rules, sender) for rules in sessions)
        for recipient in recipients:
            assert any(_reaches(rules, recipient) for rules in sessions)
