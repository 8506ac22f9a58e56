"""The idle timeout with one timer per session: commands move the deadline, the timer
follows it, and a session that stops talking is still closed on time."""

from __future__ import annotations

import socket
import time

from tests.conftest import StartProxy


def test_commands_keep_a_session_open_past_the_first_deadline(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = start_outbox_proxy({"smtp": {"timeout_seconds": 0.5}})
    with socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=10) as sock:
        replies = sock.makefile("rb")
        assert replies.readline().startswith(b"220")
        # Three deadlines' worth of time, never half a timeout without a command.
        for _ in range(8):
            time.sleep(0.2)
            sock.sendall(b"NOOP\r\n")
            assert replies.readline().startswith(b"250")
        last_command = time.monotonic()
        assert replies.readline() == b""  # then silence: closed
        waited = time.monotonic() - last_command
    assert 0.4 <= waited < 5
    assert proxy.metric("sesproxy_smtp_sessions_active") == 0
