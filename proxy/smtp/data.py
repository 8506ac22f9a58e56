"""DATA's content, read from the session's stream as it arrives.

Chunks, not lines: the stream's buffer is searched for the end of data (CRLF "." CRLF)
at C speed, and each chunk is unstuffed as it comes and appended to one bytearray, so
that neither a replace nor a join of the whole message holds the loop at the end.

Memory stays bounded: once the policy refuses the size, or max_inflight_bytes has no
room for the next chunk, chunks are counted and dropped as they come. The reader
judges nothing itself: the size is `policy.check_data_size`'s, and the content
(lines, headers) is the message scan's once DATA is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proxy import policy
from proxy.message import Octets
from proxy.smtp.inflight import Hold

_END: Final = b"\r\n.\r\n"
# The idle timer is pushed back every this many octets: a big message takes a while.
_PROGRESS_EVERY: Final = 64 * 1024


@dataclass(frozen=True)
class ReceivedData:
    """What DATA produced: the unstuffed message (the bytearray the reader grew), or,
    once discarded, why (the policy's refusal, or no room in max_inflight_bytes)."""

    raw: Octets
    size: int  # octets of content, dot-unstuffed, discarded ones included
    refused: policy.Rejected | None = None
    no_room: bool = False


def _stuffing_dots(before: bytes, chunk: bytes) -> int:
    count = chunk.count(b"\r\n.")
    if before.endswith(b"\r\n"):
        count += chunk.startswith(b".")
    elif before.endswith(b"\r"):
        count += chunk.startswith(b"\n.")
    return count


def _unstuffed(before: bytes, chunk: bytes) -> bytes:
    # "CRLF ." cannot overlap itself: removing its dot chunk by chunk, with the one
    # that straddles two chunks, removes what one replace would.
    if before.endswith(b"\r\n") and chunk.startswith(b"."):
        chunk = chunk[1:]
    elif before.endswith(b"\r") and chunk.startswith(b"\n."):
        chunk = b"\n" + chunk[2:]
    return chunk.replace(b"\r\n.", b"\r\n")


class DataReader:
    """Reads one message's DATA; `progress` is called as octets keep coming."""

    def __init__(
        self,
        stream: asyncio.StreamReader,
        rules: policy.Rules,
        hold: Hold,
        progress: Callable[[], None],
    ) -> None:
        self._stream = stream
        self._rules = rules
        self._hold = hold
        self._progress = progress
        self._kept = bytearray()
        self._received = 0  # octets as sent, stuffing dots included
        self._dots = 0  # stuffing dots: removed from kept chunks, counted in dropped ones
        self._refused: policy.Rejected | None = None
        self._no_room = False
        self._since_progress = 0
        self._previous = b"\r\n"  # the last two octets before the chunk: DATA's CRLF

    async def read(self) -> ReceivedData:
        # When readuntil overruns its limit, the octets it lets us take cannot hold the
        # start of an end marker (it would have been seen whole in the buffer), so
        # nothing after the dot is consumed (pipelined commands follow it) and no marker
        # straddles two chunks. Only the start of the data, where the DATA line's CRLF
        # begins a possible marker, is read in exact steps.
        stream = self._stream
        # A possible end marker not yet ruled out: held back, not yet taken as content.
        # At first it is the DATA line's CRLF, which is no content at all.
        pending, virtual = b"\r\n", True
        while pending:
            candidate = pending + await stream.readexactly(len(_END) - len(pending))
            if candidate == _END:
                if not virtual:
                    self._take(b"\r\n")  # the CRLF ending the last line
                break
            pending = next(
                (candidate[-k:] for k in (4, 3, 2, 1) if candidate[-k:] == _END[:k]), b""
            )
            self._take(candidate[2 if virtual else 0 : len(candidate) - len(pending)])
            virtual = False
        else:
            while True:
                try:
                    chunk = await stream.readuntil(_END)
                except asyncio.LimitOverrunError as overrun:
                    self._take(await stream.read(overrun.consumed))
                else:
                    self._take(chunk[:-3])  # the CRLF before the dot ends the last line
                    break
        size = self._received - self._dots
        if self._refused is None and not self._no_room:
            return ReceivedData(self._kept, size)
        decision = policy.check_data_size(self._rules, size)
        refused = decision if isinstance(decision, policy.Rejected) else None
        return ReceivedData(b"", size, refused=refused, no_room=self._no_room)

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._received += len(chunk)
        self._since_progress += len(chunk)
        if self._since_progress >= _PROGRESS_EVERY:
            self._since_progress = 0
            self._progress()
        if self._refused is None and not self._no_room:
            content = _unstuffed(self._previous, chunk)
            self._dots += len(chunk) - len(content)
            self._no_room = not self._hold.take(len(content))
            self._kept.extend(content)
            decision = policy.check_data_size(self._rules, self._received - self._dots)
            if isinstance(decision, policy.Rejected):
                self._refused = decision
            if self._refused is not None or self._no_room:
                del self._kept[:]
                self._hold.release()
        else:
            self._dots += _stuffing_dots(self._previous, chunk)
        previous = self._previous + chunk if len(chunk) < 2 else chunk
        self._previous = previous[-2:]
