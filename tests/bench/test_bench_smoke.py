"""A smoke-sized run of the benchmark harness (the real one is `make bench`): the fake
SES, the relay process (and the do-nothing floor) and the load generator work together,
and the fake saw each acknowledged message exactly once."""

from __future__ import annotations

import os

import pytest

from tests.bench import run


def test_a_tiny_benchmark_run_delivers_every_message_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run.main(["--quick", "--driver", "asyncio", "--only", "latency", "floor"])
    table = capsys.readouterr().out
    assert code == 0, table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "1000/1000 once each" in rows["2 KB, 1 session (latency)"], table
    assert "1000/1000 once each" in rows["2 KB, 1 session, do-nothing floor"], table
    assert "a round trip across CPUs" in table  # the VM's wake-up cost, before and after


def test_one_cpu_runs_every_process_on_cpu_0(capsys: pytest.CaptureFixture[str]) -> None:
    before = os.sched_getaffinity(0)
    try:
        code = run.main(["--quick", "--driver", "asyncio", "--one-cpu", "--only", "latency"])
        pinned = os.sched_getaffinity(0)
    finally:
        os.sched_setaffinity(0, before)
    table = capsys.readouterr().out
    assert code == 0, table
    assert pinned == {0}
    assert "all on CPU 0 of" in table
    assert "1000/1000 once each" in table


def test_ses_over_tls_as_in_production(capsys: pytest.CaptureFixture[str]) -> None:
    code = run.main(["--quick", "--driver", "asyncio", "--tls", "--only", "latency", "floor"])
    table = capsys.readouterr().out
    assert code == 0, table
    assert "SES over HTTPS" in table
    assert table.count("1000/1000 once each") == 2, table
