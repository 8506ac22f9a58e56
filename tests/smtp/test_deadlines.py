"""Every session state has a deadline, and every way a session ends gives its slot back.

A client that takes a slot and then stalls (a STARTTLS with no handshake, a flood of
commands whose replies it never reads) must not keep it past `smtp.timeout_seconds`:
`max_connections` such clients would lock every other client out.
"""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

import pytest
import trustme

from tests.conftest import StartProxy
from tests.harness import RunningProxy

TIMEOUT = 0.5  # the relay's smtp.timeout_seconds in these tests
RELEASED_WITHIN = 10.0  # wide: a loaded CI host


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    server = trustme.CA().issue_cert("localhost", "127.0.0.1")
    cert, key = directory / "cert.pem", directory / "key.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return cert, key


def wait_for_no_sessions(proxy: RunningProxy) -> float:
    """How long until the gauge shows no session (fails past RELEASED_WITHIN)."""
    started = time.monotonic()
    while proxy.metric("sesproxy_smtp_sessions_active") != 0:
        assert time.monotonic() - started < RELEASED_WITHIN, "a session slot was never released"
        time.sleep(0.05)
    return time.monotonic() - started


def still_serves(proxy: RunningProxy) -> None:
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        assert client.noop()[0] == 250


def test_a_starttls_never_followed_by_a_handshake_gives_its_slot_back(
    start_outbox_proxy: StartProxy, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    proxy = start_outbox_proxy(
        {
            "smtp": {
                "tls_cert_file": str(cert),
                "tls_key_file": str(key),
                "timeout_seconds": TIMEOUT,
                "max_connections": 2,
            }
        }
    )
    stalled = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=10)
        replies = sock.makefile("rb")
        assert replies.readline().startswith(b"220")
        sock.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
        while not replies.readline().startswith(b"220"):
            pass  # the EHLO lines, then STARTTLS's 220; then the client goes quiet
        stalled.append(sock)
    assert proxy.metric("sesproxy_smtp_sessions_active") == 2
    wait_for_no_sessions(proxy)
    still_serves(proxy)
    for sock in stalled:
        sock.close()


def test_a_client_that_never_reads_its_replies_gives_its_slot_back(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = start_outbox_proxy({"smtp": {"timeout_seconds": TIMEOUT, "max_connections": 1}})
    sock = socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    flood = b"EHLO client.test\r\n" * 1000
    sent = 0
    deadline = time.monotonic() + 5
    # Write until the relay's replies fill both socket buffers and it stops reading.
    while time.monotonic() < deadline:
        try:
            sent += sock.send(flood)
        except BlockingIOError:
            time.sleep(0.05)
            try:
                sent += sock.send(flood)
            except BlockingIOError:
                break
    assert sent > 0
    wait_for_no_sessions(proxy)
    still_serves(proxy)
    sock.close()
