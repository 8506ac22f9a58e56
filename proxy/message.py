"""Header scan and hygiene on the raw message bytes.

Pure: bytes in, a HeaderScan (or a MalformedMessage) or new bytes out.

A message may be 10 MB, so nothing here loops in Python over the message: the
checks are bytes.count / bytes.find and compiled regular expressions, which run
at C speed. Only the header section is parsed; the body is never interpreted
(no MIME walk), and strip_private_headers passes it through byte for byte.

Input is the DATA content after SMTP dot-unstuffing, with CRLF line endings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A message as DATA read it (a bytearray, grown as it came) or as bytes.
Octets = bytes | bytearray


class MalformedMessage(ValueError):
    """The message breaks a hygiene rule; the message is a short reason."""


@dataclass(frozen=True)
class HeaderScan:
    # Unfolded field values, decoded as latin-1 so that 8-bit bytes never crash.
    from_values: tuple[str, ...]
    sender_values: tuple[str, ...]
    # What the app asks of SES (the SES SMTP interface's headers); removed before sending.
    configuration_sets: tuple[str, ...] = ()
    message_tags: tuple[str, ...] = ()


# A field seen more often than this is already refused (From:, Sender:, the configuration
# set) or has more tags than SES takes: the scan stops there.
_REPEATS_KEPT = 50

# RFC 5322 2.1.1: at most 998 octets per line, excluding the CRLF.
MAX_LINE_OCTETS = 998

_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")

# One header field: "name:" (name is printable ASCII except ":") then the rest
# of the line, then any continuation lines (starting with SP or HTAB).
# Possessive quantifiers (*+): nothing to backtrack into, so no backtracking state
# grows with the size of the header section.
_FIELD = rb"[!-9;-~]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*+"
_FIELDS = re.compile(rb"(?:%s)*+" % _FIELD)
_JUDGED_FIELD = re.compile(
    rb"^(from|sender|x-ses-configuration-set|x-ses-message-tags):"
    rb"([^\r\n]*(?:\r\n[ \t][^\r\n]*)*+)\r\n",
    re.IGNORECASE | re.MULTILINE,
)
# Fields a client must not pass to SES: Bcc: and Resent-Bcc: (would reveal blind
# recipients to every recipient) and X-SES-* (would let a client pick a configuration
# set or an identity ARN). The end may be the end of the data, for input that never went
# through scan().
_PRIVATE_FIELD = re.compile(
    rb"^(?:bcc|resent-bcc|x-ses-[!-9;-~]*):[^\r\n]*(?:\r\n[ \t][^\r\n]*)*+(?:\r\n|\Z)",
    re.IGNORECASE | re.MULTILINE,
)

_MESSAGE_ID = re.compile(
    rb"^message-id:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*+)", re.IGNORECASE | re.MULTILINE
)
# The log carries a Message-ID to find a mail by; a longer one is a payload, not an id.
_MESSAGE_ID_MAX = 200
# How far into a message its Message-ID is looked for: the body is never searched.
_HEADER_SEARCH_OCTETS = 64 * 1024


# Counting runs in steps of this many octets: a worker thread that checks a 10 MB
# message then holds the GIL (which bytes.count keeps) for a millisecond at a time,
# not for one long call that the event loop would wait out.
_COUNT_STEP = 1024 * 1024


def _count(raw: Octets, sub: bytes) -> int:
    """raw.count(sub), in steps; each window reaches into the next step by len(sub) - 1
    octets, so that an occurrence is counted in the step where it starts."""
    if len(raw) <= _COUNT_STEP:
        return raw.count(sub)
    reach = _COUNT_STEP + len(sub) - 1
    return sum(raw.count(sub, start, start + reach) for start in range(0, len(raw), _COUNT_STEP))


def _line_number(raw: Octets, offset: int) -> int:
    return raw.count(b"\r\n", 0, offset) + 1


def _check_line_endings(raw: Octets) -> None:
    # Every CR and every LF must belong to a CRLF pair. A bare one is how SMTP
    # smuggling hides a second message, and SES or a later hop may read it as
    # an end of line where we did not.
    crlf = _count(raw, b"\r\n")
    if _count(raw, b"\r") == crlf and _count(raw, b"\n") == crlf:
        return
    bare = _BARE_CR_OR_LF.search(raw)
    assert bare is not None
    kind = "CR" if bare.group() == b"\r" else "LF"
    raise MalformedMessage(f"bare {kind} at line {_line_number(raw, bare.start())}")


def _check_line_lengths(raw: Octets) -> None:
    # After _check_line_endings every line ends with CRLF (the last may have none),
    # so jump from line start to the last LF within reach: one C-speed rfind per
    # line-limit's worth of bytes, instead of a regex walking every byte.
    pos, size = 0, len(raw)
    while size - pos > MAX_LINE_OCTETS:
        last = raw.rfind(b"\n", pos, pos + MAX_LINE_OCTETS + 2)
        if last < 0:
            end = raw.find(b"\r\n", pos)
            length = (size if end < 0 else end) - pos
            raise MalformedMessage(f"line {_line_number(raw, pos)} is {length} octets")
        pos = last + 1


def _header_length(raw: Octets) -> int | None:
    """The length of the header section with its final CRLF (the empty line follows);
    None if there is no empty line. An offset, not a split: copying a 10 MB body
    costs milliseconds."""
    if raw.startswith(b"\r\n"):
        return 0
    end = raw.find(b"\r\n\r\n")
    return None if end < 0 else end + 2


def _check_header_fields(header: Octets) -> None:
    valid = _FIELDS.match(header)
    assert valid is not None  # the pattern also matches the empty string
    bad = valid.end()
    if bad == len(header):
        return
    line = _line_number(header, bad)
    if header[bad : bad + 1] in (b" ", b"\t"):
        # Only reachable on line 1: any later continuation joins the field above.
        raise MalformedMessage(f"line {line} is a continuation line with no field before it")
    raise MalformedMessage(f"line {line} is not a header field (name: value)")


def _unfold(value: bytes) -> str:
    # Within a matched field every CRLF is followed by SP or HTAB: unfolding
    # (RFC 5322 2.2.3) is removing them.
    return value.replace(b"\r\n", b"").decode("latin-1").strip(" \t")


def scan(raw: Octets) -> HeaderScan:
    """Check the message's hygiene and return its From:/Sender: values (and the
    X-SES-CONFIGURATION-SET and X-SES-MESSAGE-TAGS ones).

    Raises MalformedMessage for a bare CR or LF anywhere, a line over 998
    octets, a header section without its terminating empty line, a header line
    that is neither "name: value" nor a continuation, a continuation as the
    first line, no From: or several, several Sender:.
    """
    _check_line_endings(raw)
    _check_line_lengths(raw)
    length = _header_length(raw)
    if length is None:
        # SES: "Message must contain a header and a body, separated by a blank
        # line." The body itself may be empty.
        raise MalformedMessage("header section not terminated (no empty line)")
    header = raw[:length]
    _check_header_fields(header)

    values: dict[bytes, list[str]] = {
        b"from": [],
        b"sender": [],
        b"x-ses-configuration-set": [],
        b"x-ses-message-tags": [],
    }
    for field in _JUDGED_FIELD.finditer(header):
        found = values[field.group(1).lower()]
        found.append(_unfold(field.group(2)))
        if len(found) > _REPEATS_KEPT:
            break  # already malformed; do not walk thousands of repeats
    from_values, sender_values = values[b"from"], values[b"sender"]
    if not from_values:
        raise MalformedMessage("no From: header")
    if len(from_values) > 1:
        raise MalformedMessage("more than one From: header")
    if len(sender_values) > 1:
        raise MalformedMessage("more than one Sender: header")
    return HeaderScan(
        tuple(from_values),
        tuple(sender_values),
        tuple(values[b"x-ses-configuration-set"]),
        tuple(values[b"x-ses-message-tags"]),
    )


def message_id(raw: Octets) -> str:
    """The Message-ID: value of the header section, for the log ("" when none is found).

    Malformed messages are searched too (their rejection is logged with it); only the
    first 64 KiB are looked at, whatever the message's size."""
    if raw.startswith(b"\r\n"):
        return ""  # an empty header section: what follows is the body
    header = raw[:_HEADER_SEARCH_OCTETS]
    end = header.find(b"\r\n\r\n")
    found = _MESSAGE_ID.search(header if end < 0 else header[: end + 2])
    return "" if found is None else _unfold(found.group(1))[:_MESSAGE_ID_MAX]


def strip_private_headers(raw: Octets) -> Octets:
    """Remove every Bcc:, Resent-Bcc: and X-SES-* field (with its continuation lines).

    Every other byte stays as it was: header order, the empty line, the body.
    Meant for a message that scan() accepted. Even so it stands on its own:
    without an empty line the whole input counts as header section, and a bare
    CR or LF in the header section raises MalformedMessage, because there a
    field could hide from the line-based pattern (or surface after stripping).
    """
    length = _header_length(raw)
    header = raw if length is None else raw[:length]
    _check_line_endings(header)
    cleaned = _PRIVATE_FIELD.sub(b"", header)
    if len(cleaned) == len(header):
        return raw  # nothing removed: no copy of the body
    return b"".join((cleaned, memoryview(raw)[len(header) :]))
