"""Address parsing and IAM ``StringLike`` matching.

Pure: text in, a canonical address (or an AddressError) out. No I/O, no state.

Every accepted address comes out in one canonical form, ``local@domain`` in
lowercase ASCII, so that this proxy's patterns and IAM's case-sensitive
``StringLike`` on ``ses:FromAddress`` / ``ses:Recipients`` judge the same string.

The parsers are deliberately stricter than RFC 5321/5322. A rejection costs the
client a 550; a mis-parse lets a forged sender through. So anything whose mailbox
is not obvious is refused: quoted local parts, source routes, groups, address
literals, non-ASCII addresses, encoded-words in an address, an "@" in an
unquoted display name, spaces or comments inside an address, and a backslash or
an angle bracket inside a quoted display name or a comment (parsers disagree
about those).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple


class AddressError(ValueError):
    """An address we refuse to judge. The message says why; it is safe to log."""


# RFC 5321 4.5.3.1: local part 64, domain 255, path 256 octets including "<" and ">".
_MAX_LOCAL = 64
_MAX_DOMAIN = 255
_MAX_ADDR_SPEC = 256 - len("<>")

# RFC 5322 dot-atom: atext runs joined by single dots. Written out in ASCII so that
# no Unicode letter or digit can slip through the character classes.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# RFC 1123 host name label (checked after lowercasing).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# C0 controls except HTAB, and DEL. Never legitimate in an address or a header value.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Space, every C0 control and DEL: none belongs in an envelope path.
_BLANK_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")

_ERROR_SHOWN_CHARS = 80


def _show(text: str) -> str:
    """Quote text for an error message: repr() so that control characters cannot
    forge log lines, truncated so that a megabyte header does not flood the log."""
    if len(text) > _ERROR_SHOWN_CHARS:
        return repr(text[:_ERROR_SHOWN_CHARS]) + "…"
    return repr(text)


def _canonical(local: str, domain: str) -> str:
    """Validate an addr-spec split at its "@" and return it lowercased.

    Shared by the envelope and the header parsers so that both accept exactly the
    same addresses.
    """
    address = f"{local}@{domain}"
    # Before any lowercasing: str.lower() maps some non-ASCII characters onto ASCII
    # (KELVIN SIGN U+212A becomes "k"), which would forge an allowed address.
    if not address.isascii():
        raise AddressError(f"non-ASCII character in address {_show(address)} (no SMTPUTF8)")
    if not local:
        raise AddressError(f"empty local part in {_show(address)}")
    if len(local) > _MAX_LOCAL:
        raise AddressError(f"local part longer than {_MAX_LOCAL} octets in {_show(address)}")
    if not _DOT_ATOM.fullmatch(local):
        raise AddressError(f"invalid local part in {_show(address)}")
    if "=?" in local:
        # RFC 2047 forbids encoded-words in an addr-spec, yet some parsers decode
        # them there (Python's email turns "=?utf-8?q?x?=@b.example" into
        # "x@b.example"): we and a recipient would judge different addresses.
        raise AddressError(f"encoded-word in local part of {_show(address)}")
    _check_domain(domain.lower(), address)
    if len(address) > _MAX_ADDR_SPEC:
        raise AddressError(f"address longer than {_MAX_ADDR_SPEC} octets: {_show(address)}")
    return address.lower()


def _check_domain(domain: str, address: str) -> None:
    if not domain:
        raise AddressError(f"empty domain in {_show(address)}")
    if domain.startswith("["):
        # A literal like [192.0.2.1] names no SES identity, and no application
        # sending through SES needs one.
        raise AddressError(f"address literals are not accepted: {_show(address)}")
    if len(domain) > _MAX_DOMAIN:
        raise AddressError(f"domain longer than {_MAX_DOMAIN} octets in {_show(address)}")
    labels = domain.split(".")
    if len(labels) < 2:
        # A dotless domain ("localhost") cannot be sent to or from through SES.
        raise AddressError(f"domain has no dot in {_show(address)}")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise AddressError(f"invalid domain label {_show(label)} in {_show(address)}")
    if labels[-1].isdigit():
        # "user@192.0.2.1": an IP address without brackets, not a host name.
        raise AddressError(f"numeric top-level label in {_show(address)}")


def parse_envelope_address(text: str) -> str:
    """The canonical ``local@domain`` of a MAIL FROM / RCPT TO path.

    aiosmtpd hands the path with its angle brackets stripped; one enclosing
    pair is tolerated anyway.
    """
    address = text
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    if not address:
        raise AddressError("empty address (the null path <> is not accepted)")
    if not address.isascii():
        raise AddressError(f"non-ASCII character in address {_show(address)} (no SMTPUTF8)")
    if _BLANK_OR_CONTROL.search(address):
        raise AddressError(f"whitespace or control character in address {_show(address)}")
    if address.startswith("@"):
        raise AddressError(f"source routes are not accepted: {_show(address)}")
    if '"' in address or "\\" in address:
        # '"a@evil"@example.org': which "@" counts depends on who parses it.
        raise AddressError(f"quoted local parts are not accepted: {_show(address)}")
    if address.count("@") != 1:
        raise AddressError(f"address needs exactly one '@': {_show(address)}")
    local, _, domain = address.partition("@")
    return _canonical(local, domain)


# ---------------------------------------------------------------------------
# Header field values (From:, Sender:), RFC 5322 section 3.4, strict subset:
#
#   mailbox-list = mailbox *("," mailbox)
#   mailbox      = addr-spec / [display-name] "<" addr-spec ">"
#   display-name = 1*(atom / quoted-string)      ; "." allowed in atoms (obs-phrase)
#                                                ; no backslash, "<" or ">" inside quotes
#   addr-spec    = dot-atom "@" dot-atom          ; no spaces or comments inside
#
# Comments and whitespace may stand between these parts and are dropped.
# Display names are never decoded (RFC 2047 encoded words stay opaque atoms), so
# nothing in a display name can ever become an address.
# ---------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "atom", "quoted", or one of the punctuation characters "<", ">", "@", ","
    text: str
    start: int  # offset in the header value
    spaced: bool  # whitespace or a comment stands right before it


_PUNCTUATION = frozenset("<>@,")
_REFUSED = {
    ":": "':' is not accepted (group syntax or source route)",
    ";": "';' is not accepted (group syntax)",
    "[": "domain literals are not accepted",
    "]": "unbalanced ']'",
    "\\": "backslash (quoted-pair) is not accepted",
    ")": "unbalanced ')'",
}
# Everything that ends an atom. "." is deliberately absent: "a.b" and "J." are one
# atom each, and the dot-atom rule is enforced on the finished addr-spec.
_ATOM_END = frozenset(' \t()<>[]:;@\\,"')


# Refused inside quoted strings and comments, although RFC 5322 allows them there.
# A quoted-pair (backslash) is not honoured by every parser, and an angle bracket
# is what naive extractors look for first: either way a recipient's software may
# read '"<ceo@example.com>" <noreply@example.com>' or '(a\) <x@evil.example>)
# ok@example.com' as a different address than we do. Real display names do not
# need them; an "@" stays allowed.
_REFUSED_INSIDE = {
    "\\": "backslash (quoted-pair)",
    "<": "'<'",
    ">": "'>'",
}


def _refuse_inside(char: str, where: str, offset: int) -> None:
    if char in _REFUSED_INSIDE:
        raise AddressError(f"{_REFUSED_INSIDE[char]} inside a {where} (offset {offset})")


def _end_of_comment(value: str, start: int) -> int:
    """Offset just past the comment opening at value[start] (comments nest)."""
    depth = 0
    for i in range(start, len(value)):
        char = value[i]
        _refuse_inside(char, "comment", i)
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise AddressError(f"unterminated comment at offset {start}")


def _end_of_quoted(value: str, start: int) -> int:
    """Offset just past the quoted string opening at value[start]."""
    for i in range(start + 1, len(value)):
        char = value[i]
        _refuse_inside(char, "quoted string", i)
        if char == '"':
            return i + 1
    raise AddressError(f"unterminated quoted string at offset {start}")


def _tokenize(value: str) -> list[_Token]:
    tokens: list[_Token] = []
    spaced = False
    i = 0
    while i < len(value):
        char = value[i]
        if char in " \t":
            spaced = True
            i += 1
            continue
        if char == "(":
            i = _end_of_comment(value, i)
            spaced = True
            continue
        if char in _REFUSED:
            raise AddressError(f"{_REFUSED[char]} (offset {i})")
        if char == '"':
            end = _end_of_quoted(value, i)
            tokens.append(_Token("quoted", value[i:end], i, spaced))
        elif char in _PUNCTUATION:
            end = i + 1
            tokens.append(_Token(char, char, i, spaced))
        else:
            end = i + 1
            while end < len(value) and value[end] not in _ATOM_END:
                end += 1
            tokens.append(_Token("atom", value[i:end], i, spaced))
        spaced = False
        i = end
    return tokens


def _addr_spec_at(tokens: list[_Token], pos: int) -> tuple[str, str] | None:
    """(local, domain) if tokens[pos:pos+3] are atom "@" atom written with no
    space or comment inside, else None. Validity is checked by the caller."""
    if pos + 3 > len(tokens):
        return None
    local, at, domain = tokens[pos : pos + 3]
    if (local.kind, at.kind, domain.kind) != ("atom", "@", "atom"):
        return None
    if at.spaced or domain.spaced:
        return None
    return local.text, domain.text


def _angle_addr(tokens: list[_Token], pos: int) -> tuple[str, int]:
    """Parse "<" addr-spec ">" starting at tokens[pos] (which is "<")."""
    spec = _addr_spec_at(tokens, pos + 1)
    if spec is not None and pos + 4 < len(tokens) and tokens[pos + 4].kind == ">":
        return _canonical(*spec), pos + 5
    inside = tokens[pos + 1] if pos + 1 < len(tokens) else None
    if inside is None:
        raise AddressError("unterminated '<'")
    if inside.kind == ">":
        raise AddressError("empty <> in a header address")
    if inside.kind == "@":
        raise AddressError("source routes are not accepted")
    if inside.kind == "quoted":
        raise AddressError("quoted local parts are not accepted")
    raise AddressError(f"malformed <address> at offset {tokens[pos].start}")


def _mailbox(tokens: list[_Token], pos: int) -> tuple[str, int]:
    """Parse one mailbox starting at tokens[pos]; return it and the next position."""
    spec = _addr_spec_at(tokens, pos)
    if spec is not None:
        end = pos + 3
        if end < len(tokens) and tokens[end].kind != ",":
            raise AddressError(
                f"unexpected {_show(tokens[end].text)} after an address"
                f" at offset {tokens[end].start}"
            )
        return _canonical(*spec), end
    start = pos
    while pos < len(tokens) and tokens[pos].kind in ("atom", "quoted"):
        pos += 1
    if pos < len(tokens) and tokens[pos].kind == "<":
        return _angle_addr(tokens, pos)
    # Not a mailbox: name the most useful reason.
    if pos == start:
        where = f"offset {tokens[pos].start}" if pos < len(tokens) else "the end"
        raise AddressError(f"empty mailbox at {where}")
    if pos < len(tokens) and tokens[pos].kind == "@":
        if tokens[pos - 1].kind == "quoted" and not tokens[pos].spaced:
            raise AddressError("quoted local parts are not accepted")
        raise AddressError(
            f"'@' outside <...> at offset {tokens[pos].start}: an address with spaces or"
            " comments inside, or a display name containing an unquoted '@'"
        )
    raise AddressError(f"display name without <address> at offset {tokens[start].start}")


def parse_header_mailboxes(value: str) -> list[str]:
    """Every mailbox address in an unfolded From: or Sender: field value.

    Returns canonical lowercase ``local@domain`` strings in order of appearance.
    Display names and comments are skipped, never decoded. Raises AddressError
    whenever the mailboxes cannot be determined unambiguously.
    """
    control = _CONTROL.search(value)
    if control is not None:
        raise AddressError(f"control character at offset {control.start()}")
    tokens = _tokenize(value)
    if not tokens:
        raise AddressError("no address in header value")
    mailboxes: list[str] = []
    pos = 0
    while True:
        address, pos = _mailbox(tokens, pos)
        mailboxes.append(address)
        if pos == len(tokens):
            return mailboxes
        if tokens[pos].kind != ",":
            raise AddressError(
                f"unexpected {_show(tokens[pos].text)} after <{address}>"
                f" at offset {tokens[pos].start}"
            )
        pos += 1


# ---------------------------------------------------------------------------
# IAM StringLike
# ---------------------------------------------------------------------------


def string_like(pattern: str, value: str) -> bool:
    """IAM ``StringLike``: ``*`` matches any run (even empty), ``?`` exactly one
    character, everything else itself; case-insensitive.

    Greedy matching that, on a mismatch, only ever retries the most recent ``*``
    with one more character: an earlier ``*`` never needs revisiting, because the
    later one can absorb anything it would have. That bounds the work by
    len(pattern) * len(value): no catastrophic backtracking, no regex built from
    configuration or client data.
    """
    pattern = pattern.lower()
    value = value.lower()
    if "?" not in pattern:
        # The shapes nearly every policy uses, "a@b.example", "*@b.example" and
        # "*", decided without the loop below; it is what decides the others.
        stars = pattern.count("*")
        if stars == 0:
            return pattern == value
        if stars == 1:
            prefix, _, suffix = pattern.partition("*")
            return (
                len(value) >= len(prefix) + len(suffix)
                and value.startswith(prefix)
                and value.endswith(suffix)
            )
    p = v = 0
    star = -1  # position in pattern of the last "*" seen, -1 if none yet
    star_v = 0  # position in value where that "*" currently stops absorbing
    while v < len(value):
        if p < len(pattern) and pattern[p] == "*":
            star, star_v = p, v
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", value[v]):
            p += 1
            v += 1
        elif star >= 0:
            star_v += 1  # let the last "*" absorb one more character, and retry
            p, v = star + 1, star_v
        else:
            return False
    # The value is used up: only "*"s may remain in the pattern.
    return all(char == "*" for char in pattern[p:])


def matches_any(patterns: Iterable[str], value: str) -> bool:
    """True if value matches at least one pattern (IAM StringLike)."""
    if isinstance(patterns, str):
        # A bare string iterates as one-character patterns, and the single
        # character "*" would then allow everything.
        raise TypeError("patterns must be a collection of strings, not one string")
    return any(string_like(pattern, value) for pattern in patterns)
