"""One send budget for every replica: the bucket of bucket.py kept in Redis.

Each reservation is one Lua script, so it is atomic across replicas, and it reads
Redis's own clock (TIME): replicas on different hosts need no synchronised clocks,
the answer is a wait relative to the moment Redis ran the script. The script also
counts the replicas that reserved in the last minute, so that the fallback knows
its share.

When Redis cannot be reached the process keeps sending on a local bucket at
1/replicas of the rate (half when the count was never known), says so once in the
log and sets `sesproxy_rate_shared_budget_up` to 0, and tries Redis again at most
once a second. A failed reservation only means this message is paced locally:
sending never depends on Redis, so Redis can neither stop mail nor send it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.observability.metrics import Metrics
from proxy.pacing import bucket
from proxy.pacing.local import LocalBudget

log = logging.getLogger("proxy.pacing")

# The same arithmetic as bucket.reserve (tests hold the two together), on Redis's clock.
# Numbers cross the Lua boundary as strings: Redis truncates a Lua number to an integer.
RESERVE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local recipients = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local burst = rate * tonumber(ARGV[4])
local replica_ttl = tonumber(ARGV[6])

redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - replica_ttl)
redis.call('EXPIRE', KEYS[2], math.ceil(replica_ttl))
local replicas = redis.call('ZCARD', KEYS[2])

-- A missing bucket starts empty (bucket.empty): a Redis that lost its data must not
-- hand every replica a fresh burst on top of what SES already counted.
local tokens, at = 0, now
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if state[1] and state[2] then
  tokens = tonumber(state[1])
  at = tonumber(state[2])
end
tokens = math.min(burst, tokens + (now - at) * rate)
local need = math.min(recipients, burst)
local wait = math.max(0, (need - tokens) / rate)
if wait > max_wait + 1e-9 then
  return {0, string.format('%.6f', wait), replicas}
end
local left = tokens + wait * rate - recipients
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', left),
           'at', string.format('%.6f', now + wait))
-- Kept until a minute after it is full again; a bucket that expired starts empty.
redis.call('PEXPIRE', KEYS[1], math.ceil((wait + (burst - left) / rate + 60) * 1000))
return {1, string.format('%.6f', wait), replicas}
"""

# Replicas that reserved within this many seconds count towards the fallback share.
REPLICA_TTL_SECONDS = 60.0
# While on the fallback, Redis is tried again at most this often (one message pays it).
PROBE_INTERVAL_SECONDS = 1.0
# Short: a message waits at most about twice this (one reconnect) before the fallback.
SOCKET_TIMEOUT_SECONDS = 1.0
# Before any replica count is known, the fallback assumes two replicas.
DEFAULT_FALLBACK_SHARE = 0.5


class UnexpectedAnswer(Exception):
    """Redis (or whatever listens there) answered something the script cannot return."""


_REDIS_FAILURES = (RedisError, OSError, asyncio.TimeoutError, UnexpectedAnswer)


def _reservation(answer: Any) -> tuple[bool, float, int]:
    """(admitted, wait, replicas) of the script's answer; UnexpectedAnswer otherwise."""
    try:
        admitted, wait, replicas = answer
        result = (int(admitted) == 1, float(wait), int(replicas))
    except (TypeError, ValueError) as error:
        raise UnexpectedAnswer(f"not the reservation script's answer: {error}") from None
    if not (result[1] >= 0 and result[2] >= 0):
        raise UnexpectedAnswer("a negative wait or replica count")
    return result


def bucket_keys(account: str, region: str) -> tuple[str, str]:
    """The bucket and replica-set keys of one SES account and region.

    The braces are a Redis Cluster hash tag: both keys land on one slot, so the
    script may touch them together.
    """
    tag = f"{{{account}:{region}}}"
    return f"sesproxy:rate:{tag}:bucket", f"sesproxy:rate:{tag}:replicas"


def make_client(url: str) -> Redis:
    # redis-py does not retry a dead pooled connection by default (DESIGN.md): after a
    # Redis restart the first command on an old connection fails. One immediate retry
    # on a fresh connection, before falling back, keeps replicas from all falling back
    # (and overshooting together) each time Redis returns.
    client: Redis = Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return client


class RedisBudget:
    def __init__(
        self,
        client: Redis,
        account: str,
        region: str,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._keys = list(bucket_keys(account, region))
        self._script = client.register_script(RESERVE_LUA)
        self._metrics = metrics
        self._clock = clock
        self._replica = uuid.uuid4().hex
        self._replicas: int | None = None
        self._up: bool | None = None  # None until the first answer or failure
        self._next_probe = 0.0
        # The latest slot this process reserved in Redis: the fallback starts after it.
        self._own_tail = 0.0
        self._local = LocalBudget(clock)

    async def start(self) -> None:
        # Load the script now so that a Redis that is down at start is said at start,
        # with the fallback in force, rather than at the first message.
        try:
            await self._client.script_load(RESERVE_LUA)
        except _REDIS_FAILURES as error:
            self._went_down(error)
        else:
            self._came_up()

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except _REDIS_FAILURES:
            log.debug("closing the Redis client failed", exc_info=True)

    @property
    def shared(self) -> bool:
        return self._up is True

    def share(self) -> float:
        if self._up is not False:
            return 1.0
        if self._replicas is None:
            return DEFAULT_FALLBACK_SHARE
        return 1.0 / max(1, self._replicas)

    async def reserve(self, recipients: int, rate: float, max_wait: float) -> float | None:
        now = self._clock()
        if self._up is not False or now >= self._next_probe:
            # Only one message per interval pays a probe while Redis is down.
            self._next_probe = now + PROBE_INTERVAL_SECONDS
            try:
                answer: Any = await self._script(
                    keys=self._keys,
                    args=[
                        repr(rate),
                        recipients,
                        repr(max_wait),
                        repr(bucket.BURST_SECONDS),
                        self._replica,
                        repr(REPLICA_TTL_SECONDS),
                    ],
                )
                admitted, wait, replicas = _reservation(answer)
            except _REDIS_FAILURES as error:
                self._went_down(error)
            else:
                self._came_up()
                self._replicas = replicas
                if not admitted:
                    return None
                self._own_tail = max(self._own_tail, self._clock() + wait)
                return wait
        return await self._local.reserve(recipients, rate * self.share(), max_wait)

    def _went_down(self, error: BaseException) -> None:
        self._next_probe = self._clock() + PROBE_INTERVAL_SECONDS
        if self._up is False:
            return
        self._up = False
        self._local.start_after(self._own_tail)
        self._metrics.rate_shared_budget_up.set(0)
        log.warning(
            "Redis unreachable: pacing on a local bucket at a share of the rate until it returns",
            extra={
                "event": "shared_budget_down",
                "error": type(error).__name__,
                "share": self.share(),
                "replicas_seen": self._replicas,
            },
        )

    def _came_up(self) -> None:
        if self._up is True:
            return
        was_down = self._up is False
        self._up = True
        self._metrics.rate_shared_budget_up.set(1)
        if was_down:
            log.warning(
                "Redis reachable again: pacing on the shared budget",
                extra={"event": "shared_budget_up"},
            )
        else:
            log.info("pacing on the shared budget in Redis", extra={"event": "shared_budget_up"})
