"""The lean SESv2 SendEmail against the fake SES, beside stock aiobotocore's `sesv2`.

Both paths send to the fake, which verifies each signature independently and records
what it received; every answer is classified alike on both, into the table of
delivery/ses_errors.py. The quota comes from GetAccount.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.aws import payload
from proxy.aws.quota import QuotaWatcher
from proxy.aws.sendemail import SendEmail
from proxy.aws.ses_client import SesClient
from proxy.observability.metrics import Metrics
from proxy.settings import SesSettings
from tests.aws.paths import Paths
from tests.aws.test_sendraw_equivalence import addresses, config_sets
from tests.fakes.aws import FAULTS, FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.properties import examples

SOURCE = "noreply@example.com"
RAW = b"From: noreply@example.com\r\nTo: a@example.net\r\n\r\nhello\r\n"

# What each fault of the fake (in v2's shapes) becomes: (reason, reply's first 5 chars).
EXPECTED = {
    "throttle_rate": ("throttled", "451 4"),
    "throttle_daily": ("quota", "451 4"),
    "message_rejected": ("rejected", "554 5"),
    "access_denied": ("denied", "451 4"),
    "config_set_missing": ("config", "451 4"),
    "mail_from_not_verified": ("config", "451 4"),
    "account_paused": ("paused", "451 4"),
    "account_suspended": ("paused", "451 4"),
    "invalid_parameter": ("invalid", "554 5"),
    "http_500": ("unavailable", "451 4"),
    "http_503": ("unavailable", "451 4"),
    "drop": ("unavailable", "451 4"),
}
_NO_MESSAGE_ID = {"empty_message_id", "no_message_id"}


def test_every_fault_has_its_expected_class() -> None:
    assert set(EXPECTED) == FAULTS - {"slow"} - _NO_MESSAGE_ID


def test_the_client_is_sesv2_and_the_lean_path_sendemail(paths_v2: Paths) -> None:
    assert paths_v2.client.api.meta.service_model.service_name == "sesv2"
    assert isinstance(paths_v2.client.sender, SendEmail)


def test_a_send_is_recorded_as_sent(paths_v2: Paths, fake_aws: FakeAWS) -> None:
    fake_aws.configuration_sets["tls-required"] = "Require"
    outcome = paths_v2.lean(SOURCE, ["a@example.net", "b@example.org"], RAW, "tls-required")
    assert outcome[0] == "ok"
    [sent] = fake_aws.sent
    assert (sent.message_id, sent.source, sent.destinations) == (
        outcome[1],
        SOURCE,
        ["a@example.net", "b@example.org"],
    )
    assert (sent.configuration_set, sent.raw) == ("tls-required", RAW)
    assert fake_aws.requests[-1].action == "SendEmail"


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_each_fault_is_classified_alike_and_as_the_table_says(
    paths_v2: Paths, fake_aws: FakeAWS, fault: str
) -> None:
    fake_aws.inject(fault)
    stock = paths_v2.stock(SOURCE, ["a@example.net"], RAW, None)
    fake_aws.inject(fault)
    lean = paths_v2.lean(SOURCE, ["a@example.net"], RAW, None)
    assert stock == lean
    reason, reply = EXPECTED[fault]
    assert lean[:2] == ("error", reason)
    assert lean[2].startswith(reply)
    assert fake_aws.sent == []


@pytest.mark.parametrize("fault", sorted(_NO_MESSAGE_ID))
def test_a_success_without_a_message_id_is_unavailable(
    paths_v2: Paths, fake_aws: FakeAWS, fault: str
) -> None:
    fake_aws.inject(fault)
    outcome = paths_v2.lean(SOURCE, ["a@example.net"], RAW, None)
    assert outcome[:2] == ("error", "unavailable")
    assert outcome[2].startswith("451 ")


def test_refusals_without_injection_are_classified_alike(
    paths_v2: Paths, fake_aws: FakeAWS
) -> None:
    cases = [
        ("someone@unverified.test", None, "rejected"),  # MessageRejected
        (SOURCE, "no-such-set", "config"),  # NotFoundException
    ]
    for source, config_set, reason in cases:
        stock = paths_v2.stock(source, ["a@example.net"], RAW, config_set)
        lean = paths_v2.lean(source, ["a@example.net"], RAW, config_set)
        assert stock == lean
        assert lean[:2] == ("error", reason)
    fake_aws.clock_offset = 400.0  # past SES's 5-minute window, before the credential expires
    assert paths_v2.lean(SOURCE, ["a@example.net"], RAW, None)[:2] == ("error", "credentials")
    assert fake_aws.requests[-1].error_code == "InvalidSignatureException"


@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    source=addresses,
    destinations=st.lists(addresses, min_size=1, max_size=4),
    raw=st.binary(max_size=2000),
    config_set=config_sets,
)
def test_the_fake_ses_receives_the_same_from_both(
    paths_v2: Paths,
    fake_aws: FakeAWS,
    source: str,
    destinations: list[str],
    raw: bytes,
    config_set: str | None,
) -> None:
    fake_aws.configuration_sets["tls-required"] = "Require"
    stock = paths_v2.stock(source, destinations, raw, config_set)
    lean = paths_v2.lean(source, destinations, raw, config_set)
    first, second = fake_aws.requests[-2:]
    assert [first.action, second.action] == ["SendEmail", "SendEmail"]
    assert first.error_code == second.error_code
    assert "InvalidSignatureException" not in (first.error_code, second.error_code)
    assert first.params == second.params
    assert stock[0] == lean[0]
    if stock[0] == "ok":
        one, two = fake_aws.sent[-2:]
        assert (one.source, one.destinations, one.configuration_set, one.raw) == (
            two.source,
            two.destinations,
            two.configuration_set,
            two.raw,
        )
        assert one.raw == raw
    else:
        assert stock == lean


def test_a_message_over_the_thread_threshold_reaches_the_fake_whole(
    paths_v2: Paths, fake_aws: FakeAWS
) -> None:
    raw = b"From: noreply@example.com\r\n\r\n" + b"x" * 76 + b"\r\n"
    raw *= 3 * payload.THREAD_THRESHOLD // len(raw)
    assert paths_v2.lean(SOURCE, ["a@example.net"], raw, None)[0] == "ok"
    assert fake_aws.sent[-1].raw == raw


async def _watch_once(fake_aws: FakeAWS, metrics: Metrics) -> QuotaWatcher:
    client = SesClient(
        SesSettings(
            region=fake_aws.region,
            endpoint_url=fake_aws.url,
            allow_insecure_endpoint=True,
            api="v2",
        ),
        session_policy=None,
    )
    await client.start()
    try:
        watcher = QuotaWatcher(client, metrics)
        await watcher.refresh()
        watcher._last_call -= 1.0  # a second later: asked again, denied again, said once
        await watcher.refresh()
        return watcher
    finally:
        await client.close()


async def test_the_quota_comes_from_get_account(
    fake_aws: FakeAWS,
    container_credentials: FakeContainerCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container_credentials.apply_env(monkeypatch)
    fake_aws.max_send_rate = 33.0
    fake_aws.max_24h_send = 1000.0
    fake_aws.sent_last_24h = 7.0
    metrics = Metrics()
    watcher = await _watch_once(fake_aws, metrics)
    assert watcher.latest is not None
    assert (watcher.latest.max_send_rate, watcher.latest.max_24h_send) == (33.0, 1000.0)
    assert watcher.latest.sent_last_24h == 7.0
    assert metrics.registry.get_sample_value("sesproxy_ses_quota_max_send_rate") == 33.0
    assert {r.action for r in fake_aws.requests} == {"GetAccount"}


async def test_a_denied_get_account_is_said_once_naming_the_action(
    fake_aws: FakeAWS,
    container_credentials: FakeContainerCredentials,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    container_credentials.apply_env(monkeypatch)
    fake_aws.denied_actions = {"GetAccount"}
    metrics = Metrics()
    with caplog.at_level(logging.WARNING, logger="proxy.aws.quota"):
        watcher = await _watch_once(fake_aws, metrics)
    assert watcher.latest is None
    assert [r.error_code for r in fake_aws.requests] == ["AccessDeniedException"] * 2
    [record] = [r for r in caplog.records if r.__dict__.get("event") == "quota_denied"]
    assert "ses:GetAccount" in record.getMessage()
    assert metrics.registry.get_sample_value("sesproxy_ses_quota_max_send_rate") == 0.0
