"""Fuzz the header readers of proxy/message.py beyond tests/test_message.py's targets.

tests/test_message.py already checks that `scan` and `strip_private_headers` raise
nothing but MalformedMessage on any octets, and what they return on well-formed
messages. Here:

- `strip_private_headers` against an oracle on arbitrary octets: the header section
  cut into fields (a line, then the lines that continue it) loses exactly the Bcc:,
  Resent-Bcc: and X-SES-* fields, every other octet stays where it was, the body is
  untouched; and only MalformedMessage (a bare CR or LF in the header) escapes.
- `message_id`, which reads the Message-ID: of every message for the log, malformed
  ones too: it never raises, never returns a line break or more than 200 characters
  (it lands in a JSON log line), never reads the body, and round-trips a real id.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.message import MalformedMessage, message_id, strip_private_headers
from tests.properties import examples

_PRIVATE_NAME = re.compile(rb"(?:bcc|resent-bcc|x-ses-[!-9;-~]*):", re.IGNORECASE)


def header_length(raw: bytes) -> int:
    """Where the header section ends (after its last CRLF), the whole input if nothing does."""
    if raw.startswith(b"\r\n"):
        return 0
    end = raw.find(b"\r\n\r\n")
    return len(raw) if end < 0 else end + 2


def expected_strip(raw: bytes) -> bytes:
    """The oracle: group the header's lines into fields, drop the private ones."""
    length = header_length(raw)
    header, body = raw[:length], raw[length:]
    parts = header.split(b"\r\n")
    lines = [part + b"\r\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    fields: list[list[bytes]] = []
    for line in lines:
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1].append(line)  # a continuation belongs to the field above
        else:
            fields.append([line])
    kept = [b"".join(field) for field in fields if not _PRIVATE_NAME.match(field[0])]
    return b"".join(kept) + body


# Header syntax and its near misses: field names private and not (look-alikes too),
# folding, bare CR/LF, 8-bit octets, the empty line.
fragments = st.lists(
    st.sampled_from(
        [
            *(b"Bcc:", b"bcc: x", b"BCC:", b"Resent-Bcc: a", b"resent-bcc:", b"X-SES-A: 1"),
            *(b"x-ses-configuration-set: s", b"X-SES-:", b"X-SES:", b"X-Bcc: b", b"Bcc-Note:"),
            *(b"Resent-Bcc-X:", b"From: a", b"Subject: s", b"Message-ID: <i@d>", b": v"),
            *(b" folded", b"\tfolded", b" ", b"\t", b"\r\n", b"\r\n\r\n", b"\r", b"\n"),
            *(b"\xff", b"\x00", b"a", b":", b"Bcc"),
        ]
    ),
    max_size=24,
).map(b"".join)
raws = st.binary(max_size=300) | fragments


@given(raw=raws)
@example(raw=b"\nBcc:\r\n\r\nBcc:")
@example(raw=b"Bcc: a\r\n folded\r\n\tagain\r\nTo: b\r\n\r\nBcc: body")
@example(raw=b" lead\r\nBcc: x\r\n x")  # no empty line: the whole input is header
@example(raw=b"Resent-Bcc: a\r\nResent-Bcc-X: b\r\n\r\n")
@settings(max_examples=examples(300))
def test_strip_removes_exactly_the_private_fields(raw: bytes) -> None:
    header = raw[: header_length(raw)]
    crlf = header.count(b"\r\n")
    if header.count(b"\r") != crlf or header.count(b"\n") != crlf:
        # A bare CR or LF in the header could hide a field from the line-based
        # pattern (or make one surface once another is cut): always refused.
        with pytest.raises(MalformedMessage, match="bare"):
            strip_private_headers(raw)
    else:
        assert strip_private_headers(raw) == expected_strip(raw)


message_ids = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=250
)
other_fields = st.lists(
    st.sampled_from([b"From: a@b.example\r\n", b"Subject: x\r\n", b"To: c\r\n folded\r\n"]),
    max_size=3,
).map(b"".join)


@given(raw=raws | st.binary(max_size=2000))
@example(raw=b"Message-ID: <a\rb>\r\n\r\n")
@example(raw=b"Message-ID:\r\n \r\n\r\n")
@example(raw=b"message-id: " + b"x" * 300)
@settings(max_examples=examples(300))
def test_fuzz_message_id(raw: bytes) -> None:
    found = message_id(raw)
    assert isinstance(found, str)
    # It goes into a log line as it is: no line break, no payload-sized value.
    assert "\r" not in found
    assert "\n" not in found
    assert len(found) <= 200
    assert found == found.strip(" \t")
    if found:
        assert re.search(rb"(?im)^message-id:", raw)


@given(
    before=other_fields,
    after=other_fields,
    value=message_ids,
    name=st.sampled_from([b"Message-ID", b"Message-Id", b"MESSAGE-ID", b"message-id"]),
    body=raws,
)
@example(before=b"", after=b"", value="<" + "x" * 248 + ">", name=b"Message-ID", body=b"")
@settings(max_examples=examples(200))
def test_message_id_reads_the_header_not_the_body(
    before: bytes, after: bytes, value: str, name: bytes, body: bytes
) -> None:
    # A From: first: a message that opens with the empty line is the case below.
    before = b"From: a@b.example\r\n" + before
    field = name + b": " + value.encode() + b"\r\n"
    # The id of the header section, whatever the body holds (another Message-ID too).
    assert message_id(before + field + after + b"\r\n" + body) == value[:200]
    assert message_id(before + after + b"\r\n" + field + body) == ""


def test_message_id_of_an_empty_header_section_is_empty() -> None:
    # scan() reads this as an empty header (and refuses it: no From:): the line after
    # the empty one is the body's, not an id to log.
    assert message_id(b"\r\nMessage-ID: <planted@body.example>\r\n") == ""
