"""The bucket arithmetic (GCRA with debt) and the rate choice, pure, on an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.pacing import bucket
from proxy.pacing.rate import DEFAULT_RATE, Aimd, BaseRate, base_rate
from tests.properties import examples

EPSILON = 1e-6

# (gap since the previous request in seconds, recipients) pairs.
requests = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=3, allow_nan=False),
        st.integers(min_value=1, max_value=50),
    ),
    min_size=1,
    max_size=60,
)
rates = st.floats(min_value=0.5, max_value=200, allow_nan=False)


def arrivals(plan: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """(arrival time, recipients) from (gap, recipients)."""
    now = 100.0
    timed = []
    for gap, recipients in plan:
        now += gap
        timed.append((now, recipients))
    return timed


def run(
    timed: list[tuple[float, int]], rate: float, max_wait: float = 1e9
) -> list[tuple[float, int] | None]:
    """Reserve each request in turn; each one's slot and recipients, or None if refused."""
    state: bucket.BucketState | None = None
    slots: list[tuple[float, int] | None] = []
    for now, recipients in timed:
        answer = bucket.reserve(state, now, rate, recipients, max_wait)
        if answer.state is None:
            slots.append(None)
            continue
        state = answer.state
        slots.append((now + answer.wait, recipients))
    return slots


@settings(max_examples=examples(300), deadline=None)
@given(requests, rates)
def test_over_any_window_recipients_stay_within_rate_times_window_plus_burst(
    plan: list[tuple[float, int]], rate: float
) -> None:
    admitted = [slot for slot in run(arrivals(plan), rate) if slot is not None]
    burst = bucket.burst_for(rate)
    for i in range(len(admitted)):
        total = 0
        for j in range(i, len(admitted)):
            total += admitted[j][1]
            window = admitted[j][0] - admitted[i][0]
            # A message bigger than the burst goes when the bucket is full and leaves
            # the rest as debt: only the window's last message may bring debt in.
            last_debt = max(0.0, admitted[j][1] - burst)
            assert total <= rate * window + burst + last_debt + EPSILON


@settings(max_examples=examples(300), deadline=None)
@given(requests, st.lists(rates, min_size=60, max_size=60), st.floats(0, 10))
def test_first_come_first_served_whatever_the_rate_of_each_caller(
    plan: list[tuple[float, int]], rate_of_each: list[float], max_wait: float
) -> None:
    # Rates differ per call (AIMD, replicas with different caps): order still holds.
    state: bucket.BucketState | None = None
    now = 0.0
    slots = []
    for (gap, recipients), rate in zip(plan, rate_of_each, strict=False):
        now += gap
        answer = bucket.reserve(state, now, rate, recipients, max_wait)
        if answer.state is not None:
            state = answer.state
            slots.append(now + answer.wait)
            assert answer.wait <= max_wait + bucket.SLACK_SECONDS
    assert slots == sorted(slots)


@settings(max_examples=examples(200), deadline=None)
@given(requests, rates, st.floats(0, 5))
def test_a_refused_request_leaves_the_bucket_as_it_was(
    plan: list[tuple[float, int]], rate: float, max_wait: float
) -> None:
    # What the refused callers saw must not delay the ones that fit: compare with a
    # run from which the refused requests are removed.
    timed = arrivals(plan)
    slots = run(timed, rate, max_wait)
    kept = [request for request, slot in zip(timed, slots, strict=True) if slot is not None]
    assert [slot for slot in slots if slot is not None] == run(kept, rate, max_wait)


def test_fifty_recipients_at_ten_per_second_are_admitted_as_debt() -> None:
    full = bucket.BucketState(tokens=10.0, at=0.0)
    big = bucket.reserve(full, 5.0, 10.0, 50, max_wait=0.0)
    assert big.admitted
    assert big.wait == 0.0
    assert big.state == bucket.BucketState(tokens=-40.0, at=5.0)
    # The next one waits the debt out, plus its own recipient.
    after = bucket.reserve(big.state, 5.0, 10.0, 1, max_wait=30.0)
    assert after.wait == pytest.approx(4.1)


def test_a_message_bigger_than_the_burst_waits_for_a_full_bucket_not_forever() -> None:
    answer = bucket.reserve(None, 0.0, 10.0, 50, max_wait=30.0)
    assert answer.admitted
    assert answer.wait == pytest.approx(1.0)  # empty start: one second to fill


def test_a_new_bucket_starts_empty() -> None:
    first = bucket.reserve(None, 7.0, 4.0, 1, max_wait=1.0)
    assert first.wait == pytest.approx(0.25)


def test_the_burst_is_one_second_of_the_rate() -> None:
    state = bucket.BucketState(tokens=0.0, at=0.0)
    # After a long idle time the bucket holds one second's worth, no more.
    assert bucket.level(state, 3600.0, 14.0) == 14.0
    waits = []
    now = 3600.0
    for _ in range(16):
        answer = bucket.reserve(state, now, 14.0, 1, max_wait=10.0)
        assert answer.state is not None
        state = answer.state
        waits.append(answer.wait)
    assert waits[:14] == [0.0] * 14
    assert waits[14] == pytest.approx(1 / 14)
    assert waits[15] == pytest.approx(2 / 14)


def test_beyond_max_wait_says_how_long_it_would_have_been() -> None:
    state = bucket.BucketState(tokens=-20.0, at=0.0)
    answer = bucket.reserve(state, 0.0, 10.0, 1, max_wait=2.0)
    assert not answer.admitted
    assert answer.wait == pytest.approx(2.1)


@pytest.mark.parametrize(("rate", "recipients"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_nonsense_is_refused(rate: float, recipients: int) -> None:
    with pytest.raises(ValueError, match=r"rate|recipient"):
        bucket.reserve(None, 0.0, rate, recipients, 1.0)


@pytest.mark.parametrize(
    ("configured", "max_send_rate", "expected"),
    [
        ("auto", 14.0, BaseRate(14.0, "quota")),
        ("auto", None, BaseRate(DEFAULT_RATE, "default")),
        ("auto", 0.0, BaseRate(DEFAULT_RATE, "default")),
        (5.0, 14.0, BaseRate(5.0, "config")),
        (20.0, 14.0, BaseRate(14.0, "quota")),
        (20.0, None, BaseRate(20.0, "config")),
    ],
)
def test_the_base_rate(
    configured: float | str, max_send_rate: float | None, expected: BaseRate
) -> None:
    assert base_rate(configured, max_send_rate) == expected  # type: ignore[arg-type]


def test_aimd_halves_at_once_then_recovers_linearly() -> None:
    aimd = Aimd()
    assert aimd.factor(0.0) == 1.0
    assert aimd.throttled(10.0)
    assert aimd.factor(10.0) == 0.5
    # The other messages in flight come back throttled too: one event, one cut.
    assert not aimd.throttled(10.5)
    assert aimd.factor(10.5) == pytest.approx(0.55)
    assert aimd.factor(12.5) == pytest.approx(0.75)
    assert aimd.factor(15.0) == 1.0
    assert aimd.factor(100.0) == 1.0


def test_aimd_under_sustained_throttling_stays_low_but_above_its_floor() -> None:
    aimd = Aimd()
    now = 0.0
    for _ in range(20):
        assert aimd.throttled(now)
        assert aimd.factor(now) >= Aimd.FLOOR
        now += Aimd.COOLDOWN
    # Cut in half each second, winning back a tenth in between: it settles near 0.1.
    assert aimd.factor(now - Aimd.COOLDOWN) < 0.15
