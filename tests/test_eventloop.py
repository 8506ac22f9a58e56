"""proxy/eventloop.py: haltpoll's window rule, and a selector that polls within the
window, sleeps outside it, and never waits past asyncio's timeout."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.eventloop import (
    PollingSelector,
    PollWindow,
    cgroup_cpu_limit,
    new_event_loop,
    poll_window,
)

US = 1e-6

# Idle stretches one after the other, and the window after each (haltpoll's defaults:
# grow from 50 µs, doubling, up to 200 µs; halve after a stretch over 200 µs, and stop
# polling below 50 µs).
WINDOW_AFTER = [
    (30, 50),  # not polling yet, but polling 50 µs would have caught it: grow
    (30, 50),  # caught: unchanged
    (80, 100),  # longer than the window, within reach: double
    (150, 200),
    (190, 200),  # caught: unchanged
    (200, 200),  # at the longest: stays
    (201, 100),  # out of reach: halve
    (5000, 50),
    (100, 100),
    (1_000_000, 50),
    (1_000_000, 0),  # 25 µs is under grow_start: stop polling
    (1_000_000, 0),
    (120, 50),
]


def test_the_window_follows_haltpolls_rule() -> None:
    window = PollWindow()
    seen = []
    for idle_us, _ in WINDOW_AFTER:
        window.adjust(idle_us * US)
        seen.append((idle_us, round(window.seconds / US)))
    assert seen == WINDOW_AFTER


idles = st.lists(st.floats(min_value=0, max_value=0.01, allow_nan=False), max_size=60)
windows = st.one_of(
    st.just(PollWindow()),
    st.builds(
        lambda longest, share: PollWindow(longest=longest, grow_start=longest * share),
        st.floats(min_value=0, max_value=0.01),
        st.floats(min_value=0.01, max_value=1),
    ),
)


@given(windows, idles)
def test_the_window_stays_within_its_bounds_and_moves_the_right_way(
    window: PollWindow, seq: list[float]
) -> None:
    for idle in seq:
        before = window.seconds
        window.adjust(idle)
        after = window.seconds
        assert after == 0 or window.grow_start <= after <= window.longest
        if idle <= before:
            assert after == before  # caught by polling: nothing to learn
        elif idle <= window.longest:
            assert after > before or after == window.longest  # a wider window would do
        else:
            assert after < before or after == before == 0  # polling would not have caught it


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    reading, writing = socket.socketpair()
    yield reading, writing
    reading.close()
    writing.close()


def _write_later(sock: socket.socket, delay: float) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)
        sock.send(b"x")

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def _select_while_written_later(
    pair: tuple[socket.socket, socket.socket], window: PollWindow
) -> tuple[PollingSelector, list[tuple[selectors.SelectorKey, int]], float]:
    """A blocking select on the pair's reading end while a thread writes to the other
    end 0.2 s later: the selector, what it returned, and the CPU the wait took."""
    reading, writing = pair
    selector = PollingSelector(window)
    selector.register(reading, selectors.EVENT_READ)
    writer = _write_later(writing, 0.2)
    cpu = time.thread_time()
    ready = selector.select(None)
    cpu = time.thread_time() - cpu
    writer.join()
    return selector, ready, cpu


def test_within_the_window_the_selector_polls(pair: tuple[socket.socket, socket.socket]) -> None:
    window = PollWindow(longest=5.0, grow_start=1.0, seconds=5.0)
    selector, ready, cpu = _select_while_written_later(pair, window)
    assert [(key.fileobj, events) for key, events in ready] == [(pair[0], selectors.EVENT_READ)]
    assert cpu > 0.1  # it spun for the 0.2 s rather than sleeping
    assert window.seconds == 5.0  # caught while polling: unchanged
    selector.close()


def test_outside_the_window_it_sleeps_and_then_adjusts(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    window = PollWindow(longest=5.0, grow_start=1.0, seconds=0.0)
    selector, ready, cpu = _select_while_written_later(pair, window)
    assert [key.fileobj for key, _ in ready] == [pair[0]]
    assert cpu < 0.1  # slept
    assert window.seconds == 1.0  # a 0.2 s window would have caught it: grown
    selector.close()


def test_polling_never_outlasts_the_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    reading, _ = pair
    selector = PollingSelector(PollWindow(longest=30.0, grow_start=30.0, seconds=30.0))
    selector.register(reading, selectors.EVENT_READ)
    started = time.monotonic()
    assert selector.select(0.05) == []
    assert selector.select(0) == []
    assert selector.select(-1) == []
    assert time.monotonic() - started < 5  # not the 30 s window
    selector.close()


def test_an_event_already_there_is_returned_without_idling(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reading, writing = pair
    window = PollWindow(longest=1.0, grow_start=0.5, seconds=0.5)
    selector = PollingSelector(window)
    selector.register(reading, selectors.EVENT_READ)
    writing.send(b"x")
    assert [key.fileobj for key, _ in selector.select(None)] == [reading]
    assert [key.fileobj for key, _ in selector.select(0)] == [reading]
    assert window.seconds == 0.5  # caught by the first poll: nothing learnt
    selector.close()


def test_asyncio_runs_on_it() -> None:
    """Streams, timers and a wait with nothing to do, on the loop `serve` runs on."""

    async def exchange() -> list[bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(line.upper())
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for n in range(50):
            writer.write(b"line %d\n" % n)
            answers.append(await reader.readline())
            if n % 10 == 0:
                await asyncio.sleep(0.01)  # long enough to sleep in epoll, and adjust
        writer.close()
        server.close()
        await server.wait_closed()
        return answers

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert isinstance(loop._selector, PollingSelector)  # type: ignore[attr-defined]
        assert runner.run(exchange()) == [b"LINE %d\n" % n for n in range(50)]


def test_with_less_than_two_cpus_the_window_never_opens() -> None:
    for cpus in (0.5, 1.0, 1.9):
        window = poll_window(cpus)
        for idle_us, _ in WINDOW_AFTER:
            window.adjust(idle_us * US)
            assert window.seconds == 0
    assert poll_window(2.0) == PollWindow()


def _write(directory: Path, file_and_text: str) -> None:
    """`_write(d, "cpu.max=max 100000")` writes d/cpu.max."""
    name, _, text = file_and_text.partition("=")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text + "\n")


def test_the_cgroup_quota_is_the_tightest_on_the_way_up(tmp_path: Path) -> None:
    service = tmp_path / "system.slice" / "ses-proxy.service"
    _write(service, "cpu.max=max 100000")
    _write(tmp_path / "system.slice", "cpu.max=150000 100000")
    assert cgroup_cpu_limit("0::/system.slice/ses-proxy.service\n", tmp_path) == 1.5
    _write(service, "cpu.max=50000 100000")
    assert cgroup_cpu_limit("0::/system.slice/ses-proxy.service\n", tmp_path) == 0.5


def test_a_container_sees_its_own_cgroup_as_the_root(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max=25000 100000")
    assert cgroup_cpu_limit("0::/\n", tmp_path) == 0.25
    _write(tmp_path, "cpu.max=max 100000")
    assert cgroup_cpu_limit("0::/\n", tmp_path) is None


def test_cgroup_v1_cpu_controller(tmp_path: Path) -> None:
    pod = tmp_path / "cpu,cpuacct" / "kubepods" / "pod1"
    _write(pod, "cpu.cfs_quota_us=-1")
    _write(pod, "cpu.cfs_period_us=100000")
    text = "12:memory:/kubepods/pod1\n4:cpu,cpuacct:/kubepods/pod1\n1:name=systemd:/x\n"
    assert cgroup_cpu_limit(text, tmp_path) is None
    _write(pod, "cpu.cfs_quota_us=300000")
    assert cgroup_cpu_limit(text, tmp_path) == 3.0


def test_no_quota_to_read_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit("0::/gone\n1:cpu:/gone\n", tmp_path) is None
    _write(tmp_path, "cpu.max=garbage")
    assert cgroup_cpu_limit("0::/\n", tmp_path) is None
    _write(tmp_path, "cpu.max=5000 0")
    assert cgroup_cpu_limit("0::/\n", tmp_path) is None
    assert cgroup_cpu_limit("", tmp_path) is None
    assert cgroup_cpu_limit("not a cgroup line\n", tmp_path) is None
