"""The policy decisions: examples for each verdict, then properties."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proxy import policy
from proxy.addresses import matches_any
from proxy.message import HeaderScan
from proxy.policy import (
    Accepted,
    Decision,
    Rejected,
    Rules,
    Verdict,
    check_data_size,
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
    assert check_message(RULES, scan) == Accepted()


def test_envelope_and_header_senders_are_judged_separately() -> None:
    # They need not be equal: each must be allowed on its own.
    assert isinstance(check_sender(RULES, "noreply@example.com"), Accepted)
    assert check_message(RULES, headers("billing@example.org")) == Accepted()


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
    decision = check_message(RULES, scan)
    assert rejected(decision) is Verdict.HEADER_SENDER_DENIED
    assert isinstance(decision, Rejected)
    assert in_detail in decision.detail


def test_data_size_up_to_the_limit_passes() -> None:
    assert check_data_size(RULES, 1000) == Accepted()
    decision = check_data_size(RULES, 1001)
    assert rejected(decision) is Verdict.SIZE_EXCEEDED
    assert isinstance(decision, Rejected)
    assert "1001 exceeds max_message_bytes 1000" in decision.detail


@pytest.mark.parametrize(
    "scan",
    [
        HeaderScan((), ()),
        HeaderScan(("noreply@example.com", "noreply@example.com"), ()),
        HeaderScan(("noreply@example.com",), ("a@example.org", "a@example.org")),
    ],
)
def test_a_hand_built_scan_cannot_bypass_the_counts(scan: HeaderScan) -> None:
    assert rejected(check_message(RULES, scan)) is Verdict.MALFORMED


# ---------------------------------------------------------------------------
# check_raw_message
# ---------------------------------------------------------------------------


def test_raw_message_accepted() -> None:
    raw = b"From: App <noreply@example.com>\r\nSubject: s\r\n\r\nbody\r\n"
    assert check_raw_message(RULES, raw) == Accepted()


@pytest.mark.parametrize(
    ("raw", "verdict", "in_detail"),
    [
        (
            b"From: noreply@example.com\r\n\r\n" + b"x" * 999 + b"\r\n",
            Verdict.MALFORMED,
            "999 octets",
        ),
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
# Properties: the decisions against an oracle written here, sharing no code with
# proxy.policy or proxy.addresses. Every address is built, so the test knows its
# canonical form without parsing it.
# ---------------------------------------------------------------------------


def like(pattern: str, value: str) -> bool:
    """IAM StringLike, case-insensitive, as a table: after reading the pattern up to
    some point, reached[j] says whether it matches the value's first j characters."""
    pattern, value = pattern.lower(), value.lower()
    reached = [True] + [False] * len(value)
    for char in pattern:
        if char == "*":
            # Any run: every length from the first one reached onwards.
            first = reached.index(True) if True in reached else len(reached)
            reached = [j >= first for j in range(len(reached))]
        else:
            reached = [False] + [reached[j] and char in ("?", value[j]) for j in range(len(value))]
    return reached[-1]


def like_any(patterns: tuple[str, ...], value: str) -> bool:
    return any(like(pattern, value) for pattern in patterns)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("", "", True),
        ("*", "", True),
        ("?", "", False),
        ("a*b", "ab", True),
        ("a*b", "ba", False),
        ("ab*ba", "aba", False),
        ("ab*ba", "abba", True),
        ("*@A.com", "x@a.COM", True),
        ("?@a.com", "xy@a.com", False),
        ("a**?", "ab", True),
        ("*a*a*", "aa", True),
        ("*a*a*", "ba", False),
    ],
)
def test_the_oracle_is_stringlike(pattern: str, value: str, expected: bool) -> None:
    assert like(pattern, value) is expected


# Few letters: patterns and addresses overlap often (prefix and suffix of a "*"
# that overlap each other, "?" against the end); upper case checks the folding.
local_parts = st.from_regex(r"[abAB][abAB+-]{0,4}", fullmatch=True)
domains = st.builds(
    lambda name, top: f"{name}.{top}",
    st.from_regex(r"[abAB]{1,3}", fullmatch=True),
    st.sampled_from(["com", "org", "COM"]),
)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)


@st.composite
def pattern_like(draw: st.DrawFn, address: str) -> str:
    """A pattern made from an address: some characters kept, some made wild."""
    out = []
    for char in address:
        choice = draw(st.sampled_from(["keep", "keep", "keep", "?", "*", "swap", "drop"]))
        out.append({"keep": char, "?": "?", "*": "*", "swap": char.swapcase(), "drop": ""}[choice])
    return "".join(out)


@st.composite
def cut_like(draw: st.DrawFn, address: str) -> str:
    """The address's start and end with wildcards between: a match when they do not
    overlap, else a near miss ("ab*ba" against "aba", "a.com?" against "a.com")."""
    # The ends of the address most often: that is where matchers slip.
    positions = st.integers(0, len(address)) | st.sampled_from([0, len(address)])
    start, end = draw(positions), draw(positions)
    wild = draw(st.sampled_from(["*", "?", "??", "*?", "?*", "**", ""]))
    return address[:start] + wild + address[end:]


patterns = st.lists(
    addresses.flatmap(pattern_like)
    | addresses
    | st.text("abAB@.*?", max_size=8)
    | st.sampled_from(["*", "*@*", "?*", "*@a.com"]),
    max_size=3,
).map(tuple)


@given(address=addresses, data=st.data())
@settings(max_examples=examples(1000))
def test_the_matcher_the_decisions_use_is_the_oracles(address: str, data: st.DataObject) -> None:
    # Many more patterns than the decisions below can afford, at the matcher itself.
    pattern = data.draw(pattern_like(address) | cut_like(address) | st.text("abAB@.*?", max_size=8))
    assert matches_any((pattern,), address.lower()) is like(pattern, address)


@st.composite
def envelope_paths(draw: st.DrawFn) -> tuple[str, str | None]:
    """A MAIL FROM / RCPT TO path and its canonical address (None: refused as syntax)."""
    local, domain = draw(local_parts), draw(domains)
    address = f"{local}@{domain}"
    valid = [address, f"<{address}>"]
    invalid = [
        "",
        "<>",
        local,
        f"{local}@@{domain}",
        f"{local} x@{domain}",
        f'"{local}"@{domain}',
        f"@relay.test:{address}",
        f"{address}\r\nRCPT TO:<{address}>",
        f"{local}@[192.0.2.1]",
        f"{local}@{domain}.",
        f"{local}..a@{domain}",
    ]
    if draw(st.sampled_from([True, True, True, False])):
        return draw(st.sampled_from(valid)), address.lower()
    return draw(st.sampled_from(invalid)), None


def near(data: st.DataObject, allowed: tuple[str, ...], judged: list[str]) -> tuple[str, ...]:
    """The patterns, often with one made from an address being judged (a match or a
    near miss, which random patterns rarely are), or listing every judged address in
    upper case but perhaps one: all allowed, where what is left to refuse is the form
    (a second Sender:), or all but one, which must be refused wherever it stands."""
    mode = data.draw(st.sampled_from(["as drawn", "one near", "all listed", "all but one"]))
    if not judged or mode == "as drawn":
        return allowed
    if mode == "one near":
        address = data.draw(st.sampled_from(judged))
        return (*allowed, data.draw(pattern_like(address) | cut_like(address)))
    left_out = data.draw(st.sampled_from(judged)) if mode == "all but one" else None
    return (*allowed, *(address.upper() for address in judged if address != left_out))


@given(allowed=patterns, path=envelope_paths(), data=st.data())
@settings(max_examples=examples(300))
def test_sender_decision_is_the_oracles(
    allowed: tuple[str, ...], path: tuple[str, str | None], data: st.DataObject
) -> None:
    text, address = path
    allowed = near(data, allowed, [address] if address else [])
    decision = check_sender(Rules(allowed, ("*",), 1, 1), text)
    if address is None:
        assert rejected(decision) is Verdict.SENDER_SYNTAX
    elif like_any(allowed, address):
        assert decision == Accepted(address)
    else:
        assert rejected(decision) is Verdict.SENDER_DENIED


@given(
    allowed=patterns,
    transaction=st.lists(envelope_paths(), max_size=12),
    maximum=st.integers(1, 6),
    data=st.data(),
)
@settings(max_examples=examples(200))
def test_recipient_decisions_are_the_oracles(
    allowed: tuple[str, ...],
    transaction: list[tuple[str, str | None]],
    maximum: int,
    data: st.DataObject,
) -> None:
    allowed = near(data, allowed, [address for _, address in transaction if address])
    rules = Rules(("*",), allowed, maximum, 1)
    accepted = 0
    for text, address in transaction:
        decision = check_recipient(rules, text, accepted)
        if address is None:
            assert rejected(decision) is Verdict.RECIPIENT_SYNTAX
        elif not like_any(allowed, address):
            assert rejected(decision) is Verdict.RECIPIENT_DENIED
        elif accepted >= maximum:
            assert rejected(decision) is Verdict.TOO_MANY_RECIPIENTS
        else:
            assert decision == Accepted(address)
            accepted += 1


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[str, str]:
    """One mailbox as a header writes it, and its canonical address."""
    address = draw(addresses)
    # A display name may look like an address: only the one in <> counts.
    planted = draw(addresses)
    forms = [
        address,
        f"<{address}>",
        f"{draw(st.from_regex(r'[A-Za-z]{1,6}( [A-Za-z]{1,6})?', fullmatch=True))} <{address}>",
        f'"{planted}, Ltd" <{address}>',
        f"{address} ({planted})",
    ]
    return draw(st.sampled_from(forms)), address.lower()


mailbox_lists = st.lists(mailboxes(), min_size=1, max_size=3)


def oracle_headers(
    allowed: tuple[str, ...],
    from_list: list[tuple[str, str]],
    sender_list: list[tuple[str, str]] | None,
) -> Verdict | None:
    """The verdict on a message with this From: and Sender: (None: accepted)."""
    judged = [address for _, address in from_list]
    if sender_list is not None:
        if len(sender_list) != 1:  # RFC 5322: Sender: is one mailbox
            return Verdict.HEADER_SENDER_DENIED
        judged += [address for _, address in sender_list]
    return None if all(like_any(allowed, a) for a in judged) else Verdict.HEADER_SENDER_DENIED


def field(mailbox_list: list[tuple[str, str]]) -> str:
    return ", ".join(text for text, _ in mailbox_list)


@given(allowed=patterns, address=addresses, display=st.text(max_size=20), planted=addresses)
@settings(max_examples=examples(100))
def test_any_quoted_display_name_leaves_the_angle_addr_judged(
    allowed: tuple[str, ...], address: str, display: str, planted: str
) -> None:
    name = '"' + "".join(c for c in display + planted if c not in '\\"<>') + '"'
    decision = check_message(Rules(allowed, ("*",), 1, 10_000), headers(f"{name} <{address}>"))
    if any((ord(char) < 32 and char != "\t") or char == "\x7f" for char in display):
        # A control character is never part of a header value we judge.
        assert rejected(decision) is Verdict.HEADER_SENDER_DENIED
    elif like_any(allowed, address):
        assert decision == Accepted()
    else:
        assert rejected(decision) is Verdict.HEADER_SENDER_DENIED


@given(
    allowed=patterns,
    from_list=mailbox_lists,
    sender_list=st.none() | mailbox_lists,
    data=st.data(),
)
@settings(max_examples=examples(300))
def test_message_decision_is_the_oracles(
    allowed: tuple[str, ...],
    from_list: list[tuple[str, str]],
    sender_list: list[tuple[str, str]] | None,
    data: st.DataObject,
) -> None:
    judged = from_list + (sender_list or [])
    allowed = near(data, allowed, [address for _, address in judged])
    senders = () if sender_list is None else (field(sender_list),)
    decision = check_message(
        Rules(allowed, ("*",), 1, 10_000), HeaderScan((field(from_list),), senders)
    )
    expected = oracle_headers(allowed, from_list, sender_list)
    if expected is None:
        assert decision == Accepted()
    else:
        assert rejected(decision) is expected


@given(
    allowed=patterns,
    from_list=mailbox_lists,
    sender_list=st.none() | mailbox_lists,
    data=st.data(),
    body=st.lists(st.text("ab .", max_size=20), max_size=5),
    slack=st.integers(-3, 3),
)
@settings(max_examples=examples(200))
def test_raw_message_decision_is_the_oracles(
    allowed: tuple[str, ...],
    from_list: list[tuple[str, str]],
    sender_list: list[tuple[str, str]] | None,
    data: st.DataObject,
    body: list[str],
    slack: int,
) -> None:
    judged = from_list + (sender_list or [])
    allowed = near(data, allowed, [address for _, address in judged])
    lines = [f"From: {field(from_list)}", "Subject: s"]
    if sender_list is not None:
        lines.append(f"Sender: {field(sender_list)}")
    raw = "\r\n".join([*lines, "", *body, ""]).encode("ascii")
    limit = max(1, len(raw) + slack)  # the limit is the message's size, give or take
    rules = Rules(allowed, ("*",), 1, limit)
    # As the SMTP layer asks: the size as DATA is read, then the message.
    decision = check_data_size(rules, len(raw))
    if isinstance(decision, Accepted):
        decision = check_raw_message(rules, raw)
    expected = (
        Verdict.SIZE_EXCEEDED
        if len(raw) > limit
        else oracle_headers(allowed, from_list, sender_list)
    )
    if expected is None:
        assert decision == Accepted()
    else:
        assert rejected(decision) is expected


@given(size=st.none() | st.integers(-(10**6), 10**7), limit=st.integers(1, 10**6))
@settings(max_examples=examples(100))
def test_declared_size_decision_is_the_oracles(size: int | None, limit: int) -> None:
    decision = check_declared_size(Rules(("*",), ("*",), 1, limit), size)
    if size is not None and (size < 0 or size > limit):
        assert rejected(decision) is Verdict.SIZE_EXCEEDED
    else:
        assert decision == Accepted()


@given(size=st.integers(0, 10**7), limit=st.integers(1, 10**6))
@settings(max_examples=examples(100))
def test_data_size_decision_is_the_oracles(size: int, limit: int) -> None:
    decision = check_data_size(Rules(("*",), ("*",), 1, limit), size)
    if size > limit:
        assert rejected(decision) is Verdict.SIZE_EXCEEDED
    else:
        assert decision == Accepted()


# ---------------------------------------------------------------------------
# client_admitted: the network gate at connect


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 32))
@settings(max_examples=examples(100))
def test_client_admitted_is_membership_for_ipv4_and_its_mapped_form(
    client: ipaddress.IPv4Address, base: ipaddress.IPv4Address, prefix: int
) -> None:
    network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    assert policy.client_admitted([network], str(client)) is (client in network)
    assert policy.client_admitted([network], f"::ffff:{client}") is (client in network)


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(0, 128))
@settings(max_examples=examples(100))
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
    assert check_message(rules, headers) == Accepted(configuration_set="marketing")
    elsewhere = replace(headers, configuration_sets=("other",))
    assert rejected(check_message(rules, elsewhere)) is Verdict.CONFIGURATION_SET_DENIED
    twice = replace(headers, configuration_sets=("marketing", "marketing"))
    assert rejected(check_message(rules, twice)) is Verdict.MALFORMED
    # With no list, the header is ignored: the session's own set.
    ignored = replace(RULES, configuration_set="default")
    assert check_message(ignored, elsewhere) == Accepted(configuration_set="default")


def test_configured_tags_win_over_the_headers() -> None:
    rules = replace(RULES, allow_message_tags=True, message_tags=(("app", "billing"),))
    headers = HeaderScan(("noreply@example.com",), (), (), ("app=spoofed, run=7",))
    decision = check_message(rules, headers)
    assert decision == Accepted(tags=(("app", "billing"), ("run", "7")))
    closed = replace(rules, allow_message_tags=False)
    assert check_message(closed, headers) == Accepted(tags=(("app", "billing"),))
