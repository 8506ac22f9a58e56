"""PacedDelivery in process: a scripted inner delivery, a stub quota and an injected clock."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.aws.quota import SendQuota
from proxy.delivery import DeliveryError, Envelope, TransientDeliveryError
from proxy.delivery.ses_errors import classify
from proxy.message import Octets
from proxy.observability.metrics import Metrics
from proxy.pacing import QUOTA_PROBE_AFTER_SECONDS, WAKE_STEP_SECONDS, PacedDelivery, wake_after
from proxy.pacing.local import LocalBudget
from proxy.settings import RateSettings
from tests.properties import examples

THROTTLED = classify("Throttling", "Maximum sending rate exceeded.", 400)
DAILY = classify("Throttling", "Daily message quota exceeded.", 400)


class Clock:
    """A clock that moves only when a sleeper asks it to (if `moving`)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.moving = True
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.moving:
            self.now += seconds
        await asyncio.sleep(0)


class Inner:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.errors: deque[DeliveryError] = deque()
        self.calls: list[tuple[float, int]] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    async def send(self, envelope: Envelope, raw: Octets) -> str:
        self.calls.append((self.clock(), len(envelope.recipients)))
        if self.errors:
            raise self.errors.popleft()
        return f"id-{len(self.calls)}"


class Quota:
    def __init__(self, quota: SendQuota | None) -> None:
        self.latest = quota
        self.next: SendQuota | None = None
        self.refreshes = 0

    async def refresh(self) -> SendQuota | None:
        self.refreshes += 1
        if self.next is not None:
            self.latest, self.next = self.next, None
        return self.latest


def envelope(recipients: int = 1) -> Envelope:
    return Envelope("noreply@example.com", tuple(f"r{i}@example.net" for i in range(recipients)))


async def paced(
    clock: Clock,
    quota: Quota | None = None,
    max_send_rate: float | str = 10.0,
    max_wait: float = 30.0,
    client_rates: dict[str, float] | None = None,
) -> tuple[PacedDelivery, Inner, Metrics]:
    inner = Inner(clock)
    metrics = Metrics()
    settings = RateSettings(max_send_rate=max_send_rate, max_wait_seconds=max_wait)  # type: ignore[arg-type]
    delivery = PacedDelivery(
        inner,
        settings,
        LocalBudget(clock),
        metrics,
        quota,
        clock=clock,
        sleep=clock.sleep,
        client_rates=client_rates,
    )
    await delivery.start()
    return delivery, inner, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_messages_go_one_interval_apart_and_each_wait_is_observed() -> None:
    clock = Clock()
    delivery, inner, metrics = await paced(clock)
    for _ in range(3):
        await delivery.send(envelope(), b"x")
    starts = [at - inner.calls[0][0] for at, _ in inner.calls]
    assert starts == pytest.approx([0.0, 0.1, 0.2])
    assert sample(metrics, "sesproxy_rate_wait_seconds_count") == 3
    assert sample(metrics, "sesproxy_rate_limit_recipients_per_second") == 10.0


@settings(max_examples=examples(300))
@given(
    now=st.floats(min_value=0.0, max_value=1e7, allow_subnormal=False),
    wait=st.floats(min_value=1e-9, max_value=60.0, allow_subnormal=False),
)
def test_a_wake_is_never_before_its_slot_and_at_most_one_step_after(
    now: float, wait: float
) -> None:
    sleep = wake_after(now, wait)
    assert sleep >= wait
    assert sleep - wait <= WAKE_STEP_SECONDS * (1 + 1e-6)
    steps = (now + sleep) / WAKE_STEP_SECONDS
    assert abs(steps - round(steps)) < 1e-3 or sleep == wait


async def test_messages_whose_slots_fall_in_one_step_wake_together() -> None:
    # Twenty sessions at once, at 1000 recipients/s: slots a millisecond apart. Each
    # waking on its own would be twenty loop turns; the first alone at its slot, the
    # others on the grid: five steps' worth.
    clock = Clock()
    clock.moving = False
    delivery, inner, _ = await paced(clock, max_send_rate=1000.0)
    await asyncio.gather(*(delivery.send(envelope(), b"x") for _ in range(20)))
    assert len(inner.calls) == 20
    slots = [clock.now + (n + 1) / 1000.0 for n in range(20)]
    wakes = [clock.now + sleep for sleep in clock.sleeps]
    assert all(wake >= slot - 1e-9 for wake, slot in zip(wakes, slots, strict=True))
    assert all(
        wake - slot <= WAKE_STEP_SECONDS + 1e-9 for wake, slot in zip(wakes, slots, strict=True)
    )
    assert len({round(wake, 6) for wake in wakes}) <= 6


async def test_a_message_waiting_alone_wakes_at_its_slot() -> None:
    # One client sending one message at a time, faster than the rate: each waits for
    # its slot, a millisecond after the last, never for a step of the grid.
    clock = Clock()
    delivery, inner, _ = await paced(clock, max_send_rate=1000.0)
    for _ in range(12):
        await delivery.send(envelope(), b"x")
    starts = [at - inner.calls[0][0] for at, _ in inner.calls]
    assert starts == pytest.approx([n / 1000.0 for n in range(12)], abs=1e-9)


async def test_beyond_max_wait_is_a_rate_deferral_and_nothing_is_sent() -> None:
    clock = Clock()
    clock.moving = False  # every caller arrives at the same instant
    delivery, inner, _ = await paced(clock, max_wait=1.0)
    results = await asyncio.gather(
        *(delivery.send(envelope(), b"x") for _ in range(15)), return_exceptions=True
    )
    sent = [r for r in results if isinstance(r, str)]
    deferred = [r for r in results if isinstance(r, TransientDeliveryError)]
    # An empty bucket at 10/s: slots at 0.1 … 1.0 s fit within one second.
    assert len(sent) == 10
    assert len(deferred) == 5
    assert {(e.reason, e.reply[:9]) for e in deferred} == {("rate", "451 4.4.5")}
    assert len(inner.calls) == 10
    # Served in arrival order: the first ten callers got the slots.
    assert results[:10] == sent


async def test_a_clients_own_rate_holds_it_back_without_holding_back_the_others() -> None:
    clock = Clock()
    clock.moving = False
    delivery, inner, _ = await paced(clock, max_wait=1.0, client_rates={"batch": 2.0})

    def of(client: str) -> Envelope:
        return Envelope("noreply@example.com", ("r@example.net",), client=client)

    batch = [delivery.send(of("batch"), b"x") for _ in range(5)]
    web = [delivery.send(of("web"), b"x") for _ in range(5)]
    results = await asyncio.gather(*batch, *web, return_exceptions=True)
    batch_results, web_results = results[:5], results[5:]
    # batch: its own bucket at 2/s holds two slots within the second (0.5 s, 1.0 s).
    assert sum(isinstance(r, str) for r in batch_results) == 2
    refused = [r for r in batch_results if isinstance(r, TransientDeliveryError)]
    assert len(refused) == 3
    assert all(r.reason == "rate" and "client batch" in r.detail for r in refused)
    # web has no bucket of its own: the account's 10/s serves all five.
    assert all(isinstance(r, str) for r in web_results)
    assert len(inner.calls) == 7


async def test_a_throttled_message_is_retried_and_the_rate_drops_then_recovers() -> None:
    clock = Clock()
    delivery, inner, _ = await paced(clock)
    inner.errors.append(THROTTLED)
    assert await delivery.send(envelope(), b"x") == "id-2"
    assert len(inner.calls) == 2
    assert delivery.rate_in_force() < 10.0
    clock.now += 10
    assert delivery.rate_in_force() == 10.0


async def test_throttled_beyond_the_wait_budget_gives_up_with_ses_answer() -> None:
    clock = Clock()
    delivery, inner, metrics = await paced(clock, max_wait=0.5)
    inner.errors.extend([THROTTLED] * 10)
    with pytest.raises(TransientDeliveryError) as raised:
        await delivery.send(envelope(), b"x")
    assert raised.value.reason == "throttled"
    assert raised.value.reply.startswith("451 4.4.5")
    assert 1 < len(inner.calls) < 10
    assert sample(metrics, "sesproxy_rate_wait_seconds_count") == 1


async def test_other_ses_errors_are_not_retried() -> None:
    clock = Clock()
    delivery, inner, _ = await paced(clock)
    inner.errors.append(classify("MessageRejected", "Email address is not verified.", 400))
    with pytest.raises(DeliveryError):
        await delivery.send(envelope(), b"x")
    assert len(inner.calls) == 1


async def test_daily_quota_from_ses_stops_calls_until_get_send_quota_shows_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    spent = SendQuota(max_send_rate=10, max_24h_send=200, sent_last_24h=150)
    quota = Quota(spent)  # stale: SES knows better
    delivery, inner, _ = await paced(clock, quota)
    inner.errors.append(DAILY)
    with caplog.at_level(logging.WARNING, logger="proxy.pacing"):
        for _ in range(3):
            with pytest.raises(TransientDeliveryError) as raised:
                await delivery.send(envelope(), b"x")
            assert raised.value.reason == "quota"
            assert raised.value.reply.startswith("451 4.4.5")
    assert len(inner.calls) == 1, "only the first message reached SES"
    assert [r.__dict__.get("event") for r in caplog.records] == ["quota_spent"]
    # A newer answer still without room keeps the block.
    quota.next = SendQuota(max_send_rate=10, max_24h_send=200, sent_last_24h=200)
    with pytest.raises(TransientDeliveryError):
        await delivery.send(envelope(), b"x")
    assert len(inner.calls) == 1
    quota.next = SendQuota(max_send_rate=10, max_24h_send=200, sent_last_24h=10)
    assert await delivery.send(envelope(), b"x") == "id-2"


async def test_a_spent_quota_seen_in_get_send_quota_defers_before_any_call() -> None:
    clock = Clock()
    quota = Quota(SendQuota(max_send_rate=10, max_24h_send=200, sent_last_24h=200))
    delivery, inner, _ = await paced(clock, quota)
    with pytest.raises(TransientDeliveryError) as raised:
        await delivery.send(envelope(), b"x")
    assert raised.value.reason == "quota"
    assert inner.calls == []


async def test_without_any_quota_reading_one_message_probes_ses_after_a_while() -> None:
    clock = Clock()
    delivery, inner, _ = await paced(clock, quota=None)
    inner.errors.append(DAILY)
    with pytest.raises(TransientDeliveryError):
        await delivery.send(envelope(), b"x")
    clock.now += QUOTA_PROBE_AFTER_SECONDS / 2
    with pytest.raises(TransientDeliveryError):
        await delivery.send(envelope(), b"x")
    assert len(inner.calls) == 1
    clock.now += QUOTA_PROBE_AFTER_SECONDS
    assert await delivery.send(envelope(), b"x") == "id-2"


async def test_fifty_recipients_are_sent_once_then_the_debt_is_waited_out() -> None:
    clock = Clock()
    delivery, inner, _ = await paced(clock)
    clock.now += 5  # a full bucket
    await delivery.send(envelope(50), b"x")
    await delivery.send(envelope(1), b"x")
    (first, fifty), (second, one) = inner.calls
    assert (fifty, one) == (50, 1)
    assert second - first == pytest.approx(4.1)


async def test_auto_without_a_known_quota_paces_at_the_default_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="proxy.pacing"):
        delivery, _, metrics = await paced(clock, Quota(None), max_send_rate="auto")
    assert sample(metrics, "sesproxy_rate_limit_recipients_per_second") == 1.0
    [record] = [r for r in caplog.records if r.__dict__.get("event") == "rate_limit"]
    assert record.__dict__["source"] == "default"
    assert record.levelno == logging.WARNING
    assert delivery.rate_in_force() == 1.0


async def test_a_configured_rate_below_max_send_rate_wins() -> None:
    clock = Clock()
    quota = Quota(SendQuota(max_send_rate=14, max_24h_send=-1, sent_last_24h=0))
    delivery, _, _ = await paced(clock, quota, max_send_rate=3.0)
    assert delivery.rate_in_force() == 3.0
    quota.latest = SendQuota(max_send_rate=2, max_24h_send=-1, sent_last_24h=0)
    assert delivery.rate_in_force() == 2.0
