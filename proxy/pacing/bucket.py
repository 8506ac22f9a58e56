"""The send budget's arithmetic, pure: a token bucket with debt, in reservation form (GCRA).

SES counts its sending rate per recipient in a bucket that holds one second's worth
and lets a call through while any budget is left; the recipients beyond it become
debt that later calls wait out (DESIGN.md). We pace *inside* that: a message goes
only once our bucket holds its recipients (or, for a message bigger than the whole
bucket, once the bucket is full), and may then take the bucket below zero. So:

- over any window, the recipients admitted stay within `rate * window + burst`,
  plus the debt of the window's last message when it is bigger than the burst;
- a 50-recipient message at 10/s is admitted after the bucket is full, as debt,
  and the messages after it wait the debt out: never rejected for its size.

Each caller reserves its slot at once (the state moves to the moment it will go),
then sleeps until the slot. A later caller computes from that future state, so it
can only be given a later slot: first come, first served, with no queue object and
no polling. A slot further away than the caller may wait is not reserved at all.

The same formula runs in Redis as a Lua script (redis.py) and in-process (local.py);
this module is the reference both are tested against. Times are seconds on any
monotonic clock; the state holds the bucket's level `tokens` (recipients, may be
negative) as of time `at` (which may be in the future: reserved, not yet sent).
"""

from __future__ import annotations

from dataclasses import dataclass

# "Burst at most one second's worth": SES's own bucket holds one second of MaxSendRate.
BURST_SECONDS = 1.0
# A slot exactly at max_wait fits, whatever the floating point rounding on the way.
SLACK_SECONDS = 1e-9


@dataclass(frozen=True)
class BucketState:
    tokens: float
    at: float


@dataclass(frozen=True)
class Reservation:
    """The answer to one request: how long to wait, and the state if it was reserved."""

    wait: float
    state: BucketState | None  # None: the wait was beyond max_wait, nothing reserved

    @property
    def admitted(self) -> bool:
        return self.state is not None


def burst_for(rate: float) -> float:
    return rate * BURST_SECONDS


def empty(now: float) -> BucketState:
    """A new bucket starts empty, not full: a replica that restarts, or a Redis that
    lost its data, must not add a fresh burst on top of what SES already counted.
    The cost is one recipient's interval (1/rate) for the very first message."""
    return BucketState(tokens=0.0, at=now)


def level(state: BucketState, now: float, rate: float) -> float:
    """Tokens at `now`: refilled at `rate` up to the burst; lower than `state.tokens`
    while `now` is before `state.at` (slots reserved ahead are not yet paid back)."""
    return min(burst_for(rate), state.tokens + (now - state.at) * rate)


def reserve(
    state: BucketState | None, now: float, rate: float, recipients: int, max_wait: float
) -> Reservation:
    """Reserve `recipients` at `rate` (recipients/s, > 0) for the earliest slot.

    Returns the wait until that slot and the new state, or, when the wait would be
    over `max_wait`, that wait and no state (the bucket is unchanged).
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if recipients < 1:
        raise ValueError("a message has at least one recipient")
    burst = burst_for(rate)
    tokens = level(state if state is not None else empty(now), now, rate)
    need = min(float(recipients), burst)
    wait = max(0.0, (need - tokens) / rate)
    if wait > max_wait + SLACK_SECONDS:
        return Reservation(wait=wait, state=None)
    # At the slot the bucket holds `tokens + wait * rate` (= `need` when we waited);
    # the message takes all its recipients from it, possibly going below zero.
    go = now + wait
    return Reservation(
        wait=wait, state=BucketState(tokens=tokens + wait * rate - recipients, at=go)
    )
