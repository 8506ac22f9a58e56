"""Smoke test against moto's SES server: a real peer implementation, not our fake.

moto accepts any size and configuration set and ignores IAM conditions (DESIGN.md),
so it only proves that what we send is a SendRawEmail (or, with ses.api: v2, a SESv2
SendEmail) another implementation takes.
"""

from __future__ import annotations

import smtplib
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import StartProxy

REGION = "eu-west-3"


@pytest.fixture
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto keeps its state in this process: start every test from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))  # noqa: S310
    yield url
    server.stop()


def moto_client(url: str) -> Any:
    return boto3.client(
        "ses",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_moto_accepts_what_the_relay_sends(start_ses_proxy: StartProxy, moto_url: str) -> None:
    ses = moto_client(moto_url)
    ses.verify_domain_identity(Domain="example.com")
    proxy = start_ses_proxy({"ses": {"endpoint_url": moto_url, "region": REGION}})
    message = (
        b"From: noreply@example.com\r\nTo: friend@example.net\r\nBcc: hidden@example.net\r\n"
        b"Subject: smoke\r\n\r\nhello moto\r\n"
    )
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("noreply@example.com")
        client.rcpt("friend@example.net")
        code, text = client.data(message)
    assert code == 250
    message_id = text.decode().removeprefix("2.0.0 Ok ")
    assert message_id
    quota = ses.get_send_quota()
    assert quota["SentLast24Hours"] >= 1


def test_moto_refuses_an_unverified_sender(start_ses_proxy: StartProxy, moto_url: str) -> None:
    proxy = start_ses_proxy({"ses": {"endpoint_url": moto_url, "region": REGION}})
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("noreply@example.com")
        client.rcpt("friend@example.net")
        code, text = client.data(b"From: noreply@example.com\r\n\r\nhi\r\n")
    assert (code, text[:5]) == (554, b"5.7.1")


def test_moto_accepts_what_the_relay_sends_with_v2(
    start_ses_proxy: StartProxy, moto_url: str
) -> None:
    # moto's SESv2 SendEmail takes raw content; it has no GetAccount (the relay logs that
    # its quota is unknown and sends all the same).
    ses = moto_client(moto_url)
    ses.verify_domain_identity(Domain="example.com")
    proxy = start_ses_proxy({"ses": {"endpoint_url": moto_url, "region": REGION, "api": "v2"}})
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("noreply@example.com")
        client.rcpt("friend@example.net")
        code, text = client.data(
            b"From: noreply@example.com\r\nTo: friend@example.net\r\n"
            b"Subject: smoke v2\r\n\r\nhello moto\r\n"
        )
    assert code == 250, text
    assert text.decode().removeprefix("2.0.0 Ok ")
    # moto's v2 sends through its v1 backend: v1's counter saw the message.
    assert ses.get_send_quota()["SentLast24Hours"] >= 1
