"""The quota watcher against the fake SES: an answer it cannot read never stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from proxy.aws.quota import QuotaWatcher
from proxy.aws.ses_client import SesClient
from proxy.observability.metrics import Metrics
from proxy.settings import SesSettings
from tests.fakes.aws import FakeAWS


async def test_an_unreadable_quota_answer_is_logged_and_watching_goes_on(
    fake_aws: FakeAWS, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    credential = fake_aws.issue_credentials()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credential.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credential.secret_access_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", credential.session_token or "")
    fake_aws.quota_result_override = "<MaxSendRate>lots</MaxSendRate>"
    fake_aws.max_send_rate = 33.0
    client = SesClient(
        SesSettings(
            region=fake_aws.region,
            endpoint_url=fake_aws.url,
            allow_insecure_endpoint=True,
            allow_static_credentials=True,
        ),
        session_policy=None,
    )
    await client.start()
    metrics = Metrics()
    watcher = QuotaWatcher(client, metrics, interval=1.0)
    with caplog.at_level(logging.WARNING):
        watcher.start()
        for _ in range(50):
            await asyncio.sleep(0.05)
            if any(r.__dict__.get("event") == "quota_error" for r in caplog.records):
                break
        assert watcher.latest is None
        fake_aws.quota_result_override = None
        for _ in range(60):
            await asyncio.sleep(0.05)
            if watcher.latest is not None:
                break
        await watcher.close()
    await client.close()
    assert watcher.latest is not None
    assert watcher.latest.max_send_rate == 33.0
    assert metrics.registry.get_sample_value("sesproxy_ses_quota_max_send_rate") == 33.0
    assert watcher.failures == 0  # the bad answer was a logged quota_error, not a crash
