"""The listener against real clients: networks, TLS, connection limits, hostile input."""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import aiosmtplib
import pytest
import trustme

from proxy import policy
from proxy.settings import SmtpSettings
from proxy.smtp.admission import Admission
from tests.conftest import StartProxy
from tests.harness import RunningProxy, free_port, require_tool

MESSAGE = b"From: noreply@example.com\r\nTo: a@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for localhost / 127.0.0.1 (cert, key, CA)."""
    directory = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    server = authority.issue_cert("localhost", "127.0.0.1")
    cert, key, ca = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    return cert, key, ca


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def outbox_files(proxy: RunningProxy) -> list[Path]:
    return sorted(Path(proxy.config["delivery"]["outbox_dir"]).glob("*.eml"))


def test_clients_outside_allowed_networks_are_refused(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy({"smtp": {"allowed_networks": ["127.0.0.1/32"]}})
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", proxy.smtp_port))
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"554 5.7.1")
        assert stream.readline() == b""
    assert proxy.metric("sesproxy_messages_rejected_total", reason="network") == 1
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        assert client.noop()[0] == 250


@pytest.mark.parametrize(
    ("peer", "admitted"),
    [
        (("127.0.0.1", 1), True),
        (("10.1.2.3", 1), True),
        (("10.2.0.1", 1), False),
        (("::ffff:10.1.0.9", 1, 0, 0), True),
        (("2001:db8::1", 1, 0, 0), True),
        (("2001:db9::1", 1, 0, 0), False),
        (("fe80::1%eth0", 1, 0, 2), False),
        (None, False),
        ("/run/ses-proxy.sock", False),
    ],
)
def test_admission_by_network(peer: object, admitted: bool) -> None:
    settings = SmtpSettings.model_validate(
        {"allowed_networks": ["127.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"]}
    )
    assert Admission(settings, ()).admits(peer) is admitted


def test_admission_remembered_per_address_stays_the_policys_answer() -> None:
    # Decisions are kept per address (bounded): asked again, and past the bound,
    # each answer is still what the policy says for that address.
    settings = SmtpSettings.model_validate({"allowed_networks": ["10.1.0.0/16"]})
    admission = Admission(settings, ())
    hosts = [f"10.{1 + n % 2}.{n // 256 % 256}.{n % 256}" for n in range(2 * 4096 + 7)]
    for host in hosts + hosts[:100] + hosts[-100:]:
        expected = policy.client_admitted(settings.allowed_networks, host)
        assert admission.admits((host, 25)) is expected


def test_connections_beyond_the_limit_get_421(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy({"smtp": {"max_connections": 2}})
    first = socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=5)
    second = socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=5)
    assert first.recv(100).startswith(b"220")
    assert second.recv(100).startswith(b"220")
    assert proxy.metric("sesproxy_smtp_sessions_active") == 2
    with socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=5) as third:
        assert third.recv(100).startswith(b"421 4.7.0")
        assert third.recv(100) == b""
    first.close()
    deadline = time.monotonic() + 5
    while proxy.metric("sesproxy_smtp_sessions_active") != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=5) as client:
        assert client.noop()[0] == 250
    second.close()


def _connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def test_one_address_cannot_take_every_slot(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy({"smtp": {"max_connections": 10, "max_connections_per_address": 2}})
    greedy = [_connect_from("127.0.0.2", proxy.smtp_port) for _ in range(2)]
    for sock in greedy:
        assert sock.recv(100).startswith(b"220")
    with _connect_from("127.0.0.2", proxy.smtp_port) as third:
        assert third.recv(100).startswith(b"421 4.7.0")
        assert third.recv(100) == b""
    # Another host still gets in, while the greedy one holds its two.
    with _connect_from("127.0.0.3", proxy.smtp_port) as other:
        assert other.recv(100).startswith(b"220")
    greedy[0].close()
    deadline = time.monotonic() + 5
    while proxy.metric("sesproxy_smtp_sessions_active") != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The address's count went down with its session: it may open one again.
    with _connect_from("127.0.0.2", proxy.smtp_port) as again:
        assert again.recv(100).startswith(b"220")
    greedy[1].close()


def test_starttls_required_before_mail(
    start_outbox_proxy: StartProxy, certificate: tuple[Path, Path, Path]
) -> None:
    cert, key, ca = certificate
    proxy = start_outbox_proxy(
        {"smtp": {"tls_cert_file": str(cert), "tls_key_file": str(key), "require_tls": True}}
    )
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        code, text = client.mail("noreply@example.com")
        assert (code, text[:5]) == (530, b"5.7.0")
        client.starttls(context=client_context(ca))
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        assert not client.has_extn("auth")
        assert client.mail("noreply@example.com")[0] == 250
        assert client.rcpt("a@example.net")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    assert proxy.metric("sesproxy_messages_rejected_total", reason="tls") == 1
    [sent] = proxy.events("sent")
    assert sent["tls"] is True


def test_implicit_tls_listener(
    start_outbox_proxy: StartProxy, certificate: tuple[Path, Path, Path]
) -> None:
    cert, key, ca = certificate
    proxy = start_outbox_proxy(
        {
            "smtp": {
                "tls_cert_file": str(cert),
                "tls_key_file": str(key),
                "tls_port": free_port(),
                "require_tls": True,
            }
        }
    )
    with smtplib.SMTP_SSL(
        "127.0.0.1", proxy.tls_port, timeout=10, context=client_context(ca)
    ) as client:
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        assert not client.has_extn("auth")
        assert client.mail("noreply@example.com")[0] == 250
        assert client.rcpt("a@example.net")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    assert len(outbox_files(proxy)) == 1


@pytest.mark.parametrize("mode", ["--tls", "--tls-on-connect"])
def test_swaks_over_tls(
    start_outbox_proxy: StartProxy, certificate: tuple[Path, Path, Path], mode: str
) -> None:
    swaks = require_tool("swaks", "swaks")
    cert, key, _ = certificate
    proxy = start_outbox_proxy(
        {"smtp": {"tls_cert_file": str(cert), "tls_key_file": str(key), "tls_port": free_port()}}
    )
    port = proxy.smtp_port if mode == "--tls" else proxy.tls_port
    result = subprocess.run(
        [
            swaks,
            "--server",
            "127.0.0.1",
            "--port",
            str(port),
            mode,
            "--from",
            "noreply@example.com",
            "--to",
            "friend@example.net",
            "--header",
            "From: noreply@example.com",
            "--pipeline",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^<~?  250 2\.0\.0 Ok \S+$", result.stdout, re.MULTILINE), result.stdout
    assert "=== TLS started" in result.stdout
    [eml] = outbox_files(proxy)
    envelope = json.loads(eml.with_suffix(".json").read_text())
    assert envelope["recipients"] == ["friend@example.net"]


def test_a_100_mb_line_without_crlf_keeps_memory_bounded(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy()
    status = Path(f"/proc/{proxy.process.pid}/status")

    def peak_kib() -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1])

    before = peak_kib()
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=60) as sock:
        replies = sock.makefile("rb")
        replies.readline()
        sock.sendall(
            b"HELO c\r\nMAIL FROM:<noreply@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n"
        )
        assert [replies.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        sock.sendall(b"From: noreply@example.com\r\n\r\n")
        for _ in range(100):
            sock.sendall(chunk)
        sock.sendall(b"\r\n.\r\n")
        assert replies.readline().startswith(b"552 5.3.4")
        sock.sendall(b"NOOP\r\n")
        assert replies.readline().startswith(b"250")
    growth_mib = (peak_kib() - before) / 1024
    assert growth_mib < 20, f"peak RSS grew by {growth_mib:.0f} MiB for a 100 MiB line"
    assert outbox_files(proxy) == []


def test_a_long_line_within_the_size_limit_is_malformed(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy()
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.ehlo("c")
        client.mail("noreply@example.com")
        client.rcpt("a@example.net")
        code, text = client.data(MESSAGE + b"y" * 5000 + b"\r\n")
    assert (code, text[:5]) == (550, b"5.6.0")
    assert proxy.metric("sesproxy_messages_rejected_total", reason="malformed") == 1


async def test_concurrent_clients_with_aiosmtplib(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy()

    async def one(index: int) -> None:
        message = MESSAGE.replace(b"hello", f"message {index}".encode())
        await aiosmtplib.send(
            message,
            sender="noreply@example.com",
            recipients=[f"user{index}@example.net"],
            hostname="127.0.0.1",
            port=proxy.smtp_port,
            start_tls=False,
        )

    await asyncio.gather(*(one(i) for i in range(20)))
    bodies = sorted(path.read_bytes() for path in outbox_files(proxy))
    assert len(bodies) == 20
    assert all(b"message " in body for body in bodies)
    assert proxy.metric("sesproxy_messages_sent_total") == 20


def test_an_idle_session_is_closed_after_the_timeout(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy({"smtp": {"timeout_seconds": 0.5}})
    with socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=10) as sock:
        replies = sock.makefile("rb")
        assert replies.readline().startswith(b"220")
        started = time.monotonic()
        assert replies.readline() == b""
        assert time.monotonic() - started < 5
    assert proxy.metric("sesproxy_smtp_sessions_active") == 0
