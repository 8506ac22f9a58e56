"""End to end: SMTP client → real proxy process → aiobotocore → fake SES over HTTP.

Credentials come from the fake container-credentials endpoint; the fake SES
verifies every SigV4 signature against the credential it issued. Tests taking `api`
run on SES v1 (SendRawEmail) and v2 (SendEmail); what only v2 does:
tests/test_relay_ses_v2.py.
"""

from __future__ import annotations

import json
import smtplib
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import pytest

from tests.conftest import ALLOWED_SENDERS, StartProxy
from tests.fakes.aws import FakeAWS
from tests.fakes.credentials import FakeContainerCredentials


def raw_message(
    sender: str = "Example <noreply@example.com>", extra_headers: str = "", body: str = "hello"
) -> bytes:
    return (
        f"From: {sender}\r\nTo: friend@example.net\r\nSubject: test\r\n{extra_headers}"
        f"Message-ID: <m1@example.com>\r\n\r\n{body}\r\n"
    ).encode()


def send(
    port: int, mail_from: str, rcpts: list[str], raw: bytes, quit: bool = True
) -> tuple[int, str]:
    """One transaction with smtplib; the reply to the end of DATA. Without `quit`, the
    connection is dropped after that reply (a relay shutting down may answer QUIT
    with 421 instead of 221, which smtplib's QUIT on leaving takes for an error)."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo("client.test")
        code, _ = client.mail(mail_from)
        assert code == 250
        for rcpt in rcpts:
            client.rcpt(rcpt)
        code, text = client.data(raw)
        if quit:
            assert client.quit()[0] == 221
        return code, text.decode()
    finally:
        client.close()


def _answer_slowly(fake_aws: FakeAWS, seconds: float) -> None:
    """The fake SES's next answer comes after `seconds`: a send stays in flight."""
    fake_aws.slow_seconds = seconds
    fake_aws.inject("slow")


def _send_without_waiting(port: int) -> socket.socket:
    """A whole transaction written at once, no reply read (after the banner)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.recv(1024)
    sock.sendall(
        b"HELO client.test\r\nMAIL FROM:<noreply@example.com>\r\nRCPT TO:<a@example.net>\r\n"
        b"DATA\r\n" + raw_message() + b".\r\n"
    )
    return sock


# Each API's sending action, and the other one's, which it must never call.
ACTIONS = {"v1": ("SendRawEmail", "SendEmail"), "v2": ("SendEmail", "SendRawEmail")}
# What the fake read of the contract's send, in each API's shape (the message aside).
_CONTRACT_PARAMS = {
    "v1": {
        "Action": "SendRawEmail",
        "Version": "2010-12-01",
        "Source": "noreply@example.com",
        "Destinations.member.1": "friend@example.net",
        "Destinations.member.2": "someone@example.org",
        "ConfigurationSetName": "tls-required",
    },
    "v2": {
        "FromEmailAddress": "noreply@example.com",
        "Destination.ToAddresses.1": "friend@example.net",
        "Destination.ToAddresses.2": "someone@example.org",
        "ConfigurationSetName": "tls-required",
    },
}


def actions(fake_aws: FakeAWS) -> set[str]:
    return {r.action for r in fake_aws.requests}


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_message_reaches_ses_exactly_as_the_contract_says(
    start_ses_proxy: StartProxy,
    fake_aws: FakeAWS,
    container_credentials: FakeContainerCredentials,
    api: str,
) -> None:
    fake_aws.configuration_sets["tls-required"] = "Require"
    proxy = start_ses_proxy({"ses": {"api": api, "configuration_set": "tls-required"}})
    raw = raw_message(
        extra_headers=(
            "Bcc: hidden@example.net,\r\n other@example.net\r\n"
            "Resent-Bcc: resent-hidden@example.net\r\n"
            "X-SES-CONFIGURATION-SET: attacker-set\r\n"
            "x-ses-source-arn: arn:aws:ses:eu-west-3:999999999999:identity/evil.test\r\n"
            "X-Mailer: app 1.0\r\n"
        )
    )
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("NoReply@EXAMPLE.com")[0] == 250
        assert client.rcpt("Friend@Example.NET")[0] == 250
        assert client.rcpt("someone@example.org")[0] == 250
        code, text = client.data(raw)
    assert code == 250
    [sent] = fake_aws.sent
    assert text.decode() == f"2.0.0 Ok {sent.message_id}"
    assert sent.source == "noreply@example.com"
    assert sent.destinations == ["friend@example.net", "someone@example.org"]
    assert sent.configuration_set == "tls-required"
    expected = raw_message(extra_headers="X-Mailer: app 1.0\r\n")
    assert sent.raw == expected
    assert sent.access_key_id == container_credentials.current.access_key_id
    action, other = ACTIONS[api]
    [request] = [r for r in fake_aws.requests if r.action == action]
    assert request.params == _CONTRACT_PARAMS[api]
    assert other not in actions(fake_aws)
    assert proxy.metric("sesproxy_messages_sent_total") == 1
    [log_entry] = proxy.events("sent")
    # "Did the mail to X go out?": answered by the line alone, without the message.
    assert log_entry["ses_message_id"] == sent.message_id
    assert log_entry["message_id"] == "<m1@example.com>"
    assert log_entry["from"] == "noreply@example.com"
    assert log_entry["to"] == ["friend@example.net", "someone@example.org"]
    assert (log_entry["client"], log_entry["peer"]) == ("-", "127.0.0.1")
    assert log_entry["size"] == len(sent.raw)
    assert 0 <= log_entry["duration_ms"] < 30_000
    assert "hello" not in json.dumps(log_entry), "the body never reaches a log line"


def test_mixed_recipients_send_the_allowed_ones_once(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy({"policy": {"allowed_recipients": ["*@example.net"]}})
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("noreply@example.com")
        assert client.rcpt("a@example.net")[0] == 250
        assert client.rcpt("b@elsewhere.test")[0] == 550
        assert client.rcpt("a@EXAMPLE.net")[0] == 250
        assert client.rcpt("c@example.net")[0] == 250
        code, _ = client.data(raw_message())
    assert code == 250
    [sent] = fake_aws.sent
    assert sent.destinations == ["a@example.net", "c@example.net"]
    assert proxy.metric("sesproxy_messages_rejected_total", reason="recipient") == 1


def test_fifty_one_recipients(start_ses_proxy: StartProxy, fake_aws: FakeAWS) -> None:
    proxy = start_ses_proxy()
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("noreply@example.com")
        codes = [client.rcpt(f"user{i}@example.net")[0] for i in range(51)]
        assert codes == [250] * 50 + [452]
        code, _ = client.data(raw_message())
    assert code == 250
    assert len(fake_aws.sent[0].destinations) == 50


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(
    ("fault", "reply", "counter", "reason"),
    [
        # throttle_rate (retried by pacing) and throttle_daily (stops calls until
        # the quota shows room): tests/pacing/test_pacing_e2e.py, test_relay_ses_v2.py.
        ("access_denied", "451 4.7.1", "deferred", "denied"),
        ("config_set_missing", "451 4.3.5", "deferred", "config"),
        ("mail_from_not_verified", "451 4.3.5", "deferred", "config"),
        ("account_paused", "451 4.3.2", "deferred", "paused"),
        ("account_suspended", "451 4.3.2", "deferred", "paused"),
        ("http_500", "451 4.4.1", "deferred", "unavailable"),
        ("http_503", "451 4.4.1", "deferred", "unavailable"),
        ("drop", "451 4.4.1", "deferred", "unavailable"),
        ("message_rejected", "554 5.7.1", "failed", "rejected"),
        ("invalid_parameter", "554 5.6.0", "failed", "invalid"),
    ],
)
def test_each_ses_error_gets_its_reply_and_nothing_is_sent(
    start_ses_proxy: StartProxy,
    fake_aws: FakeAWS,
    fault: str,
    reply: str,
    counter: str,
    reason: str,
    api: str,
) -> None:
    proxy = start_ses_proxy({"ses": {"api": api}})
    fake_aws.inject(fault)
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert f"{code} {text}".startswith(reply)
    assert fake_aws.sent == []
    assert proxy.metric(f"sesproxy_messages_{counter}_total", reason=reason) == 1
    assert proxy.metric("sesproxy_messages_sent_total") == 0
    # The client hears the class of the failure, never SES's words or our exception.
    for leak in ("Throttling", "Exception", "Error", "arn:", "Traceback", "MessageRejected"):
        assert leak not in text
    [entry] = proxy.events("failed" if counter == "failed" else "deferred")
    assert entry["reason"] == reason
    assert (entry["from"], entry["to"]) == ("noreply@example.com", ["a@example.net"])
    assert (entry["message_id"], entry["peer"]) == ("<m1@example.com>", "127.0.0.1")
    # After the fault, the same relay sends again.
    code, _ = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert code == 250
    assert ACTIONS[api][1] not in actions(fake_aws)


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("fault", ["empty_message_id", "no_message_id"])
def test_a_success_without_a_message_id_is_a_451_never_a_250(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS, fault: str, api: str
) -> None:
    proxy = start_ses_proxy({"ses": {"api": api}})
    fake_aws.inject(fault)
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert (code, text[:5]) == (451, "4.4.1")
    assert proxy.metric("sesproxy_messages_deferred_total", reason="unavailable") == 1
    assert proxy.metric("sesproxy_messages_sent_total") == 0
    [malformed] = proxy.events("ses_answer_malformed")
    assert "MessageId" in malformed["detail"]
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert code == 250
    assert text.split()[-1] == fake_aws.sent[-1].message_id


def test_a_slow_ses_beyond_the_read_timeout_is_a_451(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy({"ses": {"read_timeout_seconds": 0.5}})
    _answer_slowly(fake_aws, 3)
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert (code, text[:5]) == (451, "4.4.1")
    assert proxy.metric("sesproxy_messages_deferred_total", reason="unavailable") == 1


def test_credentials_rotate_during_a_run(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS, tmp_path: object
) -> None:
    # Credentials that expire within botocore's 15-minute refresh window are
    # fetched again before each use, so a rotation shows at the next message.
    with FakeContainerCredentials(fake_aws, expires_in=14 * 60) as endpoint:
        proxy = start_ses_proxy(env=endpoint.env())
        first_key = endpoint.current.access_key_id
        assert (
            send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
        )
        second = endpoint.rotate()
        fake_aws.revoke(first_key)
        assert (
            send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
        )
        keys = [message.access_key_id for message in fake_aws.sent]
        assert keys == [first_key, second.access_key_id]
        assert proxy.metric("sesproxy_credentials_expiry_timestamp_seconds") == pytest.approx(
            second.expiration.timestamp() if second.expiration else 0, abs=2
        )


def test_long_lived_keys_are_refused_and_never_printed(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    static = fake_aws.add_static_key()
    env = {
        "AWS_ACCESS_KEY_ID": static.access_key_id,
        "AWS_SECRET_ACCESS_KEY": static.secret_access_key,
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
    }
    proxy = start_ses_proxy(env=env, wait_ready=False)
    assert proxy.wait(timeout=30) == 2
    output = proxy.log_text()
    assert "ses.allow_static_credentials" in output
    assert "source: env" in output
    assert static.secret_access_key not in output
    assert static.access_key_id not in output


def test_long_lived_keys_work_when_allowed(start_ses_proxy: StartProxy, fake_aws: FakeAWS) -> None:
    static = fake_aws.add_static_key()
    env = {
        "AWS_ACCESS_KEY_ID": static.access_key_id,
        "AWS_SECRET_ACCESS_KEY": static.secret_access_key,
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
    }
    proxy = start_ses_proxy({"ses": {"allow_static_credentials": True}}, env=env)
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
    assert fake_aws.sent[0].access_key_id == static.access_key_id


def test_role_arn_sends_with_the_assumed_role(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS, container_credentials: FakeContainerCredentials
) -> None:
    role = "arn:aws:iam::123456789012:role/ses-sender"
    proxy = start_ses_proxy({"ses": {"role_arn": role}}, env={"AWS_ENDPOINT_URL_STS": fake_aws.url})
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
    [assumed] = fake_aws.assumed_roles
    assert assumed.role_arn == role
    assert assumed.policy is not None
    session_policy = json.loads(assumed.policy)
    [statement] = [s for s in session_policy["Statement"] if s["Action"] == "ses:SendRawEmail"]
    assert statement["Action"] == "ses:SendRawEmail"
    assert statement["Condition"]["StringLike"]["ses:FromAddress"] == ALLOWED_SENDERS
    assert all(":123456789012:identity/" in arn for arn in statement["Resource"])
    assert assumed.caller_access_key_id == container_credentials.current.access_key_id
    assert fake_aws.sent[0].access_key_id == assumed.access_key_id


def test_sigterm_lets_a_send_in_flight_finish(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy()
    _answer_slowly(fake_aws, 1.5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        reply = pool.submit(
            send, proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message(), False
        )
        # Received but not yet answered: the send is in flight at the slow fake.
        _wait_for(lambda: proxy.metric("sesproxy_messages_received_total") == 1, 10)
        assert fake_aws.sent == []
        idle = socket.create_connection(("127.0.0.1", proxy.smtp_port))
        idle.recv(1024)
        proxy.process.send_signal(15)
        code, text = reply.result(timeout=60)
    assert code == 250
    [sent] = fake_aws.sent
    assert text.endswith(sent.message_id)
    assert proxy.wait() == 0
    # The idle session was told why it was closed.
    assert idle.recv(1024).startswith(b"421 4.3.2")
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=2).recv(1)


def test_sigterm_cuts_a_send_still_in_flight_at_the_end_of_the_grace_period(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy({"smtp": {"shutdown_grace_seconds": 1}})
    _answer_slowly(fake_aws, 6.0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        reply = pool.submit(
            send, proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message(), False
        )
        _wait_for(lambda: proxy.metric("sesproxy_messages_received_total") == 1, 10)
        signalled = time.monotonic()
        proxy.process.send_signal(15)
        assert proxy.wait(timeout=10) == 0
        assert time.monotonic() - signalled < 4, "the grace period is 1 s"
        # The client never heard 250: it still holds the mail and will retry.
        with pytest.raises(smtplib.SMTPServerDisconnected):
            reply.result(timeout=10)
    [cut] = proxy.events("drain_timeout")
    assert cut["cut"] == 1
    assert not proxy.events("sent")


def test_a_client_hanging_up_does_not_cancel_the_send(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy()
    _answer_slowly(fake_aws, 1.0)
    sock = _send_without_waiting(proxy.smtp_port)
    time.sleep(0.3)
    sock.shutdown(socket.SHUT_WR)
    sock.close()
    sent = fake_aws.wait_for_sent(1, timeout=10)
    assert len(sent) == 1
    _wait_for(lambda: bool(proxy.events("sent")), 10)
    time.sleep(0.5)
    assert len(fake_aws.sent) == 1


def test_a_client_resetting_the_connection_mid_send_does_not_cancel_it(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    """A reset (not a polite FIN) reaches the relay while it waits for SES: the session
    is gone at once, yet the send ends, is counted and logged once, and the relay goes
    on serving."""
    proxy = start_ses_proxy()
    _answer_slowly(fake_aws, 1.0)
    sock = _send_without_waiting(proxy.smtp_port)
    _wait_for(lambda: proxy.metric("sesproxy_messages_received_total") == 1, 10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # with a zero linger: RST
    _wait_for(lambda: proxy.metric("sesproxy_smtp_sessions_active") == 0, 10)
    assert fake_aws.sent == [], "the session ended while SES was still answering"
    [sent] = fake_aws.wait_for_sent(1, timeout=10)
    _wait_for(lambda: bool(proxy.events("sent")), 10)
    [logged] = proxy.events("sent")
    assert logged["ses_message_id"] == sent.message_id
    assert proxy.metric("sesproxy_messages_sent_total") == 1
    assert not proxy.events("internal_error")
    fake_aws.slow_seconds = 0.0
    code, _ = send(proxy.smtp_port, "noreply@example.com", ["b@example.net"], raw_message())
    assert code == 250
    assert len(fake_aws.sent) == 2


def test_a_client_closing_its_side_mid_send_still_reads_the_reply(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    """After the dot a client shuts down its sending side (EOF, no reset) and waits:
    the relay finishes the send, answers, and only then closes the session."""
    proxy = start_ses_proxy()
    _answer_slowly(fake_aws, 0.5)
    with socket.create_connection(("127.0.0.1", proxy.smtp_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(
            b"HELO client.test\r\nMAIL FROM:<noreply@example.com>\r\n"
            b"RCPT TO:<a@example.net>\r\nDATA\r\n" + raw_message() + b".\r\n"
        )
        replies = [reader.readline() for _ in range(4)]
        assert [line[:3] for line in replies] == [b"250", b"250", b"250", b"354"]
        _wait_for(lambda: proxy.metric("sesproxy_messages_received_total") == 1, 10)
        sock.shutdown(socket.SHUT_WR)
        [sent] = fake_aws.wait_for_sent(1, timeout=10)
        final = reader.readline()
        assert final.startswith(b"250 ")
        assert sent.message_id.encode() in final
        assert reader.readline() == b"", "the session ends after its reply"
    _wait_for(lambda: bool(proxy.events("sent")), 10)
    assert not proxy.events("internal_error")


def _wait_for(condition: object, timeout: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_smtplib_send_message_with_an_email_object(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy()
    message = EmailMessage()
    message["From"] = "Alerts <alerts@example.org>"
    message["To"] = "ops@example.net"
    message["Subject"] = "Disk is full"
    message.set_content("The disk on db-1 is full.\n" * 50)
    message.add_attachment(b"\x00\x01" * 2048, maintype="application", subtype="octet-stream")
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.send_message(message)
    [sent] = fake_aws.sent
    assert sent.source == "alerts@example.org"
    assert b"Subject: Disk is full" in sent.raw


def test_quota_gauges_come_from_get_send_quota(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    fake_aws.max_send_rate = 10.0
    fake_aws.max_24h_send = 2000.0
    fake_aws.sent_last_24h = 123.0
    proxy = start_ses_proxy()
    _wait_for(lambda: proxy.metric("sesproxy_ses_quota_max_send_rate") == 10.0, 10)
    assert proxy.metric("sesproxy_ses_quota_max_24h_send") == 2000.0
    assert proxy.metric("sesproxy_ses_quota_sent_last_24h") == 123.0
    calls = [r for r in fake_aws.requests if r.action == "GetSendQuota"]
    assert len(calls) == 1, "polled once at start, then about once a minute"


def test_rejected_lines_say_whom_the_mail_was_from_and_to(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy({"policy": {"allowed_recipients": ["*@example.net"]}})
    spoofed = raw_message(sender="Boss <ceo@elsewhere.example>")
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("intruder@elsewhere.example")[0] == 550
        assert client.mail("noreply@example.com")[0] == 250
        assert client.rcpt("someone@example.org")[0] == 550
        assert client.rcpt("friend@example.net")[0] == 250
        assert client.data(spoofed)[0] == 550
    at_mail, at_rcpt, at_data = proxy.events("rejected")
    assert (at_mail["stage"], at_mail["from"]) == ("mail", "intruder@elsewhere.example")
    assert (at_rcpt["from"], at_rcpt["to"]) == ("noreply@example.com", ["someone@example.org"])
    assert (at_data["from"], at_data["to"]) == ("noreply@example.com", ["friend@example.net"])
    assert at_data["message_id"] == "<m1@example.com>"
    for entry in (at_mail, at_rcpt, at_data):
        assert (entry["client"], entry["peer"]) == ("-", "127.0.0.1")
    assert fake_aws.sent == []


def test_the_ses_headers_an_app_sets_choose_within_what_is_allowed(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    fake_aws.configuration_sets.update({"marketing": "Require", "tls-required": "Require"})
    proxy = start_ses_proxy(
        {
            "policy": {
                "allowed_configuration_sets": ["marketing"],
                "allow_message_tags": True,
            },
            "ses": {
                "configuration_set": "tls-required",
                "source_arn": "arn:aws:ses:eu-west-3:210987654321:identity/example.com",
            },
        }
    )
    chosen = raw_message(
        extra_headers="X-SES-CONFIGURATION-SET: marketing\r\n"
        "X-SES-MESSAGE-TAGS: campaign=spring, team=growth\r\n"
    )
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], chosen)[0] == 250
    plain = raw_message()
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], plain)[0] == 250
    first, second = fake_aws.sent
    assert first.configuration_set == "marketing"
    assert first.tags == (("campaign", "spring"), ("team", "growth"))
    assert first.source_arn == "arn:aws:ses:eu-west-3:210987654321:identity/example.com"
    assert b"X-SES-" not in first.raw.upper()
    assert first.raw == raw_message()
    assert (second.configuration_set, second.tags) == ("tls-required", ())

    refused = raw_message(extra_headers="X-SES-CONFIGURATION-SET: someone-elses\r\n")
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], refused)
    assert (code, text[:5]) == (550, "5.7.1")
    assert proxy.metric("sesproxy_messages_rejected_total", reason="configuration_set") == 1
    bad_tags = raw_message(extra_headers="X-SES-MESSAGE-TAGS: campaign=spring sale\r\n")
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], bad_tags)
    assert (code, text[:5]) == (550, "5.6.0")
    assert len(fake_aws.sent) == 2


def test_ses_headers_are_removed_and_ignored_unless_allowed(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy()
    asking = raw_message(
        extra_headers="X-SES-CONFIGURATION-SET: marketing\r\nX-SES-MESSAGE-TAGS: a=b\r\n"
        "X-SES-SOURCE-ARN: arn:aws:ses:eu-west-3:1:identity/evil.test\r\n"
    )
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], asking)[0] == 250
    [sent] = fake_aws.sent
    assert (sent.configuration_set, sent.tags, sent.source_arn) == (None, (), None)
    assert sent.raw == raw_message()
