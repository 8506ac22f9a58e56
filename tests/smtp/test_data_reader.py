"""The chunked DATA reader (RelaySession._read_data) against the line-by-line reader
it replaced, on random byte streams split at random points.

(It lives here with the rest of issue #6's tests; its natural home is tests/smtp/.)
Both readers get the same stream, with a pipelined command after the end of data:
they must stop at the same byte, agree on too big / line too long, and, when they
keep the message, return the same unstuffed bytes and size.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import Gauge

from proxy.smtp import session as session_module
from proxy.smtp.handler import ReceivedData
from proxy.smtp.inflight import InflightBytes
from proxy.smtp.session import RelaySession
from tests.properties import examples

LINE_LIMIT = 1001  # aiosmtpd's StreamReader limit: RelaySession.line_length_limit
# smtp_DATA raises the reader's limit to this while the chunked reader runs.
DATA_LIMIT = session_module._DATA_READ_LIMIT


@dataclass
class _Rules:
    max_message_bytes: int


class _Session:
    """What _read_data touches on a RelaySession: the reader, the limit, the timer."""

    def __init__(self, limit: int, reader_limit: int) -> None:
        self._reader = asyncio.StreamReader(limit=reader_limit)
        self.rules = _Rules(limit)
        # max_inflight_bytes out of the way: these tests are about the reading.
        self.hold = InflightBytes(1 << 40, Gauge("held", "", registry=None)).hold()

    def _reset_timeout(self) -> None:
        pass


async def line_reader(self: Any) -> ReceivedData:
    """The reader before issue #6, verbatim but for the timeout reset."""
    limit = self.rules.max_message_bytes
    lines: list[bytes] = []
    size = 0
    line_too_long = False
    inside_long_line = False
    while True:
        try:
            line = await self._reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as overrun:
            line = await self._reader.read(overrun.consumed)
            line_too_long = inside_long_line = True
        else:
            if inside_long_line:
                inside_long_line = False
            elif line == b".\r\n":
                break
            elif line.startswith(b"."):
                line = line[1:]
        size += len(line)
        if size > limit or line_too_long:
            lines.clear()
        else:
            lines.append(line)
    return ReceivedData(b"".join(lines), size, too_big=size > limit, line_too_long=line_too_long)


async def run(
    reader: Any, stream: bytes, cuts: list[int], limit: int, reader_limit: int = LINE_LIMIT
) -> tuple[Any, bytes]:
    session = _Session(limit, reader_limit)

    async def feed() -> None:
        start = 0
        for cut in [*sorted(set(cuts)), len(stream)]:
            session._reader.feed_data(stream[start:cut])
            start = cut
            await asyncio.sleep(0)
        session._reader.feed_eof()

    feeder = asyncio.get_running_loop().create_task(feed())
    result = await reader(session)
    await feeder
    rest = await session._reader.read()
    return result, rest


async def chunked(session: Any) -> ReceivedData:
    return await RelaySession._read_data(session, session.hold)


PIECES = [b"\r\n", b".", b"..", b"\r", b"\n", b"x", b"abc", b"\r\n.\r\n", b"\r\n..\r\n", b"."]
pieces = st.one_of(
    st.sampled_from(PIECES),
    st.integers(1, 2500).map(lambda n: b"y" * n),
    st.binary(max_size=20),
)


@settings(max_examples=examples(400), deadline=None)
@given(
    body=st.lists(pieces, max_size=40).map(b"".join),
    cuts=st.lists(st.integers(0, 6000), max_size=6),
    limit=st.sampled_from([0, 10, 100, 1500, 3000, 10**6]),
    reader_limit=st.sampled_from([LINE_LIMIT, 1500, DATA_LIMIT]),
)
def test_the_chunked_reader_agrees_with_the_line_reader(
    body: bytes, cuts: list[int], limit: int, reader_limit: int
) -> None:
    stream = body + b"\r\n.\r\nNOOP\r\n"
    new, new_rest = asyncio.run(run(chunked, stream, cuts, limit, reader_limit))
    old, old_rest = asyncio.run(run(line_reader, stream, cuts, limit))
    assert new_rest == old_rest  # stopped at the same byte: nothing after the dot taken
    assert new.too_big == old.too_big
    if not old.line_too_long:
        # (The line reader did not unstuff the dot of a long line: its size is one
        # more there. The reply is the same: 552 or 550.)
        assert new.size == old.size
    content = stream[: len(stream) - len(new_rest)]
    paired = content.replace(b"\r\n", b"")
    if not (b"\r" in paired or b"\n" in paired or new.too_big):
        # Once over the size limit the new reader stops looking at lines: 552 wins.
        assert new.line_too_long == old.line_too_long
    if not (new.too_big or new.line_too_long or old.line_too_long):
        assert new.raw == old.raw
    # With a bare CR or LF the readers may disagree on which line is long, never on
    # what the client hears: the message scan refuses bare CR/LF with the same 550.


def test_a_terminator_split_at_every_position() -> None:
    message = b"From: a@example.com\r\n\r\n.hidden\r\n..\r\nend\r\n"
    stream = message + b".\r\nQUIT\r\n"
    for cut in range(len(stream)):
        new, rest = asyncio.run(run(chunked, stream, [cut], 10**6, DATA_LIMIT))
        assert rest == b"QUIT\r\n"
        assert new.raw == b"From: a@example.com\r\n\r\nhidden\r\n.\r\nend\r\n"
