"""End to end, one proxy process: SMTP bursts against a fake SES that enforces MaxSendRate.

The fake throttles like SES (a bucket of one second with debt); a correct pacer never
meets it. Each message carries a unique tag, so "sent once" is checked per message.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.conftest import StartProxy
from tests.fakes.aws import FakeAWS
from tests.pacing.e2e import burst, send, send_calls, subjects_sent, throttles, wait_for

RATE = 10.0


@pytest.fixture
def enforcing(fake_aws: FakeAWS) -> FakeAWS:
    fake_aws.enforce_rate = True
    fake_aws.max_send_rate = RATE
    return fake_aws


def test_a_burst_is_paced_to_max_send_rate_and_never_throttled(
    start_ses_proxy: StartProxy, enforcing: FakeAWS
) -> None:
    proxy = start_ses_proxy()
    # `auto`: MaxSendRate was read before the listener opened.
    assert proxy.metric("sesproxy_rate_limit_recipients_per_second") == RATE
    outcomes = burst([proxy.smtp_port], count=60, clients=10, prefix="burst")
    assert [o.code for o in outcomes] == [250] * 60
    assert throttles(enforcing) == 0
    assert sorted(subjects_sent(enforcing)) == sorted(o.tag for o in outcomes)
    # 60 recipients at 10/s, the first second's worth at once: five to six seconds.
    finished = sorted(o.finished for o in outcomes)
    assert 4.5 <= finished[-1] - finished[0] <= 7.5
    assert proxy.metric("sesproxy_rate_wait_seconds_count") == 60
    # Ten clients keep about ten messages queued, a second's worth: the waiting
    # happened in the pacer, each message's once.
    assert proxy.metric("sesproxy_rate_wait_seconds_sum") > 20
    assert proxy.metric("sesproxy_rate_wait_seconds_bucket", le="2.0") == 60


def test_beyond_max_wait_the_rest_hear_451_at_once_and_nothing_is_sent_twice(
    start_ses_proxy: StartProxy, enforcing: FakeAWS
) -> None:
    proxy = start_ses_proxy({"rate": {"max_wait_seconds": 2}})
    # Sixty clients at once: a queue of six seconds, three times the budget.
    outcomes = burst([proxy.smtp_port], count=60, clients=60, prefix="wait")
    accepted = [o for o in outcomes if o.code == 250]
    deferred = [o for o in outcomes if o.code != 250]
    # About 2 s of budget at 10/s, plus the first second's burst.
    assert 20 <= len(accepted) <= 40
    assert {o.reply[:9] for o in deferred} == {"451 4.4.5"}
    # Refused without waiting for a slot it could not have.
    assert max(o.finished - o.started for o in deferred) < 1.0
    assert max(o.finished - o.started for o in accepted) < 2.5
    tags = subjects_sent(enforcing)
    assert sorted(tags) == sorted(o.tag for o in accepted)
    assert max(Counter(tags).values()) == 1
    assert throttles(enforcing) == 0
    assert proxy.metric("sesproxy_messages_deferred_total", reason="rate") == len(deferred)
    assert proxy.metric("sesproxy_messages_sent_total") == len(accepted)
    logged = proxy.events("deferred")
    assert len(logged) == len(deferred)
    assert {entry["reason"] for entry in logged} == {"rate"}
    assert "max_wait_seconds" in logged[0]["detail"]


def test_a_spent_daily_quota_defers_at_once_without_calling_ses(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    fake_aws.max_24h_send = 200.0
    fake_aws.sent_last_24h = 200.0
    proxy = start_ses_proxy()
    outcomes = [send(proxy.smtp_port, f"quota-{i}") for i in range(3)]
    assert [o.reply[:9] for o in outcomes] == ["451 4.4.5"] * 3
    assert max(o.finished - o.started for o in outcomes) < 1.0
    assert send_calls(fake_aws) == 0
    assert proxy.metric("sesproxy_messages_deferred_total", reason="quota") == 3
    assert [e["reason"] for e in proxy.events("deferred")] == ["quota"] * 3
    # A new day: GetSendQuota (asked at most once a second) shows room, sending resumes.
    fake_aws.sent_last_24h = 0.0
    time.sleep(1.1)
    assert send(proxy.smtp_port, "quota-after").code == 250
    assert subjects_sent(fake_aws) == ["quota-after"]
    assert len(proxy.events("quota_room")) == 1


def test_when_ses_says_the_daily_quota_is_spent_it_is_not_asked_again(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy()
    fake_aws.inject("throttle_daily")
    fake_aws.sent_last_24h = fake_aws.max_24h_send  # what GetSendQuota will show
    outcomes = [send(proxy.smtp_port, f"daily-{i}") for i in range(4)]
    assert [o.reply[:9] for o in outcomes] == ["451 4.4.5"] * 4
    assert send_calls(fake_aws) == 1
    assert fake_aws.sent == []
    assert proxy.metric("sesproxy_messages_deferred_total", reason="quota") == 4


def test_fifty_recipients_at_ten_per_second_are_sent_once_then_waited_out(
    start_ses_proxy: StartProxy, enforcing: FakeAWS
) -> None:
    proxy = start_ses_proxy()
    time.sleep(1.0)  # a full bucket, as after any quiet second
    big = send(proxy.smtp_port, "fifty", [f"user{i}@example.net" for i in range(50)])
    after = send(proxy.smtp_port, "after-fifty")
    assert (big.code, after.code) == (250, 250)
    assert big.finished - big.started < 1.0
    # The 40 recipients beyond the burst are debt: the next message waits it out.
    assert 3.6 <= after.finished - after.started <= 5.5
    [fifty, one] = enforcing.sent
    assert len(fifty.destinations) == 50
    assert len(one.destinations) == 1
    assert throttles(enforcing) == 0


def test_ses_throttling_is_retried_and_the_rate_drops_then_recovers(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    fake_aws.max_send_rate = RATE
    proxy = start_ses_proxy()
    fake_aws.inject("throttle_rate")
    outcome = send(proxy.smtp_port, "throttled-once")
    assert outcome.code == 250
    assert throttles(fake_aws) == 1
    assert send_calls(fake_aws) == 2
    assert subjects_sent(fake_aws) == ["throttled-once"]
    assert outcome.text.endswith(fake_aws.sent[0].message_id)
    lowered = proxy.metric("sesproxy_rate_limit_recipients_per_second")
    assert lowered < RATE
    [event] = proxy.events("ses_throttled")
    assert event["rate_before"] == RATE
    assert event["rate_now"] == RATE / 2
    wait_for(
        lambda: proxy.metric("sesproxy_rate_limit_recipients_per_second") == RATE,
        10,
        "the rate recovers",
    )
    assert proxy.metric("sesproxy_messages_deferred_total", reason="throttled") == 0


def test_throttling_beyond_the_wait_budget_is_a_451_and_nothing_is_sent(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    proxy = start_ses_proxy({"rate": {"max_wait_seconds": 1}})
    fake_aws.inject("throttle_rate", count=20)
    outcome = send(proxy.smtp_port, "always-throttled")
    assert outcome.reply.startswith("451 4.4.5")
    # The client hears the class of the failure, never SES's words.
    assert "Throttling" not in outcome.text
    assert 1 < send_calls(fake_aws) < 20
    assert fake_aws.sent == []
    assert proxy.metric("sesproxy_messages_deferred_total", reason="throttled") == 1
    [entry] = proxy.events("deferred")
    assert entry["reason"] == "throttled"
    fake_aws.clear_faults()
    assert send(proxy.smtp_port, "after-throttling").code == 250
