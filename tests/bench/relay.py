"""`ses-proxy serve` for the benchmark, with an event-loop stall monitor beside it.

The monitor is a task that asks to wake every 2 ms and records how late it woke:
the longest lateness is the longest time the loop ran something else without a
break (a stall). SIGUSR1 starts a new measurement; SIGUSR2 writes the worst so far
to $BENCH_LOOP_STATS. `--loop uvloop` runs the relay on uvloop instead of its own
loop (proxy/eventloop.py).
$BENCH_SLOW_CALLBACK_MS (diagnosis, costs CPU): asyncio's debug mode logs every step
of the loop that ran longer, with what ran; tests/bench/run.py prints those lines.

Run: python -m tests.bench.relay [--loop asyncio|uvloop] serve -c FILE
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

_TICK = 0.002


async def _monitor(path: Path) -> None:
    loop = asyncio.get_running_loop()
    worst = 0.0
    gc_worst = 0.0
    gc_started = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal gc_started, gc_worst
        if phase == "start":
            gc_started = time.perf_counter()
        else:
            gc_worst = max(gc_worst, time.perf_counter() - gc_started)

    gc.callbacks.append(on_gc)
    slow = os.environ.get("BENCH_SLOW_CALLBACK_MS")
    if slow:
        loop.set_debug(True)
        loop.slow_callback_duration = float(slow) / 1000
    if os.environ.get("BENCH_GC_FREEZE"):
        gc.freeze()

    def write() -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"max_stall_ms": worst * 1000, "max_gc_ms": gc_worst * 1000})
        )
        temporary.replace(path)

    def restart() -> None:
        nonlocal worst, gc_worst
        worst, gc_worst = 0.0, 0.0

    # Written only when asked, after a load: a file written during one stalled the
    # relay's loop (a write can wait on the disk for tens of milliseconds).
    loop.add_signal_handler(signal.SIGUSR1, restart)
    loop.add_signal_handler(signal.SIGUSR2, write)
    while True:
        before = loop.time()
        await asyncio.sleep(_TICK)
        worst = max(worst, loop.time() - before - _TICK)


def _with_monitor(
    serve: Callable[..., Awaitable[int]], path: Path
) -> Callable[..., Awaitable[int]]:
    # serve's own arguments whatever they are (--relay-root may run an older tree).
    async def serve_monitored(*args: Any) -> int:
        task = asyncio.get_running_loop().create_task(_monitor(path))
        try:
            return await serve(*args)
        finally:
            task.cancel()

    return serve_monitored


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--loop"]:
        loop_name, argv = argv[1], argv[2:]
        import proxy.eventloop

        if loop_name == "uvloop":
            import uvloop

            proxy.eventloop.new_event_loop = uvloop.new_event_loop
        elif loop_name == "asyncio-no-poll":
            # asyncio's own loop: the polling selector of proxy/eventloop.py judged.
            proxy.eventloop.new_event_loop = asyncio.new_event_loop
    import proxy.server
    from proxy import cli

    stats = os.environ.get("BENCH_LOOP_STATS")
    if stats:
        proxy.server.serve = _with_monitor(proxy.server.serve, Path(stats))  # type: ignore[assignment]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
