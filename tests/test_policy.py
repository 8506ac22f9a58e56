"""The policy decisions: examples for each verdict, then properties."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proxy import policy
from proxy.addresses import AddressError, matches_any, parse_envelope_address
from proxy.message import HeaderScan
from proxy.policy import (
    Accepted,
    Decision,
    Rejected,
    Rules,
    Verdict,
    check_declared_size,
    check_message,
    check_raw_message,
    check_recipient,
    check_sender,
    parse_message_tags,
)
from tests.properties import examples

RULES = Rules(
    allowed_senders=("noreply@example.com", "*@example.org"),
    allowed_recipients=("*@example.com", "ops?@example.net"),
    max_recipients=3,
    max_message_bytes=1000,
)


def rejected(decision: Decision) -> Verdict:
    assert isinstance(decision, Rejected), decision
    return decision.verdict


def test_verdicts_are_the_contract_table() -> None:
    assert {verdict.name for verdict in Verdict} == {
        "CONFIGURATION_SET_DENIED",
        "SENDER_DENIED",
        "SENDER_SYNTAX",
        "SIZE_EXCEEDED",
        "RECIPIENT_DENIED",
        "RECIPIENT_SYNTAX",
        "TOO_MANY_RECIPIENTS",
        "HEADER_SENDER_DENIED",
        "MALFORMED",
    }


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------


def test_rules_refuse_a_bare_string_of_patterns() -> None:
    # ("*@example.org") is a string, and its "*" character would allow everything.
    with pytest.raises(TypeError):
        Rules("*@example.org", ("*",), 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Rules(("*",), "*@example.org", 1, 1)  # type: ignore[arg-type]


def test_rules_freeze_a_list_of_patterns() -> None:
    rules = Rules(["*@example.org"], ["*"], 1, 1)  # type: ignore[arg-type]
    assert rules.allowed_senders == ("*@example.org",)
    assert rules.allowed_recipients == ("*",)


@pytest.mark.parametrize(("max_recipients", "max_bytes"), [(0, 1), (1, 0), (-1, 10)])
def test_rules_refuse_useless_limits(max_recipients: int, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Rules(("*",), ("*",), max_recipients, max_bytes)


# ---------------------------------------------------------------------------
# check_sender
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "address"),
    [
        ("noreply@example.com", "noreply@example.com"),
        ("NoReply@Example.COM", "noreply@example.com"),
        ("<noreply@example.com>", "noreply@example.com"),
        ("anyone@example.org", "anyone@example.org"),
        ("Anyone@EXAMPLE.org", "anyone@example.org"),
    ],
)
def test_sender_allowed(path: str, address: str) -> None:
    assert check_sender(RULES, path) == Accepted(address)


@pytest.mark.parametrize(
    "path",
    [
        "other@example.com",
        "noreply@example.com.evil.example",
        "anyone@sub.example.org",
        "anyone@example.org.evil.example",
    ],
)
def test_sender_not_allowed(path: str) -> None:
    decision = check_sender(RULES, path)
    assert rejected(decision) is Verdict.SENDER_DENIED
    assert isinstance(decision, Rejected)
    assert "not allowed" in decision.detail


@pytest.mark.parametrize(
    "path",
    [
        "",
        "<>",
        '"noreply@example.com"@example.org',
        "@relay.example:noreply@example.com",
        "noreply@example.com\r\nRCPT TO:<x@example.com>",
        "\u212aevin@example.org",
        "x@[192.0.2.1]",
    ],
)
def test_sender_unparseable_is_a_syntax_refusal(path: str) -> None:
    decision = check_sender(RULES, path)
    assert rejected(decision) is Verdict.SENDER_SYNTAX
    assert isinstance(decision, Rejected)
    assert "unparseable" in decision.detail


# ---------------------------------------------------------------------------
# check_declared_size
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, 0, 1, 999, 1000])
def test_declared_size_within_limit(size: int | None) -> None:
    assert check_declared_size(RULES, size) == Accepted()


@pytest.mark.parametrize("size", [1001, 10**12, -1])
def test_declared_size_refused(size: int) -> None:
    assert rejected(check_declared_size(RULES, size)) is Verdict.SIZE_EXCEEDED


# ---------------------------------------------------------------------------
# check_recipient
# ---------------------------------------------------------------------------


def test_recipient_allowed_below_the_limit() -> None:
    assert check_recipient(RULES, "A@Example.com", 0) == Accepted("a@example.com")
    assert check_recipient(RULES, "ops1@example.net", 2) == Accepted("ops1@example.net")


def test_recipient_over_the_limit() -> None:
    assert rejected(check_recipient(RULES, "a@example.com", 3)) is Verdict.TOO_MANY_RECIPIENTS
    assert rejected(check_recipient(RULES, "a@example.com", 50)) is Verdict.TOO_MANY_RECIPIENTS


@pytest.mark.parametrize("count", [0, 2, 3, 100])
@pytest.mark.parametrize(
    ("path", "verdict"),
    [
        ("a@example.org", Verdict.RECIPIENT_DENIED),
        ("ops12@example.net", Verdict.RECIPIENT_DENIED),
        ("a@example.com.evil.example", Verdict.RECIPIENT_DENIED),
        ("<>", Verdict.RECIPIENT_SYNTAX),
        ("a b@c.com", Verdict.RECIPIENT_SYNTAX),
    ],
)
def test_a_refused_recipient_is_refused_whatever_the_count(
    path: str, verdict: Verdict, count: int
) -> None:
    # A permanent 550 or 553, never a 452 the client would retry.
    assert rejected(check_recipient(RULES, path, count)) is verdict


# ---------------------------------------------------------------------------
# check_message
# ---------------------------------------------------------------------------


def headers(from_value: str, *sender_values: str) -> HeaderScan:
    return HeaderScan((from_value,), sender_values)


@pytest.mark.parametrize(
    "scan",
    [
        headers("noreply@example.com"),
        headers("App <NoReply@Example.com>"),
        headers("a@example.org, App <noreply@example.com>"),
        headers("noreply@example.com", "bounce@example.org"),
        headers('"x@evil.example" <noreply@example.com> (y@evil.example)'),
    ],
)
def test_message_allowed(scan: HeaderScan) -> None:
    assert check_message(RULES, scan, 1000) == Accepted()


def test_envelope_and_header_senders_are_judged_separately() -> None:
    # They need not be equal: each must be allowed on its own.
    assert isinstance(check_sender(RULES, "noreply@example.com"), Accepted)
    assert check_message(RULES, headers("billing@example.org"), 10) == Accepted()


@pytest.mark.parametrize(
    ("scan", "in_detail"),
    [
        (headers("evil@attacker.example"), "From: address evil@attacker.example is not allowed"),
        (headers('"noreply@example.com" <evil@attacker.example>'), "evil@attacker.example"),
        (headers("noreply@example.com, evil@attacker.example"), "evil@attacker.example"),
        (headers("noreply@example.com <evil@attacker.example>"), "From: unparseable"),
        (headers("undisclosed:;"), "From: unparseable"),
        (headers(""), "From: unparseable"),
        (headers("noreply@example.com", "evil@attacker.example"), "Sender: address evil@"),
        (headers("noreply@example.com", "bad <"), "Sender: unparseable"),
        (headers("noreply@example.com", "a@example.org, b@example.org"), "2 mailboxes"),
    ],
)
def test_message_header_sender_denied(scan: HeaderScan, in_detail: str) -> None:
    decision = check_message(RULES, scan, 10)
    assert rejected(decision) is Verdict.HEADER_SENDER_DENIED
    assert isinstance(decision, Rejected)
    assert in_detail in decision.detail


def test_message_size_is_checked_first() -> None:
    assert rejected(check_message(RULES, headers("evil@x.example"), 1001)) is Verdict.SIZE_EXCEEDED
    assert isinstance(check_message(RULES, headers("noreply@example.com"), 1000), Accepted)


@pytest.mark.parametrize(
    "scan",
    [
        HeaderScan((), ()),
        HeaderScan(("noreply@example.com", "noreply@example.com"), ()),
        HeaderScan(("noreply@example.com",), ("a@example.org", "a@example.org")),
    ],
)
def test_a_hand_built_scan_cannot_bypass_the_counts(scan: HeaderScan) -> None:
    assert rejected(check_message(RULES, scan, 10)) is Verdict.MALFORMED


# ---------------------------------------------------------------------------
# check_raw_message
# ---------------------------------------------------------------------------


def test_raw_message_accepted() -> None:
    raw = b"From: App <noreply@example.com>\r\nSubject: s\r\n\r\nbody\r\n"
    assert check_raw_message(RULES, raw) == Accepted()


@pytest.mark.parametrize(
    ("raw", "verdict", "in_detail"),
    [
        (b"From: noreply@example.com\r\n\r\n" + b"x" * 1000, Verdict.SIZE_EXCEEDED, "1029"),
        (b"From: noreply@example.com\r\n\r\nbare\nLF\r\n", Verdict.MALFORMED, "bare LF at line 3"),
        (b"Subject: s\r\n\r\n", Verdict.MALFORMED, "no From: header"),
        (b"From: a@example.org\r\nFrom: b@example.org\r\n\r\n", Verdict.MALFORMED, "From:"),
        (b"From: evil@attacker.example\r\n\r\n", Verdict.HEADER_SENDER_DENIED, "evil@"),
    ],
)
def test_raw_message_rejected(raw: bytes, verdict: Verdict, in_detail: str) -> None:
    decision = check_raw_message(RULES, raw)
    assert rejected(decision) is verdict
    assert isinstance(decision, Rejected)
    assert in_detail in decision.detail


def test_raw_message_detail_never_quotes_the_body() -> None:
    secret = b"password=hunter2"
    raw = b"From: noreply@example.com\r\n\r\n" + secret + b"\n"
    decision = check_raw_message(RULES, raw)
    assert isinstance(decision, Rejected)
    assert "hunter2" not in decision.detail


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?", fullmatch=True)
addresses = st.builds(
    lambda local, parts, top: f"{local}@{'.'.join([*parts, top])}",
    st.text(ATEXT, min_size=1, max_size=10).filter(lambda local: "=?" not in local),
    st.lists(labels, min_size=1, max_size=2),
    st.sampled_from(["com", "org", "Example", "NET"]),
)
# Near-miss paths too: some parse, some do not.
paths = addresses | st.text('ab@.<>" *?E', max_size=12)
patterns = st.lists(
    addresses | st.text("ab@.*?E", max_size=10) | st.sampled_from(["*", "*@*.com", "?@*"]),
    max_size=3,
).map(tuple)


def canonical(path: str) -> str | None:
    try:
        return parse_envelope_address(path)
    except AddressError:
        return None


@given(allowed=patterns, path=paths)
@settings(max_examples=examples(60))
def test_sender_accepted_iff_its_canonical_address_matches(
    allowed: tuple[str, ...], path: str
) -> None:
    rules = Rules(allowed, (), 1, 1)
    address = canonical(path)
    decision = check_sender(rules, path)
    if address is None:
        assert rejected(decision) is Verdict.SENDER_SYNTAX
    elif matches_any(allowed, address):
        assert decision == Accepted(address)
    else:
        assert rejected(decision) is Verdict.SENDER_DENIED


@given(
    allowed=patterns,
    path=paths,
    maximum=st.integers(1, 60),
    count=st.integers(0, 100),
)
@settings(max_examples=examples(60))
def test_recipient_accepted_iff_allowed_and_under_the_limit(
    allowed: tuple[str, ...], path: str, maximum: int, count: int
) -> None:
    rules = Rules((), allowed, maximum, 1)
    address = canonical(path)
    decision = check_recipient(rules, path, count)
    if address is None:
        assert rejected(decision) is Verdict.RECIPIENT_SYNTAX
    elif not matches_any(allowed, address):
        assert rejected(decision) is Verdict.RECIPIENT_DENIED
    elif count >= maximum:
        assert rejected(decision) is Verdict.TOO_MANY_RECIPIENTS
    else:
        assert decision == Accepted(address)


@given(
    allowed=patterns,
    transaction=st.lists(paths, max_size=30),
    maximum=st.integers(1, 10),
)
@settings(max_examples=examples(60))
def test_a_transaction_never_accepts_more_than_max_recipients(
    allowed: tuple[str, ...], transaction: list[str], maximum: int
) -> None:
    rules = Rules((), allowed, maximum, 1)
    accepted: list[str] = []
    for path in transaction:
        decision = check_recipient(rules, path, len(accepted))
        if isinstance(decision, Accepted):
            assert decision.address is not None
            accepted.append(decision.address)
    assert len(accepted) <= maximum


@given(allowed=patterns, address=addresses, display=st.text(max_size=20), planted=addresses)
@settings(max_examples=examples(60))
def test_header_from_accepted_iff_the_angle_addr_matches(
    allowed: tuple[str, ...], address: str, display: str, planted: str
) -> None:
    rules = Rules(allowed, (), 1, 10_000)
    name = '"' + "".join(c for c in display + planted if c not in '\\"<>') + '"'
    decision = check_message(rules, headers(f"{name} <{address}>"), 10)
    if any((ord(char) < 32 and char != "\t") or char == "\x7f" for char in display):
        assert rejected(decision) is Verdict.HEADER_SENDER_DENIED
    elif matches_any(allowed, address.lower()):
        assert decision == Accepted()
    else:
        assert rejected(decision) is Verdict.HEADER_SENDER_DENIED


@given(size=st.integers(-(10**6), 10**7), limit=st.integers(1, 10**6))
@settings(max_examples=examples(100))
def test_sizes_over_the_limit_are_refused(size: int, limit: int) -> None:
    rules = Rules(("*",), ("*",), 1, limit)
    declared = check_declared_size(rules, size)
    judged = check_message(rules, headers("a@example.com"), size)
    if size > limit:
        assert rejected(declared) is Verdict.SIZE_EXCEEDED
        assert rejected(judged) is Verdict.SIZE_EXCEEDED
    else:
        assert isinstance(judged, Accepted)
        assert isinstance(declared, Accepted) is (size >= 0)


# ---------------------------------------------------------------------------
# client_admitted: the network gate at connect


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 32))
def test_client_admitted_is_membership_for_ipv4_and_its_mapped_form(
    client: ipaddress.IPv4Address, base: ipaddress.IPv4Address, prefix: int
) -> None:
    network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    assert policy.client_admitted([network], str(client)) is (client in network)
    assert policy.client_admitted([network], f"::ffff:{client}") is (client in network)


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(0, 128))
def test_client_admitted_is_membership_for_ipv6(
    client: ipaddress.IPv6Address, base: ipaddress.IPv6Address, prefix: int
) -> None:
    assume(client.ipv4_mapped is None)
    network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    assert policy.client_admitted([network], str(client)) is (client in network)


@pytest.mark.parametrize("host", ["", "localhost", "127.0.0.1.evil", "/run/x.sock", "0x7f000001"])
def test_client_admitted_refuses_what_is_not_an_address(host: str) -> None:
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    assert policy.client_admitted(everything, host) is False


_TAG_TEXT = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=12)


@settings(max_examples=examples(100))
@given(st.dictionaries(_TAG_TEXT, _TAG_TEXT, min_size=1, max_size=5), st.sampled_from([",", ", "]))
def test_message_tags_read_back_what_an_app_wrote(tags: dict[str, str], separator: str) -> None:
    header = separator.join(f"{name}={value}" for name, value in tags.items())
    assert parse_message_tags([header]) == tuple(tags.items())


@pytest.mark.parametrize(
    "header",
    [
        "campaign",
        "campaign=",
        "=spring",
        "campaign=spring sale",
        "a=b, a=c",
        "né=x",
        "a=" + "x" * 257,
    ],
)
def test_a_message_tag_ses_would_refuse_is_malformed(header: str) -> None:
    refused = parse_message_tags([header])
    assert isinstance(refused, Rejected)
    assert refused.verdict is Verdict.MALFORMED


def test_the_configuration_set_a_header_may_choose() -> None:
    rules = replace(RULES, allowed_configuration_sets=("marketing",), configuration_set="default")
    headers = HeaderScan(("noreply@example.com",), (), ("marketing",))
    assert check_message(rules, headers, 10) == Accepted(configuration_set="marketing")
    elsewhere = replace(headers, configuration_sets=("other",))
    assert rejected(check_message(rules, elsewhere, 10)) is Verdict.CONFIGURATION_SET_DENIED
    twice = replace(headers, configuration_sets=("marketing", "marketing"))
    assert rejected(check_message(rules, twice, 10)) is Verdict.MALFORMED
    # With no list, the header is ignored: the session's own set.
    ignored = replace(RULES, configuration_set="default")
    assert check_message(ignored, elsewhere, 10) == Accepted(configuration_set="default")


def test_configured_tags_win_over_the_headers() -> None:
    rules = replace(RULES, allow_message_tags=True, message_tags=(("app", "billing"),))
    headers = HeaderScan(("noreply@example.com",), (), (), ("app=spoofed, run=7",))
    decision = check_message(rules, headers, 10)
    assert decision == Accepted(tags=(("app", "billing"), ("run", "7")))
    closed = replace(rules, allow_message_tags=False)
    assert check_message(closed, headers, 10) == Accepted(tags=(("app", "billing"),))
