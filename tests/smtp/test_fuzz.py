"""Fuzz the listener over a real socket: whatever a client sends, every reply is a
well-formed SMTP reply, no exception text ever reaches the client, and the process
lives on."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import base_config
from tests.harness import RunningProxy, start_proxy
from tests.properties import examples

REPLY = re.compile(rb"^[2-5]\d\d[ -][ -~]*\r\n$")
VERBS = [
    b"HELO",
    b"EHLO",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"VRFY",
    b"AUTH",
    b"STARTTLS",
    b"BDAT",
    b"HELP",
    b".",
]


@pytest.fixture(scope="module")
def fuzz_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    workdir = tmp_path_factory.mktemp("fuzz")
    config = base_config("outbox", workdir / "outbox")
    config["smtp"]["timeout_seconds"] = 2
    proxy = start_proxy(workdir, config)
    yield proxy
    proxy.stop()


command = st.builds(
    lambda verb, arg, end: verb + arg + end,
    st.sampled_from(VERBS),
    st.binary(max_size=80),
    st.sampled_from([b"\r\n", b"\n", b"\r", b""]),
)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(command, min_size=1, max_size=8))
def test_any_command_sequence_gets_well_formed_replies(
    fuzz_proxy: RunningProxy, commands: list[bytes]
) -> None:
    with socket.create_connection(("127.0.0.1", fuzz_proxy.smtp_port), timeout=5) as sock:
        sock.sendall(b"".join(commands) + b"\r\n.\r\nQUIT\r\n")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    for line in received.splitlines(keepends=True):
        assert REPLY.match(line), line
        assert b"Error: (" not in line, line
        assert b"Traceback" not in line, line
    assert fuzz_proxy.process.poll() is None
    assert b"Traceback" not in fuzz_proxy.log_path.read_bytes()


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=3000))
def test_any_message_body_gets_one_of_the_data_replies(
    fuzz_proxy: RunningProxy, body: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", fuzz_proxy.smtp_port), timeout=5) as sock:
        replies = sock.makefile("rb")
        replies.readline()
        sock.sendall(
            b"HELO c\r\nMAIL FROM:<noreply@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n"
        )
        assert [replies.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        sock.sendall(b"From: noreply@example.com\r\n\r\n" + body + b"\r\n.\r\n")
        reply = replies.readline()
        if reply.startswith(b"250 2.0.0 Ok "):
            # Accepted, so what was stored has only CRLF line ends and short lines.
            message_id = reply.split()[-1].decode()
            stored = Path(fuzz_proxy.config["delivery"]["outbox_dir"]) / f"{message_id}.eml"
            raw = stored.read_bytes()
            assert raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")
            assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
        else:
            assert reply[:9] in (b"550 5.6.0", b"552 5.3.4"), reply
    assert fuzz_proxy.process.poll() is None
