"""SMTP conversations as data, in the spirit of chasquid's tests.

A dialog file is a script read top to bottom:

    # a comment says what the dialog shows
    C: MAIL FROM:<noreply@example.com>     client sends the line, then CRLF
    C~ text                                client sends the text with no CRLF
    C*1200: xxxxxxxxxx                     client sends the line 1200 times
    C*1200~ x                              client sends the text 1200 times, no CRLF
    S: 250 2.1.0                           next server reply line starts with this
    S: <closed>                            the server has closed the connection

`C` lines are written as soon as they are read (so a run of them is pipelined);
`S` lines wait for the server. In `C` text, \\r, \\n and \\\\ are escapes, so bare
CR and LF can be written down.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

CLOSED = "<closed>"


@dataclass(frozen=True)
class Step:
    send: bytes | None
    expect: str | None
    line_number: int


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
    steps = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        tag, _, rest = line.partition(" ")
        if tag == "C:":
            steps.append(Step(_unescape(rest) + b"\r\n", None, number))
        elif tag == "C~":
            steps.append(Step(_unescape(rest), None, number))
        elif tag.startswith("C*") and tag[-1] in ":~":
            count = int(tag[2:-1])
            end = b"\r\n" if tag[-1] == ":" else b""
            steps.append(Step((_unescape(rest) + end) * count, None, number))
        elif tag == "S:":
            steps.append(Step(None, rest, number))
        else:
            raise ValueError(f"line {number}: unknown step {line!r}")
    return steps


class DialogFailure(AssertionError):
    pass


def run(path: Path, host: str, port: int, timeout: float = 10.0) -> None:
    steps = parse(path.read_text())
    with socket.create_connection((host, port), timeout=timeout) as sock:
        replies = sock.makefile("rb")
        for step in steps:
            if step.send is not None:
                sock.sendall(step.send)
                continue
            assert step.expect is not None
            line = replies.readline()
            got = line.decode("ascii", errors="replace").rstrip("\r\n")
            if step.expect == CLOSED:
                if line:
                    raise DialogFailure(
                        f"{path.name}:{step.line_number}: expected close, got {got!r}"
                    )
                continue
            if not got.startswith(step.expect):
                raise DialogFailure(
                    f"{path.name}:{step.line_number}: expected {step.expect!r}, got {got!r}"
                )
