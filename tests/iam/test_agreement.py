"""The proxy's local checks and IAM, over the generated policy, decide the same.

Local: the relay's own decisions (proxy.policy on the settings' rules): the sender and
every recipient allowed. IAM: the independent evaluator on `build_policy`'s document,
with the request SES would see: Source and Destinations lowercased (DESIGN.md), the
identity of the sender's domain, the configuration set when there is one, and the
address the request comes from. The relay never checks that address (it is its own
host's): IAM must allow only from inside ses.source_ips, so the requests here come
from inside them, from their first and last addresses, from just outside them and
from anywhere.
"""

from __future__ import annotations

import ipaddress

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proxy.iam.generate import build_policy
from proxy.policy import Accepted, Rejected, Verdict, check_recipient, check_sender
from proxy.settings import Settings
from tests.iam.configs import ACCOUNT, config_data
from tests.iam.evaluate import Decision, Request, evaluate
from tests.properties import examples

# A small alphabet makes matches likely; upper case checks the lowercasing.
LETTERS = "abAB"
local_parts = st.text(LETTERS, min_size=1, max_size=3)
domains = st.builds(
    lambda name, tld: f"{name}.{tld}",
    st.text(LETTERS, min_size=1, max_size=2),
    st.sampled_from(["com", "org"]),
)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)


def _pattern_part(allowed: str) -> st.SearchStrategy[str]:
    return st.text(allowed + "*?", min_size=1, max_size=4)


patterns = st.one_of(
    addresses,
    st.builds(lambda local, domain: f"{local}@{domain}", _pattern_part("ab"), domains),
    st.builds(
        lambda local, domain: f"{local}@{domain}", _pattern_part("ab"), _pattern_part("ab.com")
    ),
    st.sampled_from(["*", "*@*", "a*", "*.com"]),
)
v4_networks = st.builds(
    lambda address, prefix: ipaddress.ip_network(f"{address}/{prefix}", strict=False),
    st.ip_addresses(v=4),
    st.integers(min_value=8, max_value=32),
)
v6_networks = st.builds(
    lambda address, prefix: ipaddress.ip_network(f"{address}/{prefix}", strict=False),
    st.ip_addresses(v=6),
    st.integers(min_value=16, max_value=128),
)
networks = st.lists(st.one_of(v4_networks, v6_networks), min_size=1, max_size=3)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@st.composite
def source_ip(draw: st.DrawFn, nets: list[Network]) -> str:
    """An address inside one of the networks, at either end of one, just outside one,
    or anywhere."""
    net = draw(st.sampled_from(nets))
    first, last = int(net.network_address), int(net.broadcast_address)
    top = 2**net.max_prefixlen - 1
    where = draw(st.sampled_from(["inside", "first", "last", "below", "above", "anywhere"]))
    if where == "anywhere":
        return str(draw(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))))
    value = {
        "inside": draw(st.integers(first, last)),
        "first": first,
        "last": last,
        "below": max(first - 1, 0),
        "above": min(last + 1, top),
    }[where]
    return str(ipaddress.IPv4Address(value) if net.version == 4 else ipaddress.IPv6Address(value))


def inside(ip: str, nets: tuple[Network, ...]) -> bool:
    """Whether the address lies in one of the networks, by integer bounds."""
    address = ipaddress.ip_address(ip)
    return any(
        address.version == net.version
        and int(net.network_address) <= int(address) <= int(net.broadcast_address)
        for net in nets
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Settings, str, list[str], str]:
    senders = draw(st.lists(patterns, min_size=1, max_size=3))
    recipients = draw(st.one_of(st.just(["*"]), st.lists(patterns, min_size=1, max_size=3)))
    nets = draw(networks)
    configuration_set = draw(st.one_of(st.none(), st.just("relay")))
    config = config_data(
        senders=senders,
        recipients=recipients,
        source_ips=[str(n) for n in nets],
        account_id=ACCOUNT,
        configuration_set=configuration_set,
    )
    # Half the time, send as someone allowed: otherwise random senders rarely match.
    sender = draw(addresses)
    if draw(st.booleans()):
        exact = [p for p in senders if "*" not in p and "?" not in p and p.count("@") == 1]
        if exact:
            sender = draw(st.sampled_from(exact)).upper()
    rcpts = draw(st.lists(addresses, min_size=1, max_size=4))
    return Settings(**config), sender, rcpts, draw(source_ip(nets))


def local_allows(settings: Settings, sender: str, recipients: list[str]) -> bool | None:
    """The relay's own decisions on the envelope; None when it refuses an address as
    syntax ("a@b", a pattern taken for a sender): no request reaches SES then, and IAM,
    which cannot parse an address, has nothing to agree with."""
    rules = settings.default_rules()
    decisions = [check_sender(rules, sender)] + [
        check_recipient(rules, recipient, count) for count, recipient in enumerate(recipients)
    ]
    syntax = (Verdict.SENDER_SYNTAX, Verdict.RECIPIENT_SYNTAX)
    if any(isinstance(d, Rejected) and d.verdict in syntax for d in decisions):
        return None
    return all(isinstance(decision, Accepted) for decision in decisions)


def iam_allows(settings: Settings, sender: str, recipients: list[str], ip: str) -> bool:
    policy = build_policy(settings, ACCOUNT)
    arn = f"arn:aws:ses:{settings.ses.region}:{ACCOUNT}"
    source = sender.lower()  # what the proxy sends as Source
    context = {
        "ses:FromAddress": source,
        "ses:Recipients": [r.lower() for r in recipients],
        "aws:SourceIp": ip,
        "aws:SecureTransport": "true",
    }
    # SES authorizes against the address identity if verified, else the domain's:
    # the policy must allow whichever one the account has.
    resources = [f"{arn}:identity/{source.partition('@')[2]}", f"{arn}:identity/{source}"]
    checks = [[resource] for resource in resources]
    if settings.ses.configuration_set:
        checks = [
            [r, f"{arn}:configuration-set/{settings.ses.configuration_set}"] for r in resources
        ]
    decisions = {
        all(
            evaluate(policy, Request("ses:SendRawEmail", r, context)) is Decision.ALLOW
            for r in check
        )
        for check in checks
    }
    assert len(decisions) == 1, "the domain and the address identity must be judged alike"
    return decisions.pop()


@settings(max_examples=examples(300), deadline=None)
@given(scenarios())
def test_local_policy_and_iam_agree(scenario: tuple[Settings, str, list[str], str]) -> None:
    config, sender, recipients, ip = scenario
    local = local_allows(config, sender, recipients)
    assume(local is not None)
    expected = bool(local) and inside(ip, config.ses.source_ips)
    assert iam_allows(config, sender, recipients, ip) == expected


@settings(max_examples=examples(200), deadline=None)
@given(
    nets=networks,
    sender=addresses,
    recipients=st.lists(addresses, min_size=1, max_size=4),
    data=st.data(),
)
def test_iam_allows_an_allowed_message_only_from_inside_the_source_ips(
    nets: list[Network], sender: str, recipients: list[str], data: st.DataObject
) -> None:
    # Where the source address alone decides: the relay would send this message.
    config = Settings(
        **config_data(senders=[sender], source_ips=[str(n) for n in nets], account_id=ACCOUNT)
    )
    assert local_allows(config, sender, recipients) is True
    ip = data.draw(source_ip(nets))
    assert iam_allows(config, sender, recipients, ip) == inside(ip, config.ses.source_ips)


@settings(max_examples=examples(50), deadline=None)
@given(scenarios())
def test_iam_denies_without_tls_or_from_elsewhere(
    scenario: tuple[Settings, str, list[str], str],
) -> None:
    config, sender, recipients, _ip = scenario
    policy = build_policy(config, ACCOUNT)
    resource = (
        f"arn:aws:ses:{config.ses.region}:{ACCOUNT}:identity/{sender.lower().partition('@')[2]}"
    )
    base = {"ses:FromAddress": sender.lower(), "ses:Recipients": [r.lower() for r in recipients]}
    plain = Request(
        "ses:SendRawEmail",
        resource,
        {
            **base,
            "aws:SecureTransport": "false",
            "aws:SourceIp": str(config.ses.source_ips[0].network_address),
        },
    )
    assert evaluate(policy, plain) is not Decision.ALLOW
    # Through a VPC endpoint aws:SourceIp is absent: the IpAddress condition fails.
    via_endpoint = Request("ses:SendRawEmail", resource, {**base, "aws:SecureTransport": "true"})
    assert evaluate(policy, via_endpoint) is not Decision.ALLOW
    other_action = Request(
        "ses:SendEmail",
        resource,
        {
            **base,
            "aws:SecureTransport": "true",
            "aws:SourceIp": str(config.ses.source_ips[0].network_address),
        },
    )
    assert evaluate(policy, other_action) is not Decision.ALLOW
