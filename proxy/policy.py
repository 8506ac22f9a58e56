"""The relay's decisions: may this sender, recipient, size, message pass?

Pure: rules and values in, a Decision out. No I/O, no logging, no clock. The SMTP
layer maps each Verdict to exactly one reply and decides nothing itself.

A Rejected's detail is for the operator's log. It may name addresses and header
parse errors; it never carries message body text, and the client never sees it.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.addresses import (
    AddressError,
    matches_any,
    parse_envelope_address,
    parse_header_mailboxes,
)
from proxy.message import HeaderScan, MalformedMessage, Octets, scan


class Verdict(enum.Enum):
    """Why something was refused: one per reply in the contract's table."""

    SENDER_DENIED = "sender_denied"  # 550 5.7.1 at MAIL (envelope)
    SENDER_SYNTAX = "sender_syntax"  # 553 5.1.3 at MAIL: not an address we can judge
    SIZE_EXCEEDED = "size_exceeded"  # 552 5.3.4 (MAIL SIZE= or DATA)
    RECIPIENT_DENIED = "recipient_denied"  # 550 5.7.1 at RCPT
    RECIPIENT_SYNTAX = "recipient_syntax"  # 553 5.1.3 at RCPT
    TOO_MANY_RECIPIENTS = "too_many_recipients"  # 452 4.5.3 at RCPT
    HEADER_SENDER_DENIED = "header_sender_denied"  # 550 5.7.1 after DATA
    CONFIGURATION_SET_DENIED = "configuration_set_denied"  # 550 5.7.1 after DATA
    MALFORMED = "malformed"  # 550 5.6.0 after DATA (message tags too)


Tag = tuple[str, str]


@dataclass(frozen=True)
class Rules:
    allowed_senders: tuple[str, ...]  # IAM StringLike patterns
    allowed_recipients: tuple[str, ...]  # IAM StringLike patterns
    max_recipients: int
    max_message_bytes: int
    # What a message may ask of SES through the SES SMTP interface's headers, and what
    # it gets without asking.
    allowed_configuration_sets: tuple[str, ...] = ()  # X-SES-CONFIGURATION-SET may name these
    allow_message_tags: bool = False  # X-SES-MESSAGE-TAGS become SES message tags
    configuration_set: str | None = None
    message_tags: tuple[Tag, ...] = ()

    def __post_init__(self) -> None:
        # A bare string would iterate as one-character patterns, and "*" among
        # them would allow everything.
        for name in ("allowed_senders", "allowed_recipients"):
            patterns = getattr(self, name)
            if isinstance(patterns, str):
                raise TypeError(f"Rules.{name} must be a tuple of patterns, not a string")
            # A list from the settings layer becomes a tuple: Rules stays immutable.
            object.__setattr__(self, name, tuple(patterns))
        if self.max_recipients < 1:
            raise ValueError("Rules.max_recipients must be at least 1")
        if self.max_message_bytes < 1:
            raise ValueError("Rules.max_message_bytes must be at least 1")


@dataclass(frozen=True)
class Accepted:
    address: str | None = None  # the canonical address, where one was judged
    # For a message: the configuration set and tags SES is to be sent.
    configuration_set: str | None = None
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True)
class Rejected:
    verdict: Verdict
    detail: str  # for the operator's log


Decision = Accepted | Rejected


def _too_big(rules: Rules, what: str, size: int) -> Rejected | None:
    if size > rules.max_message_bytes:
        return Rejected(
            Verdict.SIZE_EXCEEDED,
            f"{what} {size} exceeds max_message_bytes {rules.max_message_bytes}",
        )
    return None


def check_sender(rules: Rules, path: str) -> Decision:
    """MAIL FROM: the envelope sender must match allowed_senders."""
    try:
        address = parse_envelope_address(path)
    except AddressError as error:
        # The client learns only "bad syntax"; the log learns why.
        return Rejected(Verdict.SENDER_SYNTAX, f"envelope sender unparseable: {error}")
    if not matches_any(rules.allowed_senders, address):
        return Rejected(Verdict.SENDER_DENIED, f"envelope sender {address} is not allowed")
    return Accepted(address)


def check_declared_size(rules: Rules, size: int | None) -> Decision:
    """MAIL FROM SIZE=: refuse early what DATA would refuse anyway.

    None (no SIZE= given) passes; what DATA brings is judged by check_data_size.
    """
    if size is None:
        return Accepted()
    if size < 0:
        return Rejected(Verdict.SIZE_EXCEEDED, f"declared size {size} is negative")
    too_big = _too_big(rules, "declared size", size)
    if too_big is not None:
        return too_big
    return Accepted()


def check_data_size(rules: Rules, size: int) -> Decision:
    """DATA's content (dot-unstuffed) so far, or in all: the DATA reader asks as it reads,
    and drops what comes once this refuses."""
    too_big = _too_big(rules, "message size", size)
    if too_big is not None:
        return too_big
    return Accepted()


def check_recipient(rules: Rules, path: str, accepted_so_far: int) -> Decision:
    """RCPT TO, given how many recipients this transaction has already accepted.

    The address is judged before the count: an unparseable or denied address is
    RECIPIENT_SYNTAX (553) or RECIPIENT_DENIED (550), permanent whatever the count,
    so a client never retries it after a 452.
    The count only limits addresses that would otherwise be accepted.
    """
    try:
        address = parse_envelope_address(path)
    except AddressError as error:
        return Rejected(Verdict.RECIPIENT_SYNTAX, f"recipient unparseable: {error}")
    if not matches_any(rules.allowed_recipients, address):
        return Rejected(Verdict.RECIPIENT_DENIED, f"recipient {address} is not allowed")
    if accepted_so_far >= rules.max_recipients:
        return Rejected(
            Verdict.TOO_MANY_RECIPIENTS,
            f"recipient {address} would exceed max_recipients {rules.max_recipients}",
        )
    return Accepted(address)


def check_message(rules: Rules, headers: HeaderScan) -> Decision:
    """After DATA: every address in From: and Sender: must be allowed.

    The header From: need not equal the envelope sender; each is judged on its own
    against allowed_senders.
    """
    # scan() guarantees these counts; a hand-built HeaderScan must not bypass them.
    if len(headers.from_values) != 1:
        return Rejected(Verdict.MALFORMED, f"{len(headers.from_values)} From: headers")
    if len(headers.sender_values) > 1:
        return Rejected(Verdict.MALFORMED, f"{len(headers.sender_values)} Sender: headers")

    from_addresses = _header_addresses(rules, "From", headers.from_values[0])
    if isinstance(from_addresses, Rejected):
        return from_addresses
    for value in headers.sender_values:
        sender_addresses = _header_addresses(rules, "Sender", value)
        if isinstance(sender_addresses, Rejected):
            return sender_addresses
        if len(sender_addresses) != 1:
            # RFC 5322: Sender: names exactly one mailbox.
            return Rejected(
                Verdict.HEADER_SENDER_DENIED,
                f"Sender: holds {len(sender_addresses)} mailboxes, not one",
            )
    return _ses_choices(rules, headers)


# SES's rule for a message tag's name and value (SendRawEmail's MessageTag).
_TAG_PART = re.compile(r"[A-Za-z0-9_-]{1,256}")
# SES's limit on the tags of one message.
MAX_TAGS = 50


def _ses_choices(rules: Rules, headers: HeaderScan) -> Decision:
    """The configuration set and the tags, from the rules and what the headers ask."""
    configuration_set = rules.configuration_set
    if len(headers.configuration_sets) > 1:
        return Rejected(Verdict.MALFORMED, "more than one X-SES-CONFIGURATION-SET header")
    if headers.configuration_sets and rules.allowed_configuration_sets:
        asked = headers.configuration_sets[0].strip()
        if asked not in rules.allowed_configuration_sets:
            return Rejected(
                Verdict.CONFIGURATION_SET_DENIED,
                f"X-SES-CONFIGURATION-SET {asked[:64]!r} is not an allowed configuration set",
            )
        configuration_set = asked
    tags = dict(rules.message_tags)
    if rules.allow_message_tags:
        asked_tags = parse_message_tags(headers.message_tags)
        if isinstance(asked_tags, Rejected):
            return asked_tags
        for name, value in asked_tags:
            tags.setdefault(name, value)  # a configured tag wins over the header's
        if len(tags) > MAX_TAGS:
            return Rejected(Verdict.MALFORMED, f"{len(tags)} message tags, SES takes {MAX_TAGS}")
    return Accepted(configuration_set=configuration_set, tags=tuple(tags.items()))


def parse_message_tags(values: Iterable[str]) -> tuple[Tag, ...] | Rejected:
    """X-SES-MESSAGE-TAGS values: `name=value` pairs separated by commas (the SES SMTP
    interface's form), each name and value as SES takes them."""
    tags: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            name, equals, tag_value = (part.strip() for part in item.partition("="))
            if not equals or not _TAG_PART.fullmatch(name) or not _TAG_PART.fullmatch(tag_value):
                return Rejected(Verdict.MALFORMED, f"X-SES-MESSAGE-TAGS: {item.strip()[:64]!r}")
            if name in tags:
                return Rejected(Verdict.MALFORMED, f"X-SES-MESSAGE-TAGS: {name!r} twice")
            tags[name] = tag_value
    return tuple(tags.items())


def _header_addresses(rules: Rules, field: str, value: str) -> list[str] | Rejected:
    """The addresses of one From:/Sender: value if all are allowed, else why not."""
    try:
        addresses = parse_header_mailboxes(value)
    except AddressError as error:
        return Rejected(Verdict.HEADER_SENDER_DENIED, f"{field}: unparseable: {error}")
    for address in addresses:
        if not matches_any(rules.allowed_senders, address):
            return Rejected(
                Verdict.HEADER_SENDER_DENIED, f"{field}: address {address} is not allowed"
            )
    return addresses


def check_raw_message(rules: Rules, raw: Octets) -> Decision:
    """After DATA, from the bytes check_data_size let through: hygiene (MALFORMED: bare
    CR or LF, a line over 998 octets, ...), then headers.

    The one call the SMTP layer needs once the data is in, so that it maps a
    decision and never interprets a MalformedMessage itself.
    """
    try:
        headers = scan(raw)
    except MalformedMessage as error:
        return Rejected(Verdict.MALFORMED, f"malformed message: {error}")
    return check_message(rules, headers)


def client_admitted(
    networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network], host: str
) -> bool:
    """May a client at `host` (an IP address as the socket reports it) use the relay?

    An IPv4 client seen through a dual-stack socket (::ffff:a.b.c.d) is judged as
    the IPv4 address it is; a scoped IPv6 address is judged without its zone.
    Anything that is not an IP address is refused.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
