"""Pacing: the send budget in front of delivery, behind the same delivery interface.

    handler ──▶ PacedDelivery.send ──▶ (quota spent? 451 at once)
                      │                 budget.reserve (local.py | redis.py; bucket.py math)
                      │                 sleep once until the slot (a 5 ms grid when others
                      │                 wait too), or 451 beyond max_wait
                      └──────────────▶ inner.send ──▶ SES
                                        Throttling (rate): AIMD cut, back off, retry in budget
                                        Throttling (daily quota): stop calling SES

Budgets count recipients, as SES does. The rate is SES's MaxSendRate (from the
QuotaWatcher) or `rate.max_send_rate` when that is lower, times the AIMD share
(rate.py). A client with a `max_send_rate` also reserves in a bucket of its own, at
most the account's rate: a noisy batch job waits in its bucket, not in everyone's.
Every deferral is a TransientDeliveryError, so the SMTP handler counts it
(`messages_deferred{reason}`) and logs it like any other.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from proxy.aws.quota import SendQuota
from proxy.delivery import Delivery, Envelope, TransientDeliveryError
from proxy.delivery.ses_errors import QUOTA_REPLY
from proxy.message import Octets
from proxy.observability.metrics import Metrics
from proxy.pacing.local import LocalBudget
from proxy.pacing.rate import Aimd, BaseRate, base_rate
from proxy.settings import RateSettings, SesSettings

log = logging.getLogger("proxy.pacing")

RATE_REPLY = "451 4.4.5 sending rate limit reached, try again later"

# After SES throttles a paced message: back off this long (doubling per attempt, capped)
# before reserving a new slot, within what is left of the message's max_wait_seconds.
BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 4.0
# With the daily quota spent and no fresh GetSendQuota answer for this long (denied,
# failing), let one message ask SES itself rather than defer everything forever.
QUOTA_PROBE_AFTER_SECONDS = 60.0
# Messages that wait for their slots while others wait too wake on a grid of this step,
# not each at its own: at the rate SES allows, the slots of waiting messages are a
# fraction of a millisecond apart, and a wake-up per message (its SES request written,
# the answer read, the reply sent, each in a loop turn of its own) costs far more CPU
# per message than one wake-up for the messages of a step (docs/performance.md). A
# message never goes before its slot, and at most one step after it; what goes at once
# is at most the rate times one step (0.5 % of the second's worth SES's bucket holds),
# and only while the bucket is short (no message waits otherwise), so no refill is lost
# at the bucket's cap. A message waiting alone wakes at its slot (PacedDelivery.send).
WAKE_STEP_SECONDS = 0.005


def wake_after(now: float, wait: float) -> float:
    """The sleep from `now` to the first step of the grid at or after `now + wait`."""
    steps = math.ceil((now + wait) / WAKE_STEP_SECONDS - 1e-6)
    return max(wait, steps * WAKE_STEP_SECONDS - now)


class QuotaSource(Protocol):
    """What pacing needs of aws/quota.py's QuotaWatcher."""

    @property
    def latest(self) -> SendQuota | None:
        """The last GetSendQuota answer, or None."""

    async def refresh(self) -> SendQuota | None:
        """Ask SES again (at most once a second); the latest answer."""


class Budget(Protocol):
    async def start(self) -> None:
        """Connect what the budget needs; never raise for an unreachable store."""

    async def reserve(self, recipients: int, rate: float, max_wait: float) -> float | None:
        """Reserve the earliest slot; the wait until it, or None beyond max_wait (not reserved)."""

    def share(self) -> float:
        """The fraction of the rate this process uses now (below 1 on a fallback)."""

    async def close(self) -> None:
        """Release connections."""


@dataclass
class _QuotaBlock:
    since: float
    seen: SendQuota | None  # the answer that showed no room; room must show in a newer one
    checked_at: float  # when GetSendQuota last answered (or the block began)


def _has_room(quota: SendQuota) -> bool:
    return quota.max_24h_send < 0 or quota.sent_last_24h < quota.max_24h_send


class PacedDelivery:
    def __init__(
        self,
        inner: Delivery,
        settings: RateSettings,
        budget: Budget,
        metrics: Metrics,
        quota: QuotaSource | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        client_rates: Mapping[str, float] | None = None,
        client_budget: Callable[[str], Budget] | None = None,
    ) -> None:
        """`client_rates`: each rate-limited client's max_send_rate; `client_budget`
        makes its bucket (the same backend as the account's, under its own key)."""
        self._inner = inner
        self._client_rates = dict(client_rates or {})
        self._new_client_budget = client_budget or (lambda name: LocalBudget(clock))
        self._client_budgets: dict[str, Budget] = {}
        self._settings = settings
        self._budget = budget
        self._metrics = metrics
        self._quota = quota
        self._clock = clock
        self._sleep = sleep
        self._aimd = Aimd()
        self._base: BaseRate | None = None
        self._blocked: _QuotaBlock | None = None
        self._waiting = 0  # messages asleep until their slots

    async def start(self) -> None:
        await self._inner.start()
        await self._budget.start()
        if self._quota is not None:
            # Know MaxSendRate (and whether the day's quota is spent) before the
            # first message rather than pacing it at the default.
            await self._quota.refresh()
        self._metrics.rate_limit.set_function(self.rate_in_force)
        self._current_base()

    async def close(self) -> None:
        for budget in self._client_budgets.values():
            await budget.close()
        await self._budget.close()
        await self._inner.close()

    def ready(self) -> bool:
        return self._inner.ready()

    def reconfigure(self, settings: RateSettings, client_rates: Mapping[str, float]) -> None:
        """A new max_send_rate, max_wait_seconds and clients' rates (the backend stays)."""
        self._settings = settings
        self._client_rates = dict(client_rates)
        self._current_base()

    async def _client_bucket(self, name: str) -> Budget:
        budget = self._client_budgets.get(name)
        if budget is None:
            budget = self._client_budgets[name] = self._new_client_budget(name)
            await budget.start()
        return budget

    def rate_in_force(self) -> float:
        """Recipients per second this process paces to now (the rate gauge reads this)."""
        now = self._clock()
        return self._current_base().rate * self._aimd.factor(now) * self._budget.share()

    async def send(self, envelope: Envelope, raw: Octets) -> str:
        started = self._clock()
        deadline = started + self._settings.max_wait_seconds
        recipients = len(envelope.recipients)
        await self._check_quota()
        attempt = 0
        waited: float | None = None
        try:
            while True:
                rate = self._current_base().rate * self._aimd.factor(self._clock())
                left = max(0.0, deadline - self._clock())
                wait = await self._budget.reserve(recipients, rate, left)
                if wait is None:
                    raise self._rate_error(recipients, rate)
                client_rate = self._client_rates.get(envelope.client)
                if client_rate is not None:
                    own = min(client_rate, rate)
                    bucket = await self._client_bucket(envelope.client)
                    own_wait = await bucket.reserve(recipients, own, left)
                    if own_wait is None:
                        raise self._rate_error(recipients, own, envelope.client)
                    wait = max(wait, own_wait)
                if wait > 0:
                    # Alone, a message wakes at its slot: a client sending one message
                    # at a time is not held a step for nobody's sake.
                    if self._waiting:
                        wait = wake_after(self._clock(), wait)
                    self._waiting += 1
                    try:
                        await self._sleep(wait)
                    finally:
                        self._waiting -= 1
                waited = self._clock() - started
                try:
                    return await self._inner.send(envelope, raw)
                except TransientDeliveryError as error:
                    if error.reason == "quota":
                        self._quota_spent("SES answered Throttling: daily message quota")
                        raise
                    if error.reason != "throttled":
                        raise
                    # SES refused it, so nothing was sent: safe to try again, later and
                    # slower, while the client is still within its wait budget.
                    self._throttled(rate)
                    backoff = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**attempt)
                    attempt += 1
                    if self._clock() + backoff >= deadline:
                        raise
                    await self._sleep(backoff)
        finally:
            if waited is not None:
                self._metrics.rate_wait_seconds.observe(waited)

    # ------------------------------------------------------------------ rate

    def _current_base(self) -> BaseRate:
        latest = self._quota.latest if self._quota is not None else None
        base = base_rate(
            self._settings.max_send_rate, latest.max_send_rate if latest is not None else None
        )
        if base != self._base:
            self._base = base
            if base.source == "default":
                log.warning(
                    "SES MaxSendRate unknown (GetSendQuota denied or not answered): pacing at "
                    "a conservative default until it is known; set rate.max_send_rate",
                    extra={"event": "rate_limit", "rate": base.rate, "source": base.source},
                )
            else:
                log.info(
                    "sending rate limit",
                    extra={"event": "rate_limit", "rate": base.rate, "source": base.source},
                )
        return base

    def _throttled(self, rate: float) -> None:
        now = self._clock()
        if self._aimd.throttled(now):
            log.warning(
                "SES throttled a paced message: lowering the rate for a while",
                extra={
                    "event": "ses_throttled",
                    "rate_before": rate,
                    "rate_now": self._current_base().rate * self._aimd.factor(now),
                },
            )

    def _rate_error(
        self, recipients: int, rate: float, client: str | None = None
    ) -> TransientDeliveryError:
        whose = f" (client {client}'s max_send_rate)" if client is not None else ""
        return TransientDeliveryError(
            "rate",
            RATE_REPLY,
            f"{recipients} recipient(s) would wait over max_wait_seconds "
            f"({self._settings.max_wait_seconds:g} s) at {rate:g} recipients/s{whose}",
        )

    # ------------------------------------------------------------------ daily quota

    async def _check_quota(self) -> None:
        """Defer at once, without calling SES, while the 24-hour quota is spent."""
        latest = self._quota.latest if self._quota is not None else None
        if self._blocked is None:
            if latest is None or _has_room(latest):
                return
            self._quota_spent("GetSendQuota: SentLast24Hours reached Max24HourSend")
        block = self._blocked
        assert block is not None
        now = self._clock()
        fresh = await self._quota.refresh() if self._quota is not None else None
        if fresh is not None and fresh is not block.seen:
            block.checked_at = now
            if _has_room(fresh):
                self._blocked = None
                log.warning(
                    "daily quota has room again: sending resumes",
                    extra={"event": "quota_room", "sent_last_24h": fresh.sent_last_24h},
                )
                return
            block.seen = fresh
        elif now - block.checked_at >= QUOTA_PROBE_AFTER_SECONDS:
            # No way to read the quota: let this message ask SES; another quota
            # answer blocks again.
            self._blocked = None
            return
        raise TransientDeliveryError(
            "quota",
            QUOTA_REPLY,
            f"daily sending quota spent since {now - block.since:.0f} s: not calling SES "
            "until GetSendQuota shows room",
        )

    def _quota_spent(self, why: str) -> None:
        if self._blocked is not None:
            return
        now = self._clock()
        latest = self._quota.latest if self._quota is not None else None
        self._blocked = _QuotaBlock(since=now, seen=latest, checked_at=now)
        log.warning(
            "daily quota spent: deferring every message without calling SES",
            extra={"event": "quota_spent", "why": why},
        )


def build_budget(
    settings: RateSettings, ses: SesSettings, metrics: Metrics, client: str | None = None
) -> Budget:
    """The account's budget, or with `client` that client's bucket (on the same backend:
    with Redis, every replica shares it too)."""
    if settings.backend == "redis" and settings.redis_url:
        from proxy.pacing.redis import RedisBudget, make_client

        account = ses.account_id or (ses.role_arn.split(":")[4] if ses.role_arn else "default")
        if client is not None:
            account = f"{account}:client:{client}"
        return RedisBudget(make_client(settings.redis_url), account, ses.region, metrics)
    return LocalBudget()
