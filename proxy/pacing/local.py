"""The send budget of this process alone: the bucket of bucket.py on the monotonic clock.

The default (`rate.backend: local`), and the fallback of the Redis budget while
Redis cannot be reached. Reserving is one call to the pure function: there is no
await between reading and writing the state, so concurrent sessions on the event
loop cannot interleave inside a reservation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from proxy.pacing import bucket


class LocalBudget:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: bucket.BucketState | None = None

    async def start(self) -> None:
        # Empty from the start of the process (see bucket.empty), full a second later.
        if self._state is None:
            self._state = bucket.empty(self._clock())

    async def close(self) -> None:
        return None

    def share(self) -> float:
        return 1.0

    async def reserve(self, recipients: int, rate: float, max_wait: float) -> float | None:
        """The wait until this reservation's slot, or None when it is beyond max_wait."""
        answer = bucket.reserve(self._state, self._clock(), rate, recipients, max_wait)
        if answer.state is None:
            return None
        self._state = answer.state
        return answer.wait

    def start_after(self, moment: float) -> None:
        """Start (again) empty at `moment`: the Redis budget's fallback begins after the
        slots this process had already reserved in Redis, not on top of them."""
        self._state = bucket.empty(max(moment, self._clock()))
