"""`make bench`: the relay against a fast fake SES, under the loads of issue #6.

Every load starts a fresh relay process (tests/bench/relay.py: `ses-proxy serve` plus a
stall monitor) in front of one fake SES process (tests/bench/fake_ses.py), warms it
up, then measures from outside:
- msgs/s: messages acknowledged with 250 per second of wall time;
- CPU: utime + stime of the relay process from /proc (all its threads), per message
  and per MiB of raw message received by the fake SES;
- peak RSS: the relay's VmHWM (for the idle load: VmRSS with every session open);
- p50/p99: MAIL written -> 250 after the dot read (loadgen's clients only);
- stall: the longest time the relay's event loop went without running its monitor
  (not for the one-session latency load: the monitor's 500 wake-ups a second would be
  in the latency measured);
- delivered: the fake SES saw every acknowledged message exactly once.

Each load runs 3 times by default (`--runs N`; `--quick`: once) in rounds, so that a
drift of the machine touches every load alike; every cell of the table is the median
of its runs (figures of one run vary by ±20 %), and the runs' own figures go to
stderr. A load is "once each" only when every run was.

Drivers: Postfix's smtp-source when installed (`apt-get install postfix`), else the
asyncio load generator of loadgen.py; stall and idle loads always use the latter, and
the one-session latency loads loadgen's blocking-socket client.

Run: python -m tests.bench.run [--quick] [--runs N] [--loop asyncio|uvloop]
     [--relay-root DIR] [--latency-ms N] [--max-send-rate R] [--profile DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from proxy.smtp.auth import HASHER
from tests.bench import loadgen

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="GET")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def announcement(process: subprocess.Popen[bytes], what: str) -> list[str]:
    """The words of the first line a helper process prints ("listening PORT ...")."""
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("listening "):
        raise RuntimeError(f"{what} did not start: {line!r}")
    return line.split()


@dataclass(frozen=True)
class Credential:
    key_id: str
    secret: str
    token: str

    @classmethod
    def new(cls) -> Credential:
        return cls(
            "ASIABENCH" + secrets.token_hex(6).upper(),
            secrets.token_urlsafe(30),
            secrets.token_urlsafe(64),
        )


class FakeSesProcess:
    """The fake SES: `url` for control and credentials, `ses_url` for the relay's SES
    requests (https with `tls_dir`, where a test CA and the fake's certificate go)."""

    def __init__(
        self, credential: Credential, latency_ms: float, tls_dir: Path | None, max_send_rate: float
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.bench.fake_ses",
            # "--opt=value": a random secret may begin with "-", which argparse
            # would take for an option of its own.
            f"--key-id={credential.key_id}",
            f"--secret={credential.secret}",
            f"--token={credential.token}",
            f"--latency-ms={latency_ms}",
            f"--max-send-rate={max_send_rate}",
        ]
        self.ca_bundle: Path | None = None
        if tls_dir is not None:
            import trustme

            ca = trustme.CA()
            self.ca_bundle = tls_dir / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_bundle))
            issued = ca.issue_cert(HOST)
            issued.private_key_pem.write_to_path(str(tls_dir / "key.pem"))
            issued.cert_chain_pems[0].write_to_path(str(tls_dir / "cert.pem"))
            for pem in issued.cert_chain_pems[1:]:
                pem.write_to_path(str(tls_dir / "cert.pem"), append=True)
            command += [f"--tls-cert={tls_dir / 'cert.pem'}", f"--tls-key={tls_dir / 'key.pem'}"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
        )
        announced = announcement(self.process, "fake SES")  # listening PORT [tls PORT]
        self.url = f"http://{HOST}:{announced[1]}"
        self.ses_url = f"https://{HOST}:{announced[3]}" if tls_dir is not None else self.url

    def ca_env(self) -> dict[str, str]:
        """With TLS, the test CA for the relay (AWS_CA_BUNDLE, as an operator would point
        it at a private CA) and the floor."""
        return {} if self.ca_bundle is None else {"AWS_CA_BUNDLE": str(self.ca_bundle)}

    def stats(self) -> dict[str, Any]:
        _, body = http_get(self.url + "/__stats")
        result: dict[str, Any] = json.loads(body)
        return result

    def reset(self) -> None:
        http_get(self.url + "/__reset")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Measured:
    """A process the load is sent to: its SMTP port, CPU and memory from /proc."""

    process: subprocess.Popen[bytes]
    smtp_port: int

    def cpu_split(self) -> tuple[float, float]:
        """The process's CPU seconds so far: (user, system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def memory_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def restart_stall_measure(self) -> None:
        """Only the relay has a stall monitor."""

    def max_stall_ms(self) -> float:
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Floor(Measured):
    """tests/bench/floor.py: an SMTP responder that does nothing but post to the fake."""

    def __init__(self, fake: FakeSesProcess, credential: Credential, relay_root: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.floor", "--ses-url", fake.ses_url],
            stdout=subprocess.PIPE,
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONPATH": f"{relay_root}:{REPO}",
                "AWS_ACCESS_KEY_ID": credential.key_id,
                "AWS_SECRET_ACCESS_KEY": credential.secret,
                "AWS_SESSION_TOKEN": credential.token,
                **fake.ca_env(),
            },
        )
        self.smtp_port = int(announcement(self.process, "floor")[1])


class Relay(Measured):
    def __init__(
        self,
        workdir: Path,
        fake: FakeSesProcess,
        loop: str,
        relay_root: Path,
        monitor: bool = True,
        auth: bool = False,
        api: str = "v1",
    ) -> None:
        self.monitor = monitor
        self.smtp_port = free_port()
        self.metrics_port = free_port()
        self.stats_path = workdir / "loop.json"
        config: dict[str, Any] = {
            "smtp": {
                "host": HOST,
                "port": self.smtp_port,
                "hostname": "relay.bench",
                "max_connections": 1200,
            },
            "policy": {"allowed_senders": [loadgen.SENDER], "allowed_recipients": ["*"]},
            "delivery": {"backend": "ses"},
            "ses": {
                "region": "eu-west-3",
                "endpoint_url": fake.ses_url,
                "allow_insecure_endpoint": fake.ca_bundle is None,
                "api": api,
            },
            "metrics": {"host": HOST, "port": self.metrics_port},
            "logging": {"format": "json", "level": "info"},
        }
        if auth:
            # Every session logs in as a client (loopback may AUTH in clear).
            config["smtp"]["auth"] = "required"
            config["clients"] = [
                {
                    "name": "bench",
                    "username": loadgen.USERNAME,
                    "password_hash": HASHER.hash(loadgen.PASSWORD),
                    "allowed_senders": [loadgen.SENDER],
                }
            ]
        config_path = workdir / "relay.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "SES_PROXY_"))
        }
        env.update(
            PYTHONPATH=f"{relay_root}:{REPO}",
            # A refreshable credential, as from a container or instance role: botocore
            # checks its expiry at every use, which static keys would skip.
            AWS_CONTAINER_CREDENTIALS_FULL_URI=f"{fake.url}/__credentials",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            AWS_EC2_METADATA_DISABLED="true",
            BENCH_LOOP_STATS=str(self.stats_path) if monitor else "",
            **fake.ca_env(),
        )
        self.log_path = workdir / "relay.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.relay",
                "--loop",
                loop,
                "serve",
                "-c",
                str(config_path),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited: {(workdir / 'relay.log').read_text()}")
            with contextlib.suppress(OSError):
                if http_get(f"http://{HOST}:{self.metrics_port}/readyz")[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("relay not ready")

    def restart_stall_measure(self) -> None:
        if self.monitor:  # without its handler, SIGUSR1 would end the relay
            self.process.send_signal(signal.SIGUSR1)

    def max_stall_ms(self) -> float:
        if not self.monitor:
            return float("nan")
        time.sleep(0.1)  # the last loop turns of the load finish
        self.stats_path.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not self.stats_path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            stats = json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return float("nan")
        print(f"  loop: {stats}", file=sys.stderr)
        return float(stats["max_stall_ms"])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        if os.environ.get("BENCH_SLOW_CALLBACK_MS"):  # see tests/bench/relay.py
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "Executing" in line:
                    print(f"  slow: {line[:600]}", file=sys.stderr)


_BIG_MEAN = 16 * 1024


@dataclass
class Row:
    name: str
    messages: int
    seconds: float
    cpu_ms: float
    raw_bytes: int
    rss_mib: float
    latencies: list[float]
    stall_ms: float
    delivered: str

    def figures(self) -> dict[str, float | None]:
        """The numeric cells, None where the load has no such figure."""

        def quantile(q: float) -> float | None:
            if not self.latencies:
                return None
            ordered = sorted(self.latencies)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

        # Small messages are judged per message, loads with big ones per MiB.
        big = bool(self.messages) and self.raw_bytes / self.messages >= _BIG_MEAN
        return {
            "msgs": float(self.messages),
            "msgs/s": self.messages / self.seconds if self.messages and self.seconds else None,
            "CPU ms/msg": self.cpu_ms / self.messages if self.messages and not big else None,
            "CPU ms/MiB": self.cpu_ms / (self.raw_bytes / MIB) if big else None,
            "peak RSS MiB": self.rss_mib,
            "p50 ms": quantile(0.5),
            "p99 ms": quantile(0.99),
            "max stall ms": None if math.isnan(self.stall_ms) else self.stall_ms,
        }


_FORMATS = {
    "msgs": "{:,.0f}",
    "msgs/s": "{:,.0f}",
    "CPU ms/msg": "{:.3f}",
    "CPU ms/MiB": "{:.1f}",
    "peak RSS MiB": "{:.0f}",
    "p50 ms": "{:.2f}",
    "p99 ms": "{:.2f}",
    "max stall ms": "{:.1f}",
}


def cells(runs: list[Row]) -> list[str]:
    """One line of the table: each figure the median of the runs'."""
    figures = [run.figures() for run in runs]
    line = [runs[0].name]
    for key, form in _FORMATS.items():
        values = [value for f in figures if (value := f[key]) is not None]
        line.append(form.format(statistics.median(values)) if values else "-")
    notes = sorted({run.delivered for run in runs})
    if len(notes) > 1 and all(note.endswith("once each") for note in notes):
        notes = [f"once each, {len(runs)} runs"]
    line.append("; ".join(notes))
    return line


HEADERS = [
    "load",
    "msgs",
    "msgs/s",
    "CPU ms/msg",
    "CPU ms/MiB",
    "peak RSS MiB",
    "p50 ms",
    "p99 ms",
    "max stall ms",
    "delivered",
]


def table(rows: list[list[str]]) -> str:
    cells = [HEADERS, *rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def calibrate() -> float:
    """CPU ms of a fixed pure-Python workload (the median of 5): how fast this machine
    runs the interpreter right now, to set figures of different hours side by side."""
    samples = []
    for _ in range(5):
        started = time.process_time()
        table: dict[str, int] = {}
        for number in range(100_000):
            key = f"k{number % 5000}"
            table[key] = table.get(key, 0) + len(json.dumps([number, key]))
        samples.append((time.process_time() - started) * 1000)
    return statistics.median(samples)


def wake_up_cost(round_trips: int = 5000) -> tuple[float, float]:
    """µs per round trip between two processes on different CPUs, each sleeping in a
    blocking read until the other's byte wakes it, and the µs of CPU a round trip costs
    this side. What the VM charges for waking a process on another CPU: the relay pays
    it on every reply it sends, and it moves by the hour more than `calibrate` does."""
    cpus = sorted(os.sched_getaffinity(0))
    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:
        try:
            ours.close()
            os.sched_setaffinity(0, {cpus[-1]})
            while data := theirs.recv(1):
                theirs.sendall(data)
        finally:
            os._exit(0)
    theirs.close()
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    try:
        for _ in range(200):  # both sides running and settled
            ours.sendall(b"x")
            ours.recv(1)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(round_trips):
            ours.sendall(b"x")
            ours.recv(1)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        os.sched_setaffinity(0, before)
        ours.close()
        os.waitpid(child, 0)
    return wall / round_trips * 1e6, cpu / round_trips * 1e6


def wake(cost: tuple[float, float]) -> str:
    return f"a round trip across CPUs {cost[0]:.0f} µs ({cost[1]:.0f} µs of CPU each side)"


def delivered(fake: dict[str, Any], expected: int) -> str:
    if fake["bad_signatures"] or fake["errors"]:
        return f"BAD: {fake['bad_signatures']} signatures, {fake['errors']} errors"
    if fake["messages"] == expected and fake["distinct"] == expected:
        return f"{expected}/{expected} once each"
    lost = expected - fake["distinct"]
    return f"LOST {lost}, DOUBLED {fake['duplicates']} (saw {fake['messages']} of {expected})"


def pin_to_first_cpu(pid: int) -> None:
    """Every thread of a process on CPU 0 (threads it starts later inherit it)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {0})


@dataclass
class Bench:
    fake: FakeSesProcess
    credential: Credential
    loop: str
    relay_root: Path
    workdir: Path
    quick: bool
    driver: str
    profile: Path | None = None
    api: str = "v1"  # ses.api of every relay: --api
    round: int = 1  # which of the runs is going: names its work directory and profile

    @contextlib.contextmanager
    def relay(
        self,
        name: str,
        floor: bool = False,
        monitor: bool = True,
        auth: bool = False,
        api: str | None = None,
    ) -> Iterator[Measured]:
        """The relay (or, with `floor`, tests/bench/floor.py), warmed up."""
        slug = "".join(c if c.isalnum() else "-" for c in name)
        workdir = self.workdir / f"{slug}-{self.round}"
        workdir.mkdir()
        relay: Measured
        if floor:
            relay = Floor(self.fake, self.credential, self.relay_root)
        else:
            relay = Relay(
                workdir, self.fake, self.loop, self.relay_root, monitor, auth, api or self.api
            )
        try:
            # Warm up (imports, connection pool), then measure from a clean slate.
            result = asyncio.run(
                loadgen.stream(HOST, relay.smtp_port, 4, 25, 2048, "warm", login=auth)
            )
            if result.failed:
                log_path = workdir / "relay.log"
                log = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
                raise RuntimeError(f"warm-up failed: {result.errors[:3]}\n{log}")
            self.fake.reset()
            relay.restart_stall_measure()
            yield relay
        finally:
            relay.stop()

    @contextlib.contextmanager
    def profiled(self, name: str, relay: Measured) -> Iterator[None]:
        """With --profile: py-spy samples the relay (collapsed stacks, for flame graphs)."""
        if self.profile is None:
            yield
            return
        self.profile.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() else "-" for c in name)
        spy = subprocess.Popen(
            [
                # The venv's own when the venv is not on PATH (`.venv/bin/python -m ...`).
                shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "raw",
                "--rate",
                "500",
                "--threads",
                "-o",
                str(self.profile / f"{slug}-{self.round}.txt"),
                "-p",
                str(relay.process.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)

    def n(self, full: int) -> int:
        return max(1, full // 10) if self.quick else full

    def measure(
        self,
        name: str,
        run: Callable[[Measured], tuple[int, list[float]]],
        floor: bool = False,
        monitor: bool = True,
        auth: bool = False,
        api: str | None = None,
    ) -> Row:
        with self.relay(name, floor, monitor, auth, api) as relay, self.profiled(name, relay):
            (user0, system0), t0 = relay.cpu_split(), time.perf_counter()
            # The load generator runs in this process: its own collector's passes
            # would show up as the relay's latency. Collected between loads instead.
            gc.disable()
            try:
                expected, latencies = run(relay)
            finally:
                gc.enable()
                gc.collect()
            seconds = time.perf_counter() - t0
            user, system = relay.cpu_split()
            cpu_ms = (user - user0 + system - system0) * 1000
            if latencies:
                ordered = sorted(latencies)
                last = len(ordered) - 1
                spread = ", ".join(
                    f"p{q:g} {ordered[min(last, int(q / 100 * len(ordered)))] * 1000:.2f}"
                    for q in (50, 75, 90, 95, 98, 99, 99.5, 99.9)
                )
                print(f"  latency ms: {spread}, max {ordered[-1] * 1000:.2f}", file=sys.stderr)
            user_ms, system_ms = (user - user0) * 1000, (system - system0) * 1000
            print(f"  cpu: user {user_ms:.0f} ms, system {system_ms:.0f} ms", file=sys.stderr)
            stall = relay.max_stall_ms()
            fake = self.fake.stats()
            return Row(
                name,
                fake["messages"],
                seconds,
                cpu_ms,
                fake["raw_bytes"],
                relay.memory_kib("VmHWM") / 1024,
                latencies,
                stall,
                delivered(fake, expected),
            )

    def smtp_source(
        self, relay: Measured, sessions: int, messages: int, size: int, reuse: bool
    ) -> tuple[int, list[float]]:
        command = [
            "smtp-source",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-N",
            "-f",
            loadgen.SENDER,
            "-t",
            "user@example.net",
            "-M",
            "bench.test",
        ]
        if reuse:
            command.append("-d")
        command.append(f"{HOST}:{relay.smtp_port}")
        subprocess.run(command, check=True, timeout=600)
        return messages, []

    def asyncio_stream(
        self,
        relay: Measured,
        sessions: int,
        messages: int,
        size: int,
        reuse: bool,
        tag: str,
        login: bool = False,
    ) -> tuple[int, list[float]]:
        # The tag goes into recipient addresses: a load's name has spaces and commas.
        tag = "".join(c if c.isalnum() else "-" for c in tag)
        result = asyncio.run(
            loadgen.stream(
                HOST,
                relay.smtp_port,
                sessions,
                messages // sessions,
                size,
                tag,
                new_connection=not reuse,
                login=login,
            )
        )
        if result.failed:
            print(f"  {result.failed} failed: {result.errors[:3]}", file=sys.stderr)
        return result.sent, result.latencies

    def throughput(self, name: str, sessions: int, messages: int, size: int, reuse: bool) -> Row:
        def run(relay: Measured) -> tuple[int, list[float]]:
            if self.driver == "smtp-source":
                return self.smtp_source(relay, sessions, messages, size, reuse)
            return self.asyncio_stream(relay, sessions, messages, size, reuse, name)

        return self.measure(name, run)

    def authenticated(self, name: str, sessions: int, messages: int) -> Row:
        """A new connection and an AUTH PLAIN for every message (issue 15: an app that
        logs in per message pays the argon2 hash once, then the remembered HMAC)."""

        def run(relay: Measured) -> tuple[int, list[float]]:
            return self.asyncio_stream(relay, sessions, messages, 2048, False, name, login=True)

        return self.measure(name, run, auth=True)

    def one_session(self, relay: Measured, tag: str) -> tuple[int, list[float]]:
        result = loadgen.one_session(HOST, relay.smtp_port, self.n(10000), 2048, tag)
        if result.failed:
            print(f"  {result.failed} failed: {result.errors[:3]}", file=sys.stderr)
        return result.sent, result.latencies

    def latency(self) -> Row:
        def run(relay: Measured) -> tuple[int, list[float]]:
            return self.one_session(relay, "lat")

        return self.measure("2 KB, 1 session (latency)", run, monitor=False)

    def floor(self) -> Row:
        """The latency load against a responder that does nothing but post to the fake
        SES: the machine's and the harness's share of the latency."""

        def run(floor: Measured) -> tuple[int, list[float]]:
            return self.one_session(floor, "floor")

        return self.measure("2 KB, 1 session, do-nothing floor", run, floor=True)

    def stall(self) -> Row:
        def run(relay: Measured) -> tuple[int, list[float]]:
            big, small = asyncio.run(
                loadgen.beside(
                    HOST, relay.smtp_port, 10_000_000, 1 if self.quick else 3, 4, "stall"
                )
            )
            if big.failed or small.failed:
                print(f"  failed: {(big.errors + small.errors)[:3]}", file=sys.stderr)
            return big.sent + small.sent, small.latencies

        return self.measure("10 MB beside 2 KB x4 (stall)", run)

    def stall_40mb(self) -> Row:
        """Issue 16 (ses.api v2): a 40 MB message beside 4 sessions of 2 KB; the loop's
        longest stall should stay under 20 ms."""

        def run(relay: Measured) -> tuple[int, list[float]]:
            big, small = asyncio.run(
                loadgen.beside(HOST, relay.smtp_port, 40 * 1024 * 1024, 1, 4, "stall40")
            )
            if big.failed or small.failed:
                print(f"  failed: {(big.errors + small.errors)[:3]}", file=sys.stderr)
            return big.sent + small.sent, small.latencies

        return self.measure("40 MB beside 2 KB x4 (stall, v2)", run, api="v2")

    def memory(self) -> Row:
        """Issue 16: 20 sessions each send 10 MB at once with the default
        max_inflight_bytes: the peak RSS stays within the relay's base plus the budget
        plus 10 %, and every message is a 250 or a 452, none lost, none sent twice."""
        sessions, size = 20, 10 * 1024 * 1024
        budget = 256 * 1024 * 1024
        with self.relay("memory") as relay:
            base = relay.memory_kib("VmHWM") / 1024
            result = asyncio.run(loadgen.stream(HOST, relay.smtp_port, sessions, 1, size, "memory"))
            peak = relay.memory_kib("VmHWM") / 1024
            stall = relay.max_stall_ms()
            fake = self.fake.stats()
        no_room = sum(error.startswith("452 4.3.1") for error in result.errors)
        other = result.failed - no_room
        bound = base + budget / 2**20 * 1.1
        verdict = "within" if peak <= bound else "OVER"
        print(
            f"  memory: base {base:.0f} MiB, peak {peak:.0f} MiB, bound {bound:.0f} MiB "
            f"({verdict}); {result.sent} sent, {no_room} x 452, {other} other failures, "
            f"{fake['messages']} at SES",
            file=sys.stderr,
        )
        once = "each once" if fake["messages"] == result.sent else "NOT each once"
        note = f"{result.sent} x 250 ({once}), {no_room} x 452, {other} other; RSS {verdict}"
        return Row(
            f"10 MB x {sessions} at once (memory)",
            fake["messages"],
            0.0,
            0.0,
            fake["raw_bytes"],
            peak,
            [],
            stall,
            note,
        )

    def idle(self) -> Row:
        count = 1000
        with self.relay("idle") as relay:
            before = relay.memory_kib("VmRSS")

            async def hold() -> tuple[int, int]:
                clients = await loadgen.open_idle(HOST, relay.smtp_port, count)
                await asyncio.sleep(1.0)
                rss = relay.memory_kib("VmRSS")
                await loadgen.close_all(clients)
                return len(clients), rss

            opened, rss = asyncio.run(hold())
            stall = relay.max_stall_ms()
            print(f"  idle: +{(rss - before) / 1024:.0f} MiB with all open", file=sys.stderr)
            note = f"{opened}/{count} open"
            return Row(f"{count:,} idle connections", 0, 0.0, 0.0, 0, rss / 1024, [], stall, note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ses-proxy benchmark")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages, one run")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per load, the table shows medians (3)"
    )
    parser.add_argument(
        "--loop",
        choices=["asyncio", "asyncio-no-poll", "uvloop"],
        default="asyncio",
        help="the relay's loop: asyncio with proxy/eventloop.py's polling selector, plain "
        "asyncio, or uvloop",
    )
    parser.add_argument(
        "--relay-root",
        type=Path,
        default=REPO,
        help="the tree whose proxy/ package runs (to compare versions)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added by the fake SES")
    parser.add_argument(
        "--max-send-rate",
        type=float,
        default=1e6,
        help="the fake's MaxSendRate, which the relay paces to (1000: compare.sh's fake)",
    )
    parser.add_argument(
        "--api", choices=["v1", "v2"], default=None, help="ses.api (default v1; stall40 is v2)"
    )
    parser.add_argument("--driver", choices=["auto", "smtp-source", "asyncio"], default="auto")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write py-spy collapsed stacks of the relay per load here",
    )
    parser.add_argument(
        "--one-cpu",
        action="store_true",
        help="run the relay, the fake SES and the load generator all on CPU 0: latency"
        " without this VM's wake-ups of the other CPU (diagnosis, not the figure)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="SES over HTTPS, as in production (the fake serves TLS with a test CA)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="reused new auth 1mib latency stall stall40 memory idle floor",
    )
    args = parser.parse_args(argv)
    driver = args.driver
    if driver == "auto":
        driver = "smtp-source" if shutil.which("smtp-source") else "asyncio"
    speed_before, wake_before = calibrate(), wake_up_cost()
    credential = Credential.new()
    with tempfile.TemporaryDirectory(prefix="ses-proxy-bench-") as workdir:
        tls_dir = Path(workdir) / "tls" if args.tls else None
        if tls_dir is not None:
            tls_dir.mkdir()
        fake = FakeSesProcess(credential, args.latency_ms, tls_dir, args.max_send_rate)
        bench = Bench(
            fake,
            credential,
            args.loop,
            args.relay_root.resolve(),
            Path(workdir),
            args.quick,
            driver,
            args.profile,
            args.api or "v1",
        )
        if args.one_cpu:
            # The relays and floors start later, from this process: they inherit CPU 0
            # from the start, so the relay's loop sees one CPU and does not poll.
            pin_to_first_cpu(os.getpid())
            pin_to_first_cpu(fake.process.pid)
        loads: dict[str, Callable[[], Row]] = {
            "reused": lambda: bench.throughput(
                "2 KB, 20 sessions, reused", 20, bench.n(10000), 2048, True
            ),
            "new": lambda: bench.throughput(
                "2 KB, 20 sessions, new conn/msg", 20, bench.n(5000), 2048, False
            ),
            "auth": lambda: bench.authenticated(
                "2 KB, 20 sessions, new conn + AUTH/msg", 20, bench.n(5000)
            ),
            "1mib": lambda: bench.throughput("1 MiB, 4 sessions", 4, bench.n(200), MIB, True),
            "latency": bench.latency,
            "stall": bench.stall,
            "memory": bench.memory,
            "stall40": bench.stall_40mb,
            "idle": bench.idle,
            "floor": bench.floor,
        }
        runs = args.runs if args.runs is not None else (1 if args.quick else 3)
        chosen = [name for name in loads if args.only is None or name in args.only]
        results: dict[str, list[Row]] = {name: [] for name in chosen}
        try:
            for number in range(1, runs + 1):
                bench.round = number
                for name in chosen:
                    print(f"run {number}/{runs}: {name} ...", file=sys.stderr, flush=True)
                    results[name].append(loads[name]())
        finally:
            fake.stop()
    rows = [row for name in chosen for row in results[name]]
    if runs > 1:
        print("\nevery run:", file=sys.stderr)
        print(table([cells([row]) for row in rows]), file=sys.stderr)
    print(
        f"\nses-proxy benchmark: driver {driver}, loop {args.loop}, fake SES latency "
        f"{args.latency_ms} ms, MaxSendRate {args.max_send_rate:g}, "
        f"SES over {'HTTPS' if args.tls else 'plain HTTP'}, "
        f"{'all on CPU 0 of ' if args.one_cpu else ''}"
        f"{os.cpu_count()} CPUs, relay {args.relay_root}, "
        f"median of {runs} run{'s' if runs > 1 else ''}; machine speed: "
        f"{speed_before:.0f} ms before, {calibrate():.0f} ms after (a fixed workload, "
        f"lower is faster); {wake(wake_before)} before, {wake(wake_up_cost())} after"
    )
    print(table([cells(results[name]) for name in chosen if results[name]]))
    ok = all("once each" in row.delivered or "open" in row.delivered for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
