"""SMTP AUTH and clients against a real relay: every reply of the AUTH table, the
lockout, what each client may send, and that no password ever reaches a log.

Loopback may authenticate without TLS (RFC 4954 section 4), so these run in clear; the
538 for an unencrypted non-loopback session is judged by `may_authenticate`, whose
address test is below (tests use loopback only).
"""

from __future__ import annotations

import base64
import json
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.clients import aws_access_key_tail, is_loopback
from proxy.smtp.auth import HASHER
from tests.conftest import StartProxy, base_config
from tests.harness import RunningProxy, deep_merge, run_cli, start_proxy
from tests.properties import examples

PASSWORD = "correct horse battery staple"
MESSAGE = b"From: billing@example.com\r\nTo: a@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


def _clients() -> list[dict[str, Any]]:
    return [
        {
            "name": "billing",
            "username": "billing",
            "password_hash": HASHER.hash(PASSWORD),
            "allowed_senders": ["billing@example.com"],
        },
        {
            "name": "support",
            "username": "support",
            "password_hash": HASHER.hash("another one"),
            "allowed_senders": ["support@example.com", "*@help.example.com"],
        },
        {"name": "batch", "networks": ["127.0.0.3/32"], "allowed_senders": ["batch@example.com"]},
    ]


def _relay(start: StartProxy, auth: str, **smtp: Any) -> RunningProxy:
    return start({"smtp": {"auth": auth, **smtp}, "clients": _clients()})


def _plain(username: str, password: str) -> str:
    return base64.b64encode(f"\0{username}\0{password}".encode()).decode()


class Dialog:
    """A raw SMTP conversation: send one line, read one reply (multi-line joined)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.stream = self.sock.makefile("rb")
        assert self.read().startswith("220")

    def read(self) -> str:
        lines = []
        while True:
            line = self.stream.readline().decode()
            assert line, "connection closed"
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return "\n".join(lines)

    def say(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dialogs() -> Iterator[list[Dialog]]:
    opened: list[Dialog] = []
    yield opened
    for dialog in opened:
        dialog.close()


def test_auth_none_offers_nothing_and_behaves_as_before(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy()
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        assert not client.has_extn("auth")


def test_the_auth_reply_table(start_outbox_proxy: StartProxy, dialogs: list[Dialog]) -> None:
    proxy = _relay(start_outbox_proxy, "required")
    talk = Dialog(proxy.smtp_port)
    dialogs.append(talk)
    assert talk.say("AUTH PLAIN " + _plain("billing", PASSWORD)).startswith("503")  # no EHLO
    assert talk.say("EHLO client.test").endswith("\n250 AUTH PLAIN LOGIN")
    assert talk.say("MAIL FROM:<billing@example.com>").startswith("530 5.7.0")
    assert talk.say("AUTH CRAM-MD5").startswith("504 5.5.4")
    assert talk.say("AUTH PLAIN =").startswith("501 5.5.2")
    assert talk.say("AUTH PLAIN not-base64!").startswith("501 5.5.2")
    assert talk.say("AUTH PLAIN " + _plain("billing", "wrong")).startswith("535 5.7.8")
    assert talk.say("AUTH PLAIN " + _plain("nobody", PASSWORD)).startswith("535 5.7.8")
    # An authorization identity other than the user's own: acting for someone else.
    acting = base64.b64encode(f"support\0billing\0{PASSWORD}".encode()).decode()
    assert talk.say("AUTH PLAIN " + acting).startswith("501 5.5.2")
    # PLAIN without an initial response: an empty challenge, then the credentials.
    assert talk.say("AUTH PLAIN") == "334 "
    assert talk.say(_plain("billing", PASSWORD)).startswith("235 2.7.0")
    assert talk.say("AUTH PLAIN " + _plain("billing", PASSWORD)).startswith("503 5.5.1")
    assert "AUTH" not in talk.say("EHLO client.test")
    assert talk.say("MAIL FROM:<billing@example.com>").startswith("250")
    assert proxy.metric("sesproxy_auth_attempts_total", result="bad_credentials") == 2
    assert proxy.metric("sesproxy_auth_attempts_total", result="success") == 1
    assert proxy.metric("sesproxy_messages_rejected_total", reason="auth") == 1


def test_login_prompts_and_auth_inside_a_transaction(
    start_outbox_proxy: StartProxy, dialogs: list[Dialog]
) -> None:
    proxy = _relay(start_outbox_proxy, "any")
    talk = Dialog(proxy.smtp_port)
    dialogs.append(talk)
    talk.say("EHLO client.test")
    assert talk.say("MAIL FROM:<noreply@example.com>").startswith("250")  # any: AUTH optional
    assert talk.say("AUTH LOGIN").startswith("503 5.5.1")
    talk.say("RSET")
    username = base64.b64encode(b"billing").decode()
    assert talk.say("AUTH LOGIN") == "334 " + base64.b64encode(b"Username:").decode()
    assert talk.say(username) == "334 " + base64.b64encode(b"Password:").decode()
    assert talk.say(base64.b64encode(PASSWORD.encode()).decode()).startswith("235")
    # LOGIN with the username as initial response; '*' cancels (RFC 4954).
    other = Dialog(proxy.smtp_port)
    dialogs.append(other)
    other.say("EHLO client.test")
    assert other.say("AUTH LOGIN " + username).startswith("334 ")
    assert other.say("*").startswith("501")
    assert other.say("NOOP").startswith("250")


def test_each_client_sends_only_as_itself(start_outbox_proxy: StartProxy) -> None:
    proxy = _relay(start_outbox_proxy, "any")
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.login("billing", PASSWORD)
        assert client.mail("support@example.com")[0] == 550
        assert client.mail("noreply@example.com")[0] == 550  # the default policy's sender
        assert client.mail("billing@example.com")[0] == 250
        assert client.rcpt("a@example.net")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    # `any`: a stranger's credentials are accepted and the default policy applies.
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.login("somebody", "anything")
        assert client.mail("billing@example.com")[0] == 550
        assert client.mail("noreply@example.com")[0] == 250
    assert proxy.metric("sesproxy_messages_sent_total", client="billing") == 1
    [sent] = proxy.events("sent")
    assert sent["client"] == "billing"


def test_a_client_by_network_needs_no_auth(start_outbox_proxy: StartProxy) -> None:
    proxy = _relay(start_outbox_proxy, "required")
    with smtplib.SMTP(
        "127.0.0.1", proxy.smtp_port, timeout=10, source_address=("127.0.0.3", 0)
    ) as client:
        client.ehlo("batch.test")
        assert client.mail("billing@example.com")[0] == 550
        assert client.mail("batch@example.com")[0] == 250
    with smtplib.SMTP(
        "127.0.0.1", proxy.smtp_port, timeout=10, source_address=("127.0.0.2", 0)
    ) as client:
        client.ehlo("other.test")
        assert client.mail("batch@example.com")[0] == 530


def test_a_brute_force_is_locked_out_unchecked_and_others_go_on(
    start_outbox_proxy: StartProxy, dialogs: list[Dialog]
) -> None:
    proxy = _relay(start_outbox_proxy, "required", auth_max_failures=3)
    attacker = Dialog(proxy.smtp_port, source="127.0.0.2")
    dialogs.append(attacker)
    attacker.say("EHLO attacker.test")
    for guess in ("one", "two", "three"):
        assert attacker.say("AUTH PLAIN " + _plain("billing", guess)).startswith("535")
    # Locked out: even the right password is not checked.
    assert attacker.say("AUTH PLAIN " + _plain("billing", PASSWORD)).startswith("454 4.7.0")
    again = Dialog(proxy.smtp_port, source="127.0.0.2")
    dialogs.append(again)
    again.say("EHLO attacker.test")
    assert again.say("AUTH PLAIN " + _plain("billing", PASSWORD)).startswith("454 4.7.0")
    assert proxy.metric("sesproxy_auth_attempts_total", result="locked_out") == 2
    assert proxy.metric("sesproxy_auth_attempts_total", result="bad_credentials") == 3
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.login("billing", PASSWORD)  # another address: unaffected
    assert PASSWORD not in proxy.log_text()
    for guess in ("one", "two", "three"):
        assert f'"{guess}"' not in proxy.log_text()


def test_an_aws_key_id_as_username_is_reported_by_its_last_four(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = _relay(start_outbox_proxy, "any")
    key_id = "AKIAIOSFODNN7EXAMPLE"
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
            client.login(key_id, "BJdHN0aA/secret+derived/from+the/key")
    [said] = proxy.events("aws_key_as_smtp_username")
    assert said["key_id_ends_with"] == "MPLE"
    assert key_id not in proxy.log_text()
    assert "secret+derived" not in proxy.log_text()
    assert proxy.metric("sesproxy_auth_aws_key_usernames_total") == 2


def test_an_access_key_id_is_recognised_by_its_shape() -> None:
    assert aws_access_key_tail("AKIAIOSFODNN7EXAMPLE") == "MPLE"
    assert aws_access_key_tail("ASIAY34FZKBOKMUTVV7A") == "VV7A"
    assert aws_access_key_tail("AKIAshort") is None
    assert aws_access_key_tail("billing") is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("::ffff:10.0.0.5", False),
        ("2001:db8::1", False),
        ("unknown", False),
    ],
)
def test_only_loopback_may_authenticate_without_tls(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_malformed_client_is_exit_2_naming_it(tmp_path: Path) -> None:
    config = base_config("outbox", tmp_path / "outbox")
    config["clients"] = [
        _clients()[0],
        {
            "name": "two",
            "username": "two",
            "password_hash": "plaintext!",
            "allowed_senders": ["a@b.c"],
        },
    ]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 2
    assert "clients[1].password_hash" in result.stderr
    assert "plaintext!" not in result.stderr


# ---------------------------------------------------------------- isolation property


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    workdir = tmp_path_factory.mktemp("clients")
    config = deep_merge(
        base_config("outbox", workdir / "outbox"),
        {"smtp": {"auth": "required"}, "clients": _clients()},
    )
    proxy = start_proxy(workdir, config)
    yield proxy
    proxy.stop()


CANDIDATES = [
    "billing@example.com",
    "support@example.com",
    "agent@help.example.com",
    "batch@example.com",
    "noreply@example.com",
    "BILLING@EXAMPLE.COM",
    "billing@example.com.evil.test",
]
OWN = {
    "billing": {"billing@example.com", "BILLING@EXAMPLE.COM"},
    "support": {"support@example.com", "agent@help.example.com"},
}
PASSWORDS = {"billing": PASSWORD, "support": "another one"}


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.sampled_from(sorted(OWN)), st.lists(st.sampled_from(CANDIDATES), min_size=1, max_size=6))
def test_a_client_can_never_send_as_another_clients_sender(
    shared_relay: RunningProxy, who: str, senders: list[str]
) -> None:
    with smtplib.SMTP("127.0.0.1", shared_relay.smtp_port, timeout=10) as client:
        client.login(who, PASSWORDS[who])
        for sender in senders:
            code, _ = client.mail(sender)
            client.rset()
            assert (code == 250) == (sender in OWN[who]), (who, sender, code)


def test_a_clients_configuration_set_and_tags_and_the_headers_it_may_set(
    start_outbox_proxy: StartProxy, tmp_path: Path
) -> None:
    client = {
        "name": "newsletter",
        "networks": ["127.0.0.4/32"],
        "allowed_senders": ["news@example.com"],
        "configuration_set": "newsletter-events",
        "allowed_configuration_sets": ["newsletter-bounces"],
        "allow_message_tags": True,
        "message_tags": {"app": "newsletter"},
    }
    proxy = start_outbox_proxy({"clients": [client]})
    message = (
        b"From: news@example.com\r\nX-SES-MESSAGE-TAGS: app=spoofed, campaign=winter\r\n"
        b"Subject: hi\r\n\r\nhello\r\n"
    )
    chosen = b"X-SES-CONFIGURATION-SET: newsletter-bounces\r\n" + message
    for raw in (message, chosen):
        with smtplib.SMTP(
            "127.0.0.1", proxy.smtp_port, timeout=10, source_address=("127.0.0.4", 0)
        ) as smtp:
            smtp.sendmail("news@example.com", ["a@example.net"], raw)
    outbox = Path(proxy.config["delivery"]["outbox_dir"])
    envelopes = sorted(outbox.glob("*.json"), key=lambda path: path.stat().st_mtime_ns)
    first, second = (json.loads(path.read_text()) for path in envelopes)
    # The client's own tag wins over the header's; the header adds what it may.
    assert first["tags"] == {"app": "newsletter", "campaign": "winter"}
    assert first["configuration_set"] == "newsletter-events"
    assert second["configuration_set"] == "newsletter-bounces"
    for eml in outbox.glob("*.eml"):
        assert b"X-SES-" not in eml.read_bytes().upper()


def test_a_client_beyond_its_own_rate_is_deferred_while_others_send(
    start_ses_proxy: StartProxy,
) -> None:
    batch = {
        "name": "batch",
        "networks": ["127.0.0.3/32"],
        "allowed_senders": ["batch@example.com"],
        "max_send_rate": 0.01,
    }
    proxy = start_ses_proxy({"clients": [batch], "rate": {"max_wait_seconds": 1}})
    raw = b"From: batch@example.com\r\nSubject: report\r\n\r\nnumbers\r\n"
    codes = []
    with smtplib.SMTP(
        "127.0.0.1", proxy.smtp_port, timeout=30, source_address=("127.0.0.3", 0)
    ) as smtp:
        for _ in range(4):
            try:
                smtp.sendmail("batch@example.com", ["a@example.net"], raw)
                codes.append(250)
            except smtplib.SMTPDataError as error:
                codes.append(error.smtp_code)
    # At 0.01/s, one message may go (SES's bucket with debt: a message goes once a
    # hundredth of a token is there), and then its debt is 100 s: beyond the 1 s wait.
    assert codes.count(250) <= 1
    assert codes.count(451) == 4 - codes.count(250)
    deferred = proxy.metric("sesproxy_messages_deferred_total", client="batch", reason="rate")
    assert deferred == codes.count(451)
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as smtp:
        smtp.sendmail(
            "noreply@example.com", ["a@example.net"], MESSAGE.replace(b"billing", b"noreply")
        )
    assert proxy.metric("sesproxy_messages_sent_total", client="-") == 1


def test_a_client_out_of_step_never_gets_its_password_logged(
    start_outbox_proxy: StartProxy, dialogs: list[Dialog]
) -> None:
    """A client that sends LOGIN's answers after its AUTH was refused sends its base64
    password as a command line: the reply is 500, and no log line holds it."""
    proxy = _relay(start_outbox_proxy, "required", auth_max_failures=1)
    talk = Dialog(proxy.smtp_port)
    dialogs.append(talk)
    talk.say("EHLO client.test")
    assert talk.say("AUTH PLAIN " + _plain("billing", "wrong")).startswith("535")
    assert talk.say("AUTH LOGIN").startswith("454")
    secret = base64.b64encode(PASSWORD.encode()).decode()
    assert talk.say(secret).startswith("500")
    assert talk.say("NOOP").startswith("250")
    text = proxy.log_text().lower()
    assert secret.lower() not in text
    assert PASSWORD.lower() not in text
