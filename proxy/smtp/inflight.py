"""One budget for the message bytes all sessions hold together (`smtp.max_inflight_bytes`).

A message is held whole while it is checked and sent (SigV4 signs the payload's hash
before the first byte goes), beside its cleaned copy and its encoded request. Each
session takes from this budget what it holds: DATA as it is read, then the copy and the
request before they are made. What does not fit is refused with 452 4.3.1 and nothing
is sent, so peak memory is the process's base plus this budget, whatever clients do.
"""

from __future__ import annotations

from prometheus_client import Gauge

# Besides the message itself, at the peak: its chunks while they are joined (x1), its
# cleaned copy (x1), and the encoded request, built in slices then joined (2 x ~1.37:
# SendRawEmail's form is base64 then URL-escaped; SESv2's JSON base64 ~1.34). Measured
# with `make bench --only memory`: 2.4 let RSS pass base + budget by 30 %, 4.8 reached
# it exactly; 5.0 leaves a margin for the allocator.
COPIES_BESIDE_THE_MESSAGE = 5.0


class InflightBytes:
    def __init__(self, limit: int, gauge: Gauge) -> None:
        self.limit = limit
        self.held = 0
        self._gauge = gauge
        gauge.set(0)

    def fits(self, size: int) -> bool:
        """Would a message of `size` octets, with what it needs beside it, fit now?"""
        return self.held + needed_for(size) <= self.limit

    def hold(self) -> Hold:
        return Hold(self)

    def _take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        self._gauge.set(self.held)
        return True

    def _give_back(self, size: int) -> None:
        self.held -= size
        self._gauge.set(self.held)


def needed_for(size: int) -> int:
    return size + int(size * COPIES_BESIDE_THE_MESSAGE)


class Hold:
    """What one message holds of the budget; given back once, however it ends."""

    def __init__(self, budget: InflightBytes) -> None:
        self._budget = budget
        self.size = 0

    def take(self, size: int) -> bool:
        if not self._budget._take(size):
            return False
        self.size += size
        return True

    def release(self) -> None:
        self._budget._give_back(self.size)
        self.size = 0
