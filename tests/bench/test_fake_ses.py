"""The benchmark's fake SES answers a SendRawEmail before it checks it: what it checks
afterwards must still reach its counts, or a run with bad requests would read as
"once each"."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from proxy.aws.lean import SendOptions
from proxy.aws.payload import encode_body
from proxy.aws.sendraw import CONTENT_TYPE, form_parts
from proxy.aws.sigv4 import Signer
from proxy.aws.transport import Transport
from tests.bench.floor import Keys
from tests.bench.run import Credential, FakeSesProcess, http_get

RAW = b"From: <noreply@example.com>\r\nTo: <a@example.net>\r\nSubject: t\r\n\r\nbody\r\n"


@pytest.fixture
def fake() -> Iterator[tuple[FakeSesProcess, Credential]]:
    credential = Credential.new()
    process = FakeSesProcess(credential, 0.0, None, 1000.0)
    try:
        yield process, credential
    finally:
        process.stop()


async def post(url: str, keys: Keys, body: bytes, signed_body: bytes | None = None) -> int:
    """POST `body` signed as if it were `signed_body` (itself by default)."""
    transport = Transport(url, tls=None, connect_timeout=5, read_timeout=5, pool_size=1)
    try:
        headers = Signer(url, "eu-west-3", "ses", CONTENT_TYPE).headers(
            keys,
            hashlib.sha256(body if signed_body is None else signed_body).hexdigest(),
            time.time(),
        )
        status, _, _ = await transport.post(headers, body)
        return status
    finally:
        transport.close()


def form(recipient: str) -> bytes:
    head, tail = form_parts("noreply@example.com", [recipient], SendOptions())
    return encode_body(head, RAW, tail)[0]


def test_good_bad_signature_and_malformed_are_each_counted_apart(
    fake: tuple[FakeSesProcess, Credential],
) -> None:
    process, credential = fake
    keys = Keys(credential.key_id, credential.secret, credential.token)
    good, forged = form("a@example.net"), form("b@example.net")
    malformed = b"Action=SendRawEmail&Version=2010-12-01&RawMessage.Data=%%%not-base64"

    async def run() -> list[int]:
        return [
            await post(process.url, keys, good),
            await post(process.url, keys, forged, signed_body=good),
            await post(process.url, keys, malformed),
        ]

    # All three are answered 200 first: that is what keeps the checks out of the
    # latency measured.
    assert asyncio.run(run()) == [200, 200, 200]
    stats = process.stats()
    assert stats["messages"] == 1
    assert stats["distinct"] == 1
    assert stats["bad_signatures"] == 1
    assert stats["errors"] == 1


def test_the_credential_endpoint_serves_the_checked_credential_for_hours(
    fake: tuple[FakeSesProcess, Credential],
) -> None:
    process, credential = fake
    status, body = http_get(process.url + "/__credentials")
    served = json.loads(body)
    assert status == 200
    assert (served["AccessKeyId"], served["SecretAccessKey"], served["Token"]) == (
        credential.key_id,
        credential.secret,
        credential.token,
    )
    expires = calendar.timegm(time.strptime(served["Expiration"], "%Y-%m-%dT%H:%M:%SZ"))
    assert expires - time.time() > 5 * 3600
    assert process.stats()["credential_fetches"] == 1
