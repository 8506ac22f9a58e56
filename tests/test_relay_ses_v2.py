"""End to end with `ses.api: v2`: SMTP client → real proxy process → SESv2 SendEmail →
fake SES over HTTP, which verifies every SigV4 signature against the credential it
issued. And `ses.api: v1` (the default) as it was, where the two differ.
"""

from __future__ import annotations

import smtplib
import time
from typing import Any

import pytest

from tests.conftest import StartProxy
from tests.fakes.aws import SES_V2_MAX_MESSAGE_BYTES, FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.test_relay_ses import raw_message, send

V2: dict[str, Any] = {"ses": {"api": "v2"}}


def _ehlo_size(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        return client.esmtp_features["size"]


def _actions(fake_aws: FakeAWS) -> set[str]:
    return {r.action for r in fake_aws.requests}


def test_a_message_reaches_ses_v2_exactly_as_the_contract_says(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS, container_credentials: FakeContainerCredentials
) -> None:
    fake_aws.configuration_sets["tls-required"] = "Require"
    proxy = start_ses_proxy({"ses": {"api": "v2", "configuration_set": "tls-required"}})
    raw = raw_message(
        extra_headers=(
            "Bcc: hidden@example.net\r\nX-SES-CONFIGURATION-SET: attacker-set\r\n"
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
    assert sent.raw == raw_message(extra_headers="X-Mailer: app 1.0\r\n")
    assert sent.access_key_id == container_credentials.current.access_key_id
    [request] = [r for r in fake_aws.requests if r.action == "SendEmail"]
    assert request.params == {
        "FromEmailAddress": "noreply@example.com",
        "Destination.ToAddresses.1": "friend@example.net",
        "Destination.ToAddresses.2": "someone@example.org",
        "ConfigurationSetName": "tls-required",
    }
    assert "SendRawEmail" not in _actions(fake_aws)
    assert proxy.metric("sesproxy_messages_sent_total") == 1
    [entry] = proxy.events("sent")
    assert entry["ses_message_id"] == sent.message_id


def test_ehlo_advertises_the_apis_limit(start_ses_proxy: StartProxy) -> None:
    assert _ehlo_size(start_ses_proxy(V2).smtp_port) == str(SES_V2_MAX_MESSAGE_BYTES)
    assert _ehlo_size(start_ses_proxy().smtp_port) == "10485760"
    chosen = start_ses_proxy({"ses": {"api": "v2"}, "policy": {"max_message_bytes": 20000000}})
    assert _ehlo_size(chosen.smtp_port) == "20000000"


def test_the_outbox_takes_v1s_limit_unless_told(start_outbox_proxy: StartProxy) -> None:
    assert _ehlo_size(start_outbox_proxy().smtp_port) == "10485760"
    assert _ehlo_size(start_outbox_proxy(V2).smtp_port) == str(SES_V2_MAX_MESSAGE_BYTES)


@pytest.mark.parametrize(
    ("fault", "reply", "counter", "reason"),
    [
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
def test_each_ses_v2_error_gets_its_reply_and_nothing_is_sent(
    start_ses_proxy: StartProxy,
    fake_aws: FakeAWS,
    fault: str,
    reply: str,
    counter: str,
    reason: str,
) -> None:
    proxy = start_ses_proxy(V2)
    fake_aws.inject(fault)
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert f"{code} {text}".startswith(reply)
    assert fake_aws.sent == []
    assert proxy.metric(f"sesproxy_messages_{counter}_total", reason=reason) == 1
    for leak in ("Exception", "Error", "arn:", "Traceback", "MessageRejected"):
        assert leak not in text
    code, _ = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert code == 250
    assert "SendRawEmail" not in _actions(fake_aws)


@pytest.mark.parametrize("fault", ["empty_message_id", "no_message_id"])
def test_a_v2_success_without_a_message_id_is_a_451_never_a_250(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS, fault: str
) -> None:
    proxy = start_ses_proxy(V2)
    fake_aws.inject(fault)
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert (code, text[:5]) == (451, "4.4.1")
    assert proxy.metric("sesproxy_messages_sent_total") == 0
    [malformed] = proxy.events("ses_answer_malformed")
    assert "MessageId" in malformed["detail"]


def test_v2_throttling_is_retried_by_pacing(start_ses_proxy: StartProxy, fake_aws: FakeAWS) -> None:
    proxy = start_ses_proxy(V2)
    fake_aws.inject("throttle_rate")
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert code == 250
    assert text.endswith(fake_aws.sent[0].message_id)
    codes = [r.error_code for r in fake_aws.requests if r.action == "SendEmail"]
    assert codes == ["TooManyRequestsException", None]
    assert len(proxy.events("ses_throttled")) == 1


def test_v2_daily_quota_is_a_451_told_from_the_rate(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy(V2)
    fake_aws.inject("throttle_daily")
    fake_aws.sent_last_24h = fake_aws.max_24h_send  # what GetAccount will show
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert (code, text[:5]) == (451, "4.4.5")
    assert proxy.metric("sesproxy_messages_deferred_total", reason="quota") == 1
    assert fake_aws.sent == []


def test_v2_quota_and_rate_come_from_get_account(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    fake_aws.max_send_rate = 10.0
    fake_aws.max_24h_send = 2000.0
    fake_aws.sent_last_24h = 123.0
    proxy = start_ses_proxy(V2)
    deadline = time.monotonic() + 10
    while proxy.metric("sesproxy_ses_quota_max_send_rate") != 10.0:
        assert time.monotonic() < deadline, "the quota gauges were never set"
        time.sleep(0.05)
    assert proxy.metric("sesproxy_ses_quota_max_24h_send") == 2000.0
    assert proxy.metric("sesproxy_ses_quota_sent_last_24h") == 123.0
    # rate.max_send_rate: auto takes SES's MaxSendRate.
    assert proxy.metric("sesproxy_rate_limit_recipients_per_second") == 10.0
    assert _actions(fake_aws) == {"GetAccount"}


def _message_of(size: int) -> bytes:
    """A well-formed message of exactly `size` octets: short lines, as a MIME part is."""
    head = b"From: noreply@example.com\r\nTo: a@example.net\r\nSubject: big\r\n\r\n"
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
    body = line * ((size - len(head)) // len(line))
    rest = size - len(head) - len(body)
    tail = b"x" * (rest - 2) + b"\r\n" if rest >= 2 else b""
    message = head + body + tail
    return message if len(message) == size else head + body[: size - len(head)]


def test_a_40_mb_message_goes_out_through_v2(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    # SES v2's limit is on the raw MIME message as sent: exactly the limit passes, end to
    # end, and the fake checked the signature over the whole 53 MiB JSON body.
    raw = _message_of(SES_V2_MAX_MESSAGE_BYTES)
    assert len(raw) == SES_V2_MAX_MESSAGE_BYTES
    proxy = start_ses_proxy(V2)
    started = time.monotonic()
    code, text = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw)
    elapsed = time.monotonic() - started
    assert code == 250, text
    [sent] = fake_aws.sent
    assert text.endswith(sent.message_id)
    assert len(sent.raw) == SES_V2_MAX_MESSAGE_BYTES
    assert sent.raw == raw
    [request] = [r for r in fake_aws.requests if r.action == "SendEmail"]
    assert (request.status, request.error_code) == (200, None)
    assert elapsed < 20, f"{elapsed:.1f} s"


def test_over_the_v2_limit_is_refused_at_mail(start_ses_proxy: StartProxy) -> None:
    proxy = start_ses_proxy(V2)
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        code, _ = client.mail("noreply@example.com", [f"SIZE={SES_V2_MAX_MESSAGE_BYTES + 1}"])
        assert code == 552
        client.rset()
        assert client.mail("noreply@example.com", [f"SIZE={SES_V2_MAX_MESSAGE_BYTES}"])[0] == 250


def test_v2_sends_the_chosen_configuration_set_tags_and_identity_arn(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    fake_aws.configuration_sets["marketing"] = "Require"
    partner = "arn:aws:ses:eu-west-3:210987654321:identity/example.com"
    proxy = start_ses_proxy(
        {
            "ses": {"api": "v2", "from_arn": partner},
            "policy": {"allowed_configuration_sets": ["marketing"], "allow_message_tags": True},
        }
    )
    asking = raw_message(
        extra_headers="X-SES-CONFIGURATION-SET: marketing\r\nX-SES-MESSAGE-TAGS: run=7\r\n"
    )
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], asking)[0] == 250
    [sent] = fake_aws.sent
    assert (sent.configuration_set, sent.tags, sent.from_arn) == (
        "marketing",
        (("run", "7"),),
        partner,
    )
    assert sent.raw == raw_message()
