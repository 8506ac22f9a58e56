"""message.py's stepwise counting and copy-free cleaning (issue #6) against the plain
forms they replace: bytes.count in one call, and the header/body split and join.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import message

octets = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"x", b"\r\r", b"\n\n"])).map(b"".join)


@given(raw=octets, step=st.integers(1, 9))
def test_counting_in_steps_equals_one_count(raw: bytes, step: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(message, "_COUNT_STEP", step)
        for sub in (b"\r\n", b"\r", b"\n"):
            assert message._count(raw, sub) == raw.count(sub)


def _strip_as_before(raw: bytes) -> bytes:
    """strip_private_headers as it was: split into header and rest, clean, join."""
    if raw.startswith(b"\r\n"):
        header, rest = b"", raw
    elif (end := raw.find(b"\r\n\r\n")) < 0:
        header, rest = raw, b""
    else:
        header, rest = raw[: end + 2], raw[end + 2 :]
    return message._PRIVATE_FIELD.sub(b"", header) + rest


fields = st.sampled_from(
    [b"From: a@example.com\r\n", b"Bcc: b@example.net\r\n", b"X-SES-X: y\r\n", b" folded\r\n"]
)


@given(header=st.lists(fields).map(b"".join), body=st.sampled_from([b"", b"\r\nhi\r\n", b"\r\n"]))
def test_cleaning_equals_the_split_and_join(header: bytes, body: bytes) -> None:
    raw = header + body
    assert message.strip_private_headers(raw) == _strip_as_before(raw)
