"""Open sessions, walk each to a random state, abandon them in random ways, all at once:
afterwards no slot is still taken and the relay serves as before.

The states cover every place a session can wait (banner, a half-sent command line,
after MAIL, RCPT, inside DATA, after STARTTLS's 220, half-way through a handshake,
a handshake gone wrong, replies never read); the endings are a FIN, a reset, or nothing
at all (the client stays and the session's deadline must end it).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Iterator

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import base_config
from tests.harness import RunningProxy, start_proxy
from tests.properties import examples
from tests.smtp.test_deadlines import still_serves, wait_for_no_sessions

TIMEOUT = 1.0  # the relay's smtp.timeout_seconds: a client that stays is cut after it

STATES = {
    "banner": b"",
    "half_a_command": b"EHLO client.te",
    "after_mail": b"EHLO client.test\r\nMAIL FROM:<noreply@example.com>\r\n",
    "after_rcpt": b"EHLO c\r\nMAIL FROM:<noreply@example.com>\r\nRCPT TO:<a@example.net>\r\n",
    "inside_data": (
        b"EHLO c\r\nMAIL FROM:<noreply@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n"
        b"From: noreply@example.com\r\n\r\nhalf a bo"
    ),
    "after_starttls": b"EHLO client.test\r\nSTARTTLS\r\n",
    "half_a_handshake": b"EHLO client.test\r\nSTARTTLS\r\n",
    "broken_handshake": b"EHLO client.test\r\nSTARTTLS\r\n",
    "unread_replies": b"NOOP\r\n" * 2_000,
}
ENDINGS = ("fin", "reset", "stay")


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    workdir = tmp_path_factory.mktemp("abandon")
    issued = trustme.CA().issue_cert("localhost", "127.0.0.1")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    config = base_config("outbox", workdir / "outbox")
    config["smtp"].update(
        {"tls_cert_file": str(cert), "tls_key_file": str(key), "timeout_seconds": TIMEOUT}
    )
    proxy = start_proxy(workdir, config)
    yield proxy
    proxy.stop()


def _client_hello() -> bytes:
    """The first bytes a real TLS client sends (its ClientHello), from an in-memory TLS."""
    context = ssl.create_default_context()
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _walk(port: int, state: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert sock.recv(1024).startswith(b"220")
    # (unread_replies: the client never reads what the relay answers. Filling every
    # buffer on the way takes seconds of the relay's CPU; test_deadlines does it once.)
    sock.sendall(STATES[state])
    if state in ("after_starttls", "half_a_handshake", "broken_handshake"):
        stream = sock.makefile("rb")
        while not (line := stream.readline()).startswith(b"220"):
            assert line, f"{state}: the relay hung up before STARTTLS's 220"
    if state == "half_a_handshake":
        hello = _client_hello()
        sock.sendall(hello[: len(hello) // 2])
    elif state == "broken_handshake":
        sock.sendall(b"\x16\x03\x01\x00\x05not a hello at all")
    return sock


def _end(sock: socket.socket, ending: str) -> None:
    if ending == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if ending != "stay":
        sock.close()


@settings(
    max_examples=examples(6),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(STATES)), st.sampled_from(ENDINGS)),
        min_size=1,
        max_size=12,
    )
)
def test_abandoned_sessions_give_every_slot_back(
    relay: RunningProxy, plan: list[tuple[str, str]]
) -> None:
    opened = [(_walk(relay.smtp_port, state), ending) for state, ending in plan]
    for sock, ending in opened:
        _end(sock, ending)
    try:
        wait_for_no_sessions(relay)
        still_serves(relay)
        assert relay.process.poll() is None
    finally:
        for sock, _ in opened:
            sock.close()
    assert b"Traceback" not in relay.log_path.read_bytes()
