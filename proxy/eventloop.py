"""The relay's event loop: asyncio's, whose selector polls for a moment before it sleeps.

An SMTP transaction wakes the relay five times (four commands and SES's answer), and
on a virtual machine waking a sleeping vCPU is slow: the hypervisor has to run it
again: a round trip between two processes on different vCPUs takes many times what it
takes on one (`make bench` prints both). So when the loop has nothing to
do, the selector first polls without blocking for a short window and only then sleeps
in epoll, as the kernel's haltpoll idle governor does for a guest and as Go's
scheduler does before it parks a thread: lower latency, and less CPU per message (a
poll that catches the next command costs less than a sleep and a wake-up). The
figures that keep it are in docs/performance.md.

The window follows haltpoll's rule (drivers/cpuidle/governors/haltpoll.c, with its
default parameters): it grows, doubling from 50 µs up to 200 µs, while the loop's
idle stretches are longer than the window but no longer than 200 µs (a wider window
would have caught them), and halves, down to nothing below 50 µs, after a stretch
longer than 200 µs (polling would not have caught it). A relay with nothing to do
stops polling after a few waits; at worst one window of CPU is spent per idle stretch.

Polling needs a CPU to spare: the peer that will wake the loop needs one to run on. A
process allowed less than two CPUs (its affinity, or a cgroup CPU quota such as a
container's CPU limit) does not poll: on one CPU the loop would only take time from
the peers it waits for (`make bench --one-cpu`: more CPU per message and slower
replies), and under a small quota it would spend the quota.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import time
from dataclasses import dataclass
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class PollWindow:
    """How long the selector polls before it sleeps, in seconds; adjusted after each
    sleep with the length of the idle stretch it ended."""

    longest: float = 200e-6  # haltpoll's guest_halt_poll_ns
    grow_start: float = 50e-6  # haltpoll's guest_halt_poll_grow_start
    seconds: float = 0.0

    def adjust(self, idle: float) -> None:
        if self.seconds < idle <= self.longest:
            self.seconds = min(self.longest, max(self.grow_start, self.seconds * 2))
        elif idle > self.longest:
            half = self.seconds / 2
            self.seconds = half if half >= self.grow_start else 0.0


class PollingSelector(selectors.DefaultSelector):
    """The platform's selector, polling for up to `window.seconds` before it blocks,
    and never waiting longer than the timeout asyncio asks for."""

    def __init__(self, window: PollWindow | None = None) -> None:
        super().__init__()
        self.window = PollWindow() if window is None else window

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return super().select(0)  # asyncio has callbacks ready: a poll, no idling
        started = time.perf_counter()
        window = self.window.seconds
        if window > 0:
            poll_until = started + (window if timeout is None else min(window, timeout))
            while True:
                ready = super().select(0)
                if ready:
                    return ready  # caught while polling: the window was wide enough
                if time.perf_counter() >= poll_until:
                    break
        remaining = None if timeout is None else max(0.0, timeout - (time.perf_counter() - started))
        ready = super().select(remaining)
        self.window.adjust(time.perf_counter() - started)
        return ready


def _v2_quota(directory: Path) -> float | None:
    quota, period = (directory / "cpu.max").read_text().split()
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    quota = int((directory / "cpu.cfs_quota_us").read_text())
    return None if quota < 0 else quota / int((directory / "cpu.cfs_period_us").read_text())


def cgroup_cpu_limit(proc_self_cgroup: str, root: Path = _CGROUP_ROOT) -> float | None:
    """The tightest CPU quota, in CPUs, set on the cgroup named in /proc/self/cgroup's
    text or on any cgroup above it (v2 `cpu.max`, v1 `cpu.cfs_quota_us`); None if
    there is none or none can be read."""
    limits = []
    for line in proc_self_cgroup.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            mount, quota = root, _v2_quota
        elif "cpu" in controllers.split(","):
            mount, quota = root / controllers, _v1_quota
        else:
            continue
        directory = mount / path.lstrip("/")
        while True:
            try:
                limit = quota(directory)
            except (OSError, ValueError, ZeroDivisionError):
                limit = None
            if limit is not None:
                limits.append(limit)
            if directory == mount or mount not in directory.parents:
                break
            directory = directory.parent
    return min(limits, default=None)


def cpus_for_this_process() -> float:
    """The CPUs this process may run on, capped by its cgroups' CPU quota."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cpus = float(os.cpu_count() or 1)
    try:
        limit = cgroup_cpu_limit(Path("/proc/self/cgroup").read_text())
    except OSError:
        limit = None
    return cpus if limit is None else min(cpus, limit)


def poll_window(cpus: float) -> PollWindow:
    """haltpoll's window with two CPUs or more; a window that never opens with less."""
    return PollWindow() if cpus >= 2 else PollWindow(longest=0.0)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop `ses-proxy serve` runs on."""
    return asyncio.SelectorEventLoop(PollingSelector(poll_window(cpus_for_this_process())))
