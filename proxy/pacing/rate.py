"""Which rate is in force, pure: the configured cap, SES's MaxSendRate, and AIMD after throttling.

Times are seconds on a monotonic clock, passed in: no I/O, no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# With `max_send_rate: auto` and no quota known (GetSendQuota denied or not answered
# yet), the rate of a fresh SES sandbox account: slow, but never throttled.
DEFAULT_RATE = 1.0

RateSource = Literal["quota", "config", "default"]


@dataclass(frozen=True)
class BaseRate:
    rate: float
    source: RateSource


def base_rate(configured: float | Literal["auto"], max_send_rate: float | None) -> BaseRate:
    """The rate before AIMD: MaxSendRate, or the configured number when it is below it.

    A MaxSendRate of 0 or less is treated as unknown: it is not a rate anyone can pace to.
    """
    known = max_send_rate if max_send_rate is not None and max_send_rate > 0 else None
    if configured == "auto":
        return BaseRate(known, "quota") if known is not None else BaseRate(DEFAULT_RATE, "default")
    if known is not None and known < configured:
        return BaseRate(known, "quota")
    return BaseRate(configured, "config")


class Aimd:
    """Additive increase, multiplicative decrease of the share of the base rate in force.

    SES throttling a paced sender means someone else spends the same account's
    budget (another app, a replica on a fallback bucket) or MaxSendRate dropped:
    halve our share at once, then win it back linearly while SES stays quiet.
    Throttles within COOLDOWN of a cut are one event: the messages in flight when
    SES started refusing all come back together and must not cut the rate to the
    floor between them.
    """

    DECREASE = 0.5
    RECOVERY_PER_SECOND = 0.1  # of the base rate: from half back to full in 5 s
    FLOOR = 0.05
    COOLDOWN = 1.0

    def __init__(self) -> None:
        self._factor_at_cut = 1.0
        self._cut_at: float | None = None

    def factor(self, now: float) -> float:
        if self._cut_at is None:
            return 1.0
        recovered = self._factor_at_cut + self.RECOVERY_PER_SECOND * max(0.0, now - self._cut_at)
        if recovered >= 1.0:
            self._cut_at = None
            return 1.0
        return recovered

    def throttled(self, now: float) -> bool:
        """SES said Throttling at `now`; True when the share was cut (not within cooldown)."""
        if self._cut_at is not None and now - self._cut_at < self.COOLDOWN:
            return False
        self._factor_at_cut = max(self.FLOOR, self.factor(now) * self.DECREASE)
        self._cut_at = now
        return True
