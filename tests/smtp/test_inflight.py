"""smtp.max_inflight_bytes against a real relay: what does not fit is 452 4.3.1 and
nothing is sent, the budget comes back whole after every message, and what fits goes.

Each message holds its bytes and, beside them, room for what is made of it while it
is checked and encoded (proxy/smtp/inflight.py, COPIES_BESIDE_THE_MESSAGE): six times
its size in all.
"""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

from proxy.smtp.inflight import needed_for
from tests.conftest import StartProxy
from tests.harness import RunningProxy

BUDGET = 1024 * 1024  # the smallest max_inflight_bytes allowed


def _message(size: int) -> bytes:
    head = b"From: noreply@example.com\r\nTo: a@example.net\r\nSubject: big\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head + line * ((size - len(head)) // len(line))


def _outbox(proxy: RunningProxy) -> list[Path]:
    return sorted(Path(proxy.config["delivery"]["outbox_dir"]).glob("*.eml"))


def test_a_declared_size_that_does_not_fit_is_452_at_mail(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy({"smtp": {"max_inflight_bytes": BUDGET}})
    too_big = BUDGET // 2
    assert needed_for(too_big) > BUDGET
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        code, text = client.mail("noreply@example.com", [f"SIZE={too_big}"])
        assert (code, text[:5]) == (452, b"4.3.1")
        assert needed_for(BUDGET // 8) <= BUDGET
        code, _ = client.mail("noreply@example.com", [f"SIZE={BUDGET // 8}"])
        assert code == 250
    assert proxy.metric("sesproxy_messages_deferred_total", reason="inflight") == 1


def test_data_that_outgrows_the_budget_is_452_after_data_and_nothing_is_sent(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = start_outbox_proxy({"smtp": {"max_inflight_bytes": BUDGET}})
    raw = _message(BUDGET // 2)  # fits as read, not with its copies beside it
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("noreply@example.com")
        client.rcpt("a@example.net")
        code, text = client.data(raw)
        assert (code, text[:5]) == (452, b"4.3.1")
        # What fits goes, on the same session: the budget came back whole.
        small = _message(BUDGET // 8)
        assert client.sendmail("noreply@example.com", ["a@example.net"], small) == {}
    assert len(_outbox(proxy)) == 1
    assert proxy.metric("sesproxy_inflight_bytes") == 0
    [deferred] = proxy.events("deferred")
    assert deferred["reason"] == "inflight"


def test_a_session_that_holds_data_leaves_less_for_the_others(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = start_outbox_proxy({"smtp": {"max_inflight_bytes": BUDGET}})
    # One client is inside DATA with most of the budget read and held...
    holder = socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=10)
    replies = holder.makefile("rb")
    replies.readline()
    holder.sendall(b"EHLO c\r\nMAIL FROM:<noreply@example.com>\r\nRCPT TO:<a@example.net>\r\n")
    holder.sendall(b"DATA\r\n" + _message(BUDGET - 64 * 1024)[:-2])
    while not replies.readline().startswith(b"354"):
        pass
    deadline = time.monotonic() + 10
    while proxy.metric("sesproxy_inflight_bytes") <= BUDGET // 2:
        assert time.monotonic() < deadline, "the relay never held the data it read"
        time.sleep(0.02)
    # ...so another's SIZE= that would have fitted in an empty budget does not now.
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        code, _ = client.mail("noreply@example.com", [f"SIZE={BUDGET // 8}"])
        assert code == 452
    replies.close()  # the socket stays open while its file does
    holder.close()
    deadline = time.monotonic() + 10
    while proxy.metric("sesproxy_inflight_bytes") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.metric("sesproxy_inflight_bytes") == 0, "a cut session gives its bytes back"
