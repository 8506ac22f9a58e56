"""SMTP conversations as data, in the spirit of chasquid's tests.

A dialog file is a script read top to bottom:

    # a comment says what the dialog shows
    C: MAIL FROM:<noreply@example.com>     client sends the line, then CRLF
    C~ text                                client sends the text with no CRLF
    C*1200: xxxxxxxxxx                     client sends the line 1200 times
    C*1200~ x                              client sends the text 1200 times, no CRLF
    S: 250 2.1.0 Sender OK                 the next server reply line is exactly this
    S=~ 250 2\\.0\\.0 Ok [0-9T]{15}-\\w{32}   the next line matches this regular
                                           expression whole (re.fullmatch): only for
                                           a value that varies, such as a message id
    S: <closed>                            the server has closed the connection
    D: 1                                   the relay has delivered exactly this many
                                           messages since the dialog began

`C` lines are written as soon as they are read (so a run of them is pipelined);
`S` and `D` lines wait for the server. In `C` text, \\r, \\n and \\\\ are escapes, so
bare CR and LF can be written down.

The stream is checked to its end: a dialog that does not end with `S: <closed>`
must leave the connection open and silent, so a reply the dialog does not expect
fails it wherever it comes.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLOSED = "<closed>"
# How long the end of a dialog that keeps the connection open must stay silent.
# A loopback reply takes microseconds; this is slack for a loaded CI machine.
QUIET_SECONDS = 0.5


@dataclass(frozen=True)
class Step:
    line_number: int
    send: bytes | None = None
    expect: str | None = None  # a reply line as written, or CLOSED
    pattern: re.Pattern[str] | None = None  # a reply line's regular expression
    delivered: int | None = None


def _unescape(text: str) -> bytes:
    out = bytearray()
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out += char.encode("latin-1")
            continue
        escaped = next(chars, "\\")
        out += {"r": b"\r", "n": b"\n", "\\": b"\\"}.get(escaped, b"\\" + escaped.encode())
    return bytes(out)


def parse(text: str) -> list[Step]:
    steps: list[Step] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if steps and steps[-1].expect == CLOSED:
            raise ValueError(f"line {number}: a step after {CLOSED}")
        tag, _, rest = line.partition(" ")
        if tag == "C:":
            steps.append(Step(number, send=_unescape(rest) + b"\r\n"))
        elif tag == "C~":
            steps.append(Step(number, send=_unescape(rest)))
        elif tag.startswith("C*") and tag[-1] in ":~":
            count = int(tag[2:-1])
            end = b"\r\n" if tag[-1] == ":" else b""
            steps.append(Step(number, send=(_unescape(rest) + end) * count))
        elif tag == "S:":
            steps.append(Step(number, expect=rest))
        elif tag == "S=~":
            steps.append(Step(number, pattern=re.compile(rest)))
        elif tag == "D:":
            steps.append(Step(number, delivered=int(rest)))
        else:
            raise ValueError(f"line {number}: unknown step {line!r}")
    return steps


class DialogFailure(AssertionError):
    pass


def run(
    path: Path,
    host: str,
    port: int,
    delivered: Callable[[], int] | None = None,
    timeout: float = 10.0,
) -> None:
    """Play the dialog; `delivered` counts the messages the relay has delivered so far."""
    steps = parse(path.read_text())
    if delivered is None and any(step.delivered is not None for step in steps):
        raise ValueError(f"{path.name} counts deliveries: run it with a counter")
    delivered_before = delivered() if delivered is not None else 0

    def fail(step: Step, what: str) -> DialogFailure:
        return DialogFailure(f"{path.name}:{step.line_number}: {what}")

    with socket.create_connection((host, port), timeout=timeout) as sock:
        replies = sock.makefile("rb")
        for step in steps:
            if step.send is not None:
                sock.sendall(step.send)
                continue
            if step.delivered is not None:
                assert delivered is not None
                count = delivered() - delivered_before
                if count != step.delivered:
                    raise fail(step, f"expected {step.delivered} delivered, got {count}")
                continue
            try:
                line = replies.readline()
            except TimeoutError:
                raise fail(step, f"nothing came within {timeout} s") from None
            got = line.decode("ascii", errors="replace")
            if line and not line.endswith(b"\r\n"):
                raise fail(step, f"a reply line not ended by CRLF: {got!r}")
            got = got.removesuffix("\r\n")
            if step.expect == CLOSED:
                if line:
                    raise fail(step, f"expected close, got {got!r}")
            elif not line:
                raise fail(step, f"expected {step.expect or step.pattern!r}, got the close")
            elif step.pattern is not None:
                if not step.pattern.fullmatch(got):
                    raise fail(step, f"expected a match of {step.pattern.pattern!r}, got {got!r}")
            elif got != step.expect:
                raise fail(step, f"expected {step.expect!r}, got {got!r}")
        if steps and steps[-1].expect == CLOSED:
            return
        end = Step(steps[-1].line_number if steps else 0)
        sock.settimeout(QUIET_SECONDS)
        try:
            extra = replies.read1(4096)
        except TimeoutError:
            return
        if extra:
            raise fail(end, f"unexpected after the last step: {extra!r}")
        raise fail(end, f"the server closed the connection, and the dialog says no {CLOSED}")
