"""The shared budget against a real redis-server: the Lua script, replicas, failures, TLS."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from proxy.observability.metrics import Metrics
from proxy.pacing import bucket, build_budget
from proxy.pacing.redis import PROBE_INTERVAL_SECONDS, RedisBudget, make_client
from proxy.settings import RateSettings, SesSettings
from tests.conftest import StartProxy
from tests.fakes.aws import FakeAWS
from tests.pacing.e2e import send
from tests.pacing.redis_server import RedisServer
from tests.pacing.wrong_redis import ANSWERS, WrongRedis

# Redis's clock and ours tick alike; the round trip (well under a millisecond on
# loopback, more on a busy CI host) is all that separates them.
TOLERANCE = 0.02


def budget(url: str, metrics: Metrics | None = None, account: str = "123456789012") -> RedisBudget:
    return RedisBudget(
        make_client(url), account, "eu-west-3", metrics or Metrics(shared_budget=True)
    )


def up(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("sesproxy_rate_shared_budget_up")


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(record.__dict__.get("event")) for record in caplog.records]


async def test_the_lua_script_computes_what_bucket_py_computes(redis_server: RedisServer) -> None:
    shared = budget(redis_server.url)
    await shared.start()
    state: bucket.BucketState | None = None
    plan = [1] * 12 + [50, 1, 3, 1]
    for recipients in plan:
        now = time.monotonic()
        expected = bucket.reserve(state, now, 10.0, recipients, max_wait=60.0)
        got = await shared.reserve(recipients, 10.0, 60.0)
        assert got is not None
        assert got == pytest.approx(expected.wait, abs=TOLERANCE)
        state = expected.state
    # Beyond max_wait: refused, and the bucket is unchanged for the next caller.
    assert await shared.reserve(1, 10.0, 1.0) is None
    last = await shared.reserve(1, 10.0, 60.0)
    assert state is not None
    assert last == pytest.approx(
        bucket.reserve(state, time.monotonic(), 10.0, 1, 60.0).wait, abs=TOLERANCE
    )
    await shared.close()


async def test_two_replicas_draw_on_one_bucket_and_count_each_other(
    redis_server: RedisServer,
) -> None:
    first, second = budget(redis_server.url), budget(redis_server.url)
    await first.start()
    await second.start()
    waits = []
    for _ in range(5):
        waits.append(await first.reserve(1, 10.0, 10.0))
        waits.append(await second.reserve(1, 10.0, 10.0))
    # One queue: 0.1 s apart whoever asks, not two queues each at 10/s.
    expected = [0.1 * (i + 1) for i in range(10)]
    assert waits == pytest.approx(expected, abs=TOLERANCE)
    # Another account (or region) has a budget of its own.
    other = budget(redis_server.url, account="210987654321")
    assert await other.reserve(1, 10.0, 10.0) == pytest.approx(0.1, abs=TOLERANCE)
    # Both replicas were seen: on a fallback each would take half the rate.
    redis_server.kill()
    assert await first.reserve(1, 10.0, 10.0) is not None
    assert first.share() == 0.5
    for client in (first, second, other):
        await client.close()


async def test_a_restarted_redis_is_used_again_at_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(shared_budget=True)
    shared = budget(redis_server.url, metrics)
    await shared.start()
    assert await shared.reserve(1, 10.0, 10.0) is not None
    redis_server.kill()
    redis_server.start()
    # The pooled connection is dead; one reconnect (redis-py Retry) and no fallback.
    with caplog.at_level(logging.INFO, logger="proxy.pacing"):
        wait = await shared.reserve(1, 10.0, 10.0)
    assert "shared_budget_down" not in events(caplog)
    assert shared.shared
    assert up(metrics) == 1
    # Redis came back empty: the bucket starts empty, no burst on top of what SES counted.
    assert wait == pytest.approx(0.1, abs=TOLERANCE)
    await shared.close()


async def test_while_redis_is_down_a_local_share_paces_and_redis_is_probed_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(shared_budget=True)
    shared = budget(redis_server.url, metrics)
    await shared.start()
    assert await shared.reserve(1, 10.0, 10.0) is not None
    redis_server.kill()
    with caplog.at_level(logging.INFO, logger="proxy.pacing"):
        waits = [await shared.reserve(1, 10.0, 10.0) for _ in range(4)]
        assert not shared.shared
        assert up(metrics) == 0
        # One replica was seen: the fallback keeps the whole rate, starting after the
        # slot this replica had reserved in Redis.
        assert shared.share() == 1.0
        assert waits == pytest.approx([0.2, 0.3, 0.4, 0.5], abs=TOLERANCE)
        assert events(caplog).count("shared_budget_down") == 1
        redis_server.start()
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)
        assert await shared.reserve(1, 10.0, 10.0) is not None
    assert shared.shared
    assert up(metrics) == 1
    assert events(caplog)[-1] == "shared_budget_up"
    await shared.close()


async def test_a_redis_down_at_start_is_said_at_start_and_sending_goes_on(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.kill()
    metrics = Metrics(shared_budget=True)
    shared = budget(redis_server.url, metrics)
    with caplog.at_level(logging.WARNING, logger="proxy.pacing"):
        await shared.start()
    assert events(caplog) == ["shared_budget_down"]
    assert up(metrics) == 0
    # Never seen how many replicas there are: assume two, take half.
    assert shared.share() == 0.5
    assert await shared.reserve(1, 10.0, 10.0) == pytest.approx(0.2, abs=TOLERANCE)
    await shared.close()


async def test_rediss_with_a_private_ca(redis_tls_server: RedisServer) -> None:
    metrics = Metrics(shared_budget=True)
    shared = budget(redis_tls_server.url, metrics)
    await shared.start()
    assert await shared.reserve(1, 10.0, 10.0) == pytest.approx(0.1, abs=TOLERANCE)
    assert shared.shared
    assert up(metrics) == 1
    await shared.close()


async def test_rediss_refuses_a_certificate_it_cannot_verify(
    redis_tls_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(shared_budget=True)
    untrusted = redis_tls_server.url.partition("?")[0]  # the system CAs only
    shared = budget(untrusted, metrics)
    with caplog.at_level(logging.WARNING, logger="proxy.pacing"):
        await shared.start()
        assert await shared.reserve(1, 10.0, 10.0) is not None
    assert not shared.shared
    assert up(metrics) == 0
    [down] = [r for r in caplog.records if r.__dict__.get("event") == "shared_budget_down"]
    assert down.__dict__["error"] == "ConnectionError"
    await shared.close()


@pytest.mark.parametrize("answer", sorted(ANSWERS))
async def test_a_redis_that_answers_nonsense_is_a_redis_that_is_down(
    answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(shared_budget=True)
    with WrongRedis(answer) as wrong:
        shared = budget(wrong.url, metrics)
        await shared.start()
        waits = [await shared.reserve(1, 100.0, 5.0) for _ in range(3)]
        await shared.close()
        assert wrong.commands > 0  # it was asked, and its answers were not believed
    # Paced locally (the first reservation of an empty bucket waits 1/rate at most).
    assert all(wait is not None and 0 <= wait <= 5.0 for wait in waits)
    assert up(metrics) == 0
    assert shared.share() < 1
    assert events(caplog).count("shared_budget_down") == 1


def test_a_relay_whose_redis_answers_ok_to_everything_still_sends(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    with WrongRedis("ok") as wrong:
        proxy = start_ses_proxy({"rate": {"backend": "redis", "redis_url": wrong.url}})
        outcome = send(proxy.smtp_port, "nonsense")
        assert outcome.code == 250, outcome.reply
        assert proxy.metric("sesproxy_rate_shared_budget_up") == 0
        assert proxy.metric("sesproxy_messages_deferred_total", reason="internal") == 0
        assert len(proxy.events("shared_budget_down")) == 1
    assert len(fake_aws.sent) == 1


async def test_a_clients_bucket_is_shared_by_replicas_and_apart_from_the_accounts(
    redis_server: RedisServer,
) -> None:
    rate = RateSettings(backend="redis", redis_url=redis_server.url)
    ses = SesSettings(account_id="123456789012")
    metrics = Metrics(shared_budget=True)
    replica_a = build_budget(rate, ses, metrics, client="batch")
    replica_b = build_budget(rate, ses, metrics, client="batch")
    account = build_budget(rate, ses, metrics)
    for each in (replica_a, replica_b, account):
        await each.start()
    # Two replicas draw on one bucket of batch's: 2/s, so the second slot is 0.5 s later.
    first = await replica_a.reserve(1, 2.0, 10.0)
    second = await replica_b.reserve(1, 2.0, 10.0)
    assert first is not None
    assert second is not None
    assert second - first == pytest.approx(0.5, abs=TOLERANCE)
    # The account's bucket knows nothing of them: its first slot is as soon as any.
    own = await account.reserve(1, 2.0, 10.0)
    assert own == pytest.approx(first, abs=TOLERANCE)
    for each in (replica_a, replica_b, account):
        await each.close()
