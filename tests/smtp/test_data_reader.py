"""The chunked DATA reader (proxy/smtp/data.py) against an oracle: the whole stream's
end marker found at once and its dots removed with one replace, on random byte streams
split at random points.

Each stream carries a pipelined command after the end of data: the reader must stop at
the marker's last byte, and return the unstuffed bytes and their size, or, over the
size limit, the policy's refusal and the size, with nothing kept.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import Gauge

from proxy.policy import Rules, Verdict
from proxy.smtp import session as session_module
from proxy.smtp.data import DataReader, ReceivedData
from proxy.smtp.inflight import InflightBytes
from tests.properties import examples

LINE_LIMIT = 1001  # aiosmtpd's StreamReader limit: RelaySession.line_length_limit
# smtp_DATA raises the reader's limit to this while the chunked reader runs.
DATA_LIMIT = session_module._DATA_READ_LIMIT
MARKER = b"\r\n.\r\n"


def oracle(stream: bytes) -> tuple[bytes, bytes]:
    """(the unstuffed content, what follows the end of data) of a stream sent after DATA."""
    # The DATA line's CRLF may begin the marker: an empty message is just ".\r\n".
    end = (b"\r\n" + stream).find(MARKER)
    assert end >= 0
    content = stream[:end]  # up to the CRLF that ends the last line
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n")[2:], stream[end + 3 :]


async def run(
    stream: bytes, cuts: list[int], limit: int, reader_limit: int = LINE_LIMIT
) -> tuple[ReceivedData, bytes]:
    """What the reader made of `stream` fed in pieces, and what it left in the stream."""
    source = asyncio.StreamReader(limit=reader_limit)
    # max_inflight_bytes out of the way: these tests are about the reading.
    hold = InflightBytes(1 << 40, Gauge("held", "", registry=None)).hold()

    async def feed() -> None:
        start = 0
        for cut in [*sorted(set(cuts)), len(stream)]:
            source.feed_data(stream[start:cut])
            start = cut
            await asyncio.sleep(0)
        source.feed_eof()

    feeder = asyncio.get_running_loop().create_task(feed())
    reader = DataReader(source, Rules(("*",), ("*",), 1, limit), hold, lambda: None)
    result = await reader.read()
    await feeder
    return result, await source.read()


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
    limit=st.sampled_from([1, 10, 100, 1500, 3000, 10**6]),
    reader_limit=st.sampled_from([LINE_LIMIT, 1500, DATA_LIMIT]),
)
def test_the_chunked_reader_agrees_with_the_oracle(
    body: bytes, cuts: list[int], limit: int, reader_limit: int
) -> None:
    stream = body + b"\r\n.\r\nNOOP\r\n"
    data, rest = asyncio.run(run(stream, cuts, limit, reader_limit))
    content, expected_rest = oracle(stream)
    assert rest == expected_rest  # stopped at the marker: nothing after the dot taken
    assert data.size == len(content)
    assert not data.no_room
    if len(content) > limit:
        assert data.refused is not None
        assert data.refused.verdict is Verdict.SIZE_EXCEEDED
        assert data.raw == b""
    else:
        assert data.refused is None
        assert data.raw == content


def test_a_terminator_split_at_every_position() -> None:
    message = b"From: a@example.com\r\n\r\n.hidden\r\n..\r\nend\r\n"
    stream = message + b".\r\nQUIT\r\n"
    for cut in range(len(stream)):
        new, rest = asyncio.run(run(stream, [cut], 10**6, DATA_LIMIT))
        assert rest == b"QUIT\r\n"
        assert new.raw == b"From: a@example.com\r\n\r\nhidden\r\n.\r\nend\r\n"
