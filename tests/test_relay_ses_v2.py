"""End to end with `ses.api: v2`: SMTP client → real proxy process → SESv2 SendEmail →
fake SES over HTTP, which verifies every SigV4 signature against the credential it
issued. And `ses.api: v1` (the default) as it was, where the two differ; what both
do alike is tested on both in tests/test_relay_ses.py.
"""

from __future__ import annotations

import smtplib
import time
from typing import Any

from tests.conftest import StartProxy
from tests.fakes.aws import SES_V2_MAX_MESSAGE_BYTES, FakeAWS
from tests.test_relay_ses import actions, raw_message, send

V2: dict[str, Any] = {"ses": {"api": "v2"}}


def _ehlo_size(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        return client.esmtp_features["size"]


def test_ehlo_advertises_the_apis_limit(start_ses_proxy: StartProxy) -> None:
    assert _ehlo_size(start_ses_proxy(V2).smtp_port) == str(SES_V2_MAX_MESSAGE_BYTES)
    assert _ehlo_size(start_ses_proxy().smtp_port) == "10485760"
    chosen = start_ses_proxy({"ses": {"api": "v2"}, "policy": {"max_message_bytes": 20000000}})
    assert _ehlo_size(chosen.smtp_port) == "20000000"


def test_the_outbox_takes_v1s_limit_unless_told(start_outbox_proxy: StartProxy) -> None:
    assert _ehlo_size(start_outbox_proxy().smtp_port) == "10485760"
    assert _ehlo_size(start_outbox_proxy(V2).smtp_port) == str(SES_V2_MAX_MESSAGE_BYTES)


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
    assert actions(fake_aws) == {"GetAccount"}


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
