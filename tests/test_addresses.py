"""Address parsing and StringLike matching: examples for every tricky case, then
properties (hypothesis), then fuzzing (no exception but AddressError)."""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.addresses import (
    AddressError,
    matches_any,
    parse_envelope_address,
    parse_header_mailboxes,
    string_like,
)
from tests.properties import examples

# ---------------------------------------------------------------------------
# parse_envelope_address: examples
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("user@example.com", "user@example.com"),
        ("User@Example.COM", "user@example.com"),
        ("<User@Example.com>", "user@example.com"),  # brackets left on: tolerated
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("o'brien@example.com", "o'brien@example.com"),
        ("prvs=1234=bounce@example.com", "prvs=1234=bounce@example.com"),
        ("a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),  # IDN as punycode is ASCII
        ("a@3com.com", "a@3com.com"),
        ("x" * 64 + "@example.com", "x" * 64 + "@example.com"),
    ],
)
def test_envelope_accepts(path: str, expected: str) -> None:
    assert parse_envelope_address(path) == expected


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("<>", "null path"),
        ("@a.example,@b.example:user@c.example", "source route"),
        ("<@a.example:user@c.example>", "source route"),
        ('"a@evil"@example.org', "quoted"),
        ('"john doe"@example.org', "whitespace"),
        ("a\\@b@example.org", "quoted"),
        ("usér@example.com", "non-ASCII"),
        ("user@exämple.com", "non-ASCII"),
        ("user@bücher.example", "non-ASCII"),
        ("\u212aevin@example.com", "non-ASCII"),  # KELVIN SIGN lowercases to "k"
        ("user@example.com\u200b", "non-ASCII"),
        ("user", "exactly one '@'"),
        ("a@b@example.com", "exactly one '@'"),
        ("@example.com", "source route"),
        ("user@", "empty domain"),
        ("user @example.com", "whitespace"),
        ("user@example.com ", "whitespace"),
        ("user@exa\tmple.com", "whitespace"),
        ("user@example.com\r\nRCPT TO:<x@evil.example>", "whitespace"),
        ("user\x00@example.com", "control"),
        ("user\x7f@example.com", "control"),
        ("user@[192.0.2.1]", "address literal"),
        ("user@[IPv6:2001:db8::1]", "address literal"),
        ("user@192.0.2.1", "numeric top-level"),
        ("user@localhost", "no dot"),
        ("user@example.com.", "invalid domain label"),
        ("user@.example.com", "invalid domain label"),
        ("user@example..com", "invalid domain label"),
        ("user@-example.com", "invalid domain label"),
        ("user@example-.com", "invalid domain label"),
        ("user@ex_ample.com", "invalid domain label"),
        ("user@" + "a" * 64 + ".com", "invalid domain label"),
        (".user@example.com", "invalid local part"),
        ("user.@example.com", "invalid local part"),
        ("us..er@example.com", "invalid local part"),
        ("us(er)@example.com", "invalid local part"),
        ("=?utf-8?q?ceo?=@example.com", "encoded-word"),
        ("x=?utf-8?q?ceo?=@example.com", "encoded-word"),
        ("us<er@example.com", "invalid local part"),
        ("<user@example.com", "invalid local part"),
        ("x" * 65 + "@example.com", "longer than 64"),
        ("x@" + ".".join(["a" * 63] * 4) + ".com", "longer than 255"),
        ("x" * 64 + "@" + ".".join(["a" * 60] * 3) + ".example", "longer than 254"),
    ],
)
def test_envelope_rejects(path: str, reason: str) -> None:
    with pytest.raises(AddressError, match=re.escape(reason)):
        parse_envelope_address(path)


def test_envelope_error_cannot_forge_a_log_line() -> None:
    with pytest.raises(AddressError) as caught:
        parse_envelope_address("a@b.example\nlevel=info msg=sent")
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------
# parse_header_mailboxes: examples
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user@example.com", ["user@example.com"]),
        ("  User@Example.COM  ", ["user@example.com"]),
        ("<user@example.com>", ["user@example.com"]),
        ("< user@example.com >", ["user@example.com"]),
        ("Name <user@example.com>", ["user@example.com"]),
        ("Jane Q. Public <user@example.com>", ["user@example.com"]),
        ('"Quoted, Name" <user@example.com>', ["user@example.com"]),
        ('"" <user@example.com>', ["user@example.com"]),
        # A display name holding an allowed address: only the angle-addr counts.
        ('"noreply@example.com" <evil@attacker.example>', ["evil@attacker.example"]),
        ('"noreply@example.com"<evil@attacker.example>', ["evil@attacker.example"]),
        # Comments are dropped, whatever they contain.
        ("evil@attacker.example (noreply@example.com)", ["evil@attacker.example"]),
        ("(noreply@example.com) evil@attacker.example", ["evil@attacker.example"]),
        ("(a (nested (deeply)) comment) user@example.com", ["user@example.com"]),
        ("Name (c) <user@example.com> (c)", ["user@example.com"]),
        ("<(inside)user@example.com(inside)>", ["user@example.com"]),
        # Encoded words stay opaque atoms: never decoded into an address.
        (
            "=?utf-8?b?bm9yZXBseUBleGFtcGxlLmNvbQ==?= <evil@attacker.example>",
            ["evil@attacker.example"],
        ),
        ("=?utf-8?q?Ren=C3=A9?= <user@example.com>", ["user@example.com"]),
        ('"=?utf-8?q?noreply=40example.com?=" <evil@attacker.example>', ["evil@attacker.example"]),
        # 8-bit display names arrive decoded as latin-1: allowed outside the address.
        ("RenÃ© <user@example.com>", ["user@example.com"]),
        ('"Jürgen" <user@example.com>', ["user@example.com"]),
        ("(Jürgen) user@example.com", ["user@example.com"]),
        ("Name\t<user@example.com>", ["user@example.com"]),
        # Several mailboxes.
        ("a@example.com, b@example.org", ["a@example.com", "b@example.org"]),
        ('A <a@example.com>,"B, b" <b@example.org>', ["a@example.com", "b@example.org"]),
        ("a@example.com,a@example.com", ["a@example.com", "a@example.com"]),
    ],
)
def test_header_accepts(value: str, expected: list[str]) -> None:
    assert parse_header_mailboxes(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "no address"),
        ("   ", "no address"),
        ("(only a comment)", "no address"),
        ("Name Only", "without <address>"),
        ('"Quoted Only"', "without <address>"),
        ("=?utf-8?b?bm9yZXBseUBleGFtcGxlLmNvbQ==?=", "without <address>"),
        # Groups.
        ("undisclosed-recipients:;", "':' is not accepted"),
        ("Team: a@example.com, b@example.com;", "':' is not accepted"),
        # Unquoted "@" in a display name: the mailbox is not obvious.
        ("noreply@example.com <evil@attacker.example>", "unexpected '<' after an address"),
        ("Name noreply@example.com <evil@attacker.example>", "'@' outside"),
        ("Name user@example.com", "'@' outside"),
        ("=?utf-8?q?noreply@example.com?= <evil@attacker.example>", "unexpected '<'"),
        # Spaces or comments inside an addr-spec (obsolete syntax).
        ("user @example.com", "'@' outside"),
        ("user@ example.com", "'@' outside"),
        ("user(c)@example.com", "'@' outside"),
        ("<user @example.com>", "malformed <address>"),
        ("<user@ example.com>", "malformed <address>"),
        ("<user@exa mple.com>", "malformed <address>"),
        # Quoted local parts.
        ('"a@evil"@example.org', "quoted local parts"),
        ('Name <"a@evil"@example.org>', "quoted local parts"),
        ('"a"."b"@example.org', "quoted local parts"),
        # Source routes and literals.
        ("<@relay.example:user@example.com>", "':' is not accepted"),
        ("<@relay.example,@b.example:user@example.com>", "':' is not accepted"),
        ("Name <@relay.example>", "source routes"),
        ("user@[192.0.2.1]", "domain literals"),
        # Non-ASCII or invalid addr-specs.
        ("usér@example.com", "non-ASCII"),
        ("Name <user@exämple.com>", "non-ASCII"),
        ("\u212aevin@example.com", "non-ASCII"),
        ("user@localhost", "no dot"),
        ("user@example.com.", "invalid domain label"),
        ("us..er@example.com", "invalid local part"),
        ("x" * 65 + "@example.com", "longer than 64"),
        ("=?utf-8?q?ceo?=@example.com", "encoded-word"),
        ("Name <=?utf-8?q?ceo?=@example.com>", "encoded-word"),
        # Two addresses in one mailbox, or missing separators.
        ("Name <a@example.com> <b@example.com>", "unexpected '<'"),
        ("a@example.com b@example.com", "unexpected 'b'"),
        ("<a@example.com> b@example.com", "unexpected"),
        ("a@example.com <b@example.com>", "unexpected '<'"),
        ("a@b@example.com", "unexpected '@'"),
        # Empty list elements.
        ("a@example.com,", "empty mailbox"),
        (",a@example.com", "empty mailbox"),
        ("a@example.com,,b@example.com", "empty mailbox"),
        ("<>", "empty <>"),
        # Unbalanced.
        ('"unterminated a@example.com', "unterminated quoted string"),
        ("(unterminated a@example.com", "unterminated comment"),
        ("((nested) a@example.com", "unterminated comment"),
        ("a@example.com)", "unbalanced ')'"),
        ("<a@example.com", "malformed <address>"),
        ("a@example.com>", "unexpected '>'"),
        ("Name <<a@example.com>>", "malformed <address>"),
        ("Name <a@example.com]", "unbalanced ']'"),
        ('"trailing backslash \\', "backslash"),
        ("back\\slash <a@example.com>", "backslash"),
        # Legal RFC 5322, but parsers disagree: refused inside quotes and comments.
        ("(escaped \\) paren) user@example.com", "backslash (quoted-pair) inside a comment"),
        ("(a\\) <evil@attacker.example>) user@example.com", "backslash (quoted-pair) inside"),
        ('"a\\" <evil@attacker.example> \\"" <user@example.com>', "backslash (quoted-pair)"),
        ('"Quote \\" inside" <user@example.com>', "backslash (quoted-pair) inside a quoted"),
        ('"<ceo@example.com>" <user@example.com>', "'<' inside a quoted string"),
        ('"ceo@example.com>" <user@example.com>', "'>' inside a quoted string"),
        ("user@example.com (<ceo@example.com>)", "'<' inside a comment"),
        ("(x (y <ceo@example.com>)) user@example.com", "'<' inside a comment"),
        # Control characters, including a header injection attempt.
        ("a@example.com\r\nBcc: x@example.com", "control character"),
        ("a@example.com\x00", "control character"),
        ('"Na\x1bme" <a@example.com>', "control character"),
    ],
)
def test_header_rejects(value: str, reason: str) -> None:
    with pytest.raises(AddressError, match=re.escape(reason)):
        parse_header_mailboxes(value)


# ---------------------------------------------------------------------------
# string_like / matches_any: examples
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("noreply@example.com", "noreply@example.com", True),
        ("NoReply@Example.com", "noreply@EXAMPLE.com", True),
        ("noreply@example.com", "noreply@example.co", False),
        ("noreply@example.com", "xnoreply@example.com", False),
        ("*@example.org", "anyone@example.org", True),
        ("*@example.org", "@example.org", True),
        ("*@example.org", "anyone@sub.example.org", False),
        ("*@example.org", "anyone@example.org.evil.example", False),
        ("*@*.example.org", "a@sub.example.org", True),
        ("*@*.example.org", "a@example.org", False),
        ("user?@example.com", "user1@example.com", True),
        ("user?@example.com", "user@example.com", False),
        ("user?@example.com", "user12@example.com", False),
        ("*", "", True),
        ("", "", True),
        ("", "a", False),
        ("?", "", False),
        ("**", "abc", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "aXbYcZ", False),
        ("*a", "baa", True),
        ("a.b", "aXb", False),  # "." is literal, not a regex wildcard
        ("[ab]", "a", False),  # brackets are literal too
        ("[ab]", "[ab]", True),
    ],
)
def test_string_like_examples(pattern: str, value: str, expected: bool) -> None:
    assert string_like(pattern, value) is expected


def test_string_like_on_backtracking_worst_cases() -> None:
    # A backtracking matcher would take hours on these; ours is O(len(pattern) * len(value)).
    assert not string_like("*a*a*a*a*a*a*a*a*a*a*b", "a" * 3000)
    assert string_like("*a*a*a*a*a*a*a*a*a*a*", "a" * 3000)


def test_matches_any() -> None:
    patterns = ("noreply@example.com", "*@example.org")
    assert matches_any(patterns, "NoReply@example.com")
    assert matches_any(patterns, "x@example.org")
    assert not matches_any(patterns, "x@example.com")
    assert not matches_any((), "x@example.org")
    assert matches_any(iter(["*"]), "x@example.org")


def test_matches_any_refuses_a_bare_string() -> None:
    # "x*" iterates as ("x", "*"), and "*" alone would allow everything.
    with pytest.raises(TypeError):
        matches_any("x*", "anyone@example.com")


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"

locals_ = (
    st.lists(st.text(ATEXT, min_size=1, max_size=8), min_size=1, max_size=3)
    .map(".".join)
    .filter(lambda local: len(local) <= 64 and "=?" not in local)
)
labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
top_labels = st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True)
domains = st.builds(
    lambda parts, top: ".".join([*parts, top]), st.lists(labels, min_size=1, max_size=3), top_labels
)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains)

# Printable text with everything a header parser might trip over, plus latin-1.
hostile_text = st.text(
    st.sampled_from(list(' \t"\\()<>[]:;@,.=?*abcXYZ09éÃ\u212a')) | st.characters(),
    max_size=40,
)


def plain(text: str, drop: str) -> str:
    return "".join(char for char in text if char not in drop)


def quoted(text: str) -> str:
    # Backslashes and angle brackets are refused inside quoted strings.
    return '"' + plain(text, '\\"<>') + '"'


def commented(text: str) -> str:
    # ... and inside comments, whose parentheses must also balance.
    text = plain(text, "\\()<>")
    return "((" + text + ") " + text + ")"


printable_no_controls = st.text(
    st.characters(codec="latin-1", exclude_characters="\r\n", exclude_categories=["Cc"])
    | st.just("\t"),
    max_size=30,
)

# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@given(pattern=st.text("ab*?", max_size=8), value=st.text("abAB", max_size=10))
@settings(max_examples=examples(150))
def test_string_like_agrees_with_fnmatch(pattern: str, value: str) -> None:
    # Without "[" in the pattern, fnmatch's * and ? mean exactly IAM's.
    assert string_like(pattern, value) is fnmatch.fnmatchcase(value.lower(), pattern.lower())


@given(
    prefix=st.text("abB.@", max_size=5),
    star=st.booleans(),
    suffix=st.text("abB.@", max_size=5),
    value=st.text("abAB.@", max_size=10),
)
@settings(max_examples=examples(300))
def test_string_like_literal_and_one_star_shapes_agree_with_fnmatch(
    prefix: str, star: bool, suffix: str, value: str
) -> None:
    # The shapes string_like decides without its loop: "lit", "pre*", "*suf", "pre*suf",
    # including a prefix and suffix that would overlap in a short value.
    pattern = prefix + ("*" if star else "") + suffix
    for candidate in (value, prefix + value + suffix, prefix + suffix, (prefix + suffix)[1:]):
        expected = fnmatch.fnmatchcase(candidate.lower(), pattern.lower())
        assert string_like(pattern, candidate) is expected


@given(pattern=st.text("aB.+*?\\", max_size=8), value=st.text("abAB.+\\\n", max_size=10))
@settings(max_examples=examples(150))
def test_string_like_agrees_with_a_regex(pattern: str, value: str) -> None:
    translated = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern.lower()
    )
    expected = re.fullmatch(translated, value.lower(), re.DOTALL) is not None
    assert string_like(pattern, value) is expected


@given(value=st.text())
@settings(max_examples=examples(100))
def test_star_matches_everything(value: str) -> None:
    assert string_like("*", value)
    assert string_like("**", value)


@given(pattern=st.text(st.characters(exclude_characters="*?"), max_size=12), value=st.text())
@example(pattern="Abc", value="aBC")
@example(pattern="abc", value="abcd")
@settings(max_examples=examples(100))
def test_a_literal_pattern_matches_only_itself(pattern: str, value: str) -> None:
    assert string_like(pattern, value) is (pattern.lower() == value.lower())
    assert string_like(pattern, pattern)


@given(pattern=st.text(st.characters(codec="ascii", exclude_characters="*?"), max_size=12))
@settings(max_examples=examples(100))
def test_ascii_matching_ignores_case(pattern: str) -> None:
    assert string_like(pattern.upper(), pattern.lower())
    assert string_like(pattern.lower(), pattern.upper())


@given(address=addresses)
@settings(max_examples=examples(100))
def test_envelope_accepts_valid_addresses_lowercased(address: str) -> None:
    assert parse_envelope_address(address) == address.lower()
    assert parse_envelope_address(f"<{address}>") == address.lower()


@given(address=addresses, position=st.integers(min_value=0), bad=st.sampled_from(" \t\r\n\x00\x7f"))
@settings(max_examples=examples(100))
def test_envelope_rejects_any_whitespace_or_control(address: str, position: int, bad: str) -> None:
    position %= len(address) + 1
    with pytest.raises(AddressError):
        parse_envelope_address(address[:position] + bad + address[position:])


@given(address=addresses, display=printable_no_controls, planted=addresses)
@example(address="evil@attacker.example", display="", planted="noreply@example.com")
@settings(max_examples=examples(60))
def test_only_the_angle_addr_counts_after_a_quoted_display_name(
    address: str, display: str, planted: str
) -> None:
    name = quoted(display + planted + display)
    assert parse_header_mailboxes(f"{name} <{address}>") == [address.lower()]
    assert parse_header_mailboxes(f"{name}<{address}>") == [address.lower()]


@given(address=addresses, comment=printable_no_controls, planted=addresses)
@settings(max_examples=examples(60))
def test_comments_never_contribute_an_address(address: str, comment: str, planted: str) -> None:
    note = commented(f"{comment} {planted} {comment}")
    assert parse_header_mailboxes(f"{note} {address} {note}") == [address.lower()]
    assert parse_header_mailboxes(f"Name {note} <{address}> {note}") == [address.lower()]


mailbox_forms = st.sampled_from(
    [
        "{a}",
        "<{a}>",
        "Name <{a}>",
        '"Last, First" <{a}>',
        "{a} (comment)",
        "=?utf-8?b?Zm9v?= <{a}>",
        '"x@y.example" <{a}>',
    ]
)


@given(mailboxes=st.lists(st.tuples(mailbox_forms, addresses), min_size=1, max_size=4))
@settings(max_examples=examples(60))
def test_mailbox_lists_yield_every_address_in_order(mailboxes: list[tuple[str, str]]) -> None:
    value = ", ".join(form.format(a=address) for form, address in mailboxes)
    assert parse_header_mailboxes(value) == [address.lower() for _, address in mailboxes]


# ---------------------------------------------------------------------------
# Fuzzing: arbitrary text never raises anything but AddressError, and whatever
# is returned is canonical and really present in the input.
# ---------------------------------------------------------------------------


def _assert_canonical(address: str) -> None:
    assert address.isascii()
    assert address == address.lower()
    # Both parsers accept exactly the same addresses.
    assert parse_envelope_address(address) == address


@given(value=hostile_text | st.text())
@settings(max_examples=examples(150))
def test_fuzz_envelope(value: str) -> None:
    try:
        address = parse_envelope_address(value)
    except AddressError:
        return
    _assert_canonical(address)
    assert address in value.lower()


@given(value=hostile_text | st.text())
@example(value='"a@b.example" <c@d.example>')
@example(value="a@b.example (c@d.example)")
@settings(max_examples=examples(100))
def test_fuzz_header(value: str) -> None:
    try:
        mailboxes = parse_header_mailboxes(value)
    except AddressError:
        return
    assert mailboxes
    for address in mailboxes:
        _assert_canonical(address)
        assert address in value.lower()


@given(
    parts=st.lists(
        st.sampled_from(
            ["a", "b.example", "@", "<", ">", ",", '"', "(", ")", " ", "\\", ":", ";", ".", "é"]
        ),
        max_size=16,
    )
)
@settings(max_examples=examples(100))
def test_fuzz_header_from_fragments(parts: list[str]) -> None:
    # Fragments make near-miss syntax far likelier than random characters do.
    value = "".join(parts)
    try:
        mailboxes = parse_header_mailboxes(value)
    except AddressError:
        return
    for address in mailboxes:
        _assert_canonical(address)
        assert address in value.lower()
