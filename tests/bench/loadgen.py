"""An asyncio SMTP load generator for the benchmark (the driver when smtp-source is
absent, and the only one for latency, stall and idle-connection loads).

Each message has its own recipient (`r<tag>-<n>@example.net`): the fake SES counts
recipients, so a lost or doubled message shows. Latency is measured from writing
MAIL to reading the 250 after the dot, one command at a time (no pipelining).

The one-session latency load uses `one_session`, a client on a blocking socket: an
asyncio client's own event-loop turns (four per message) were a third of the
latency it measured against a do-nothing responder, and its wake-ups part of the tail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import socket
import time
from dataclasses import dataclass, field

SENDER = "noreply@example.com"
# The client the AUTH load logs in as (tests/bench/run.py configures it).
USERNAME = "bench"
PASSWORD = "bench password"
_LINE = b"x" * 76 + b"\r\n"


def message(size: int, tag: str) -> bytes:
    """A message of about `size` octets, dot-stuffed and terminated, ready for DATA."""
    header = (
        f"From: Bench <{SENDER}>\r\nTo: <bench@example.net>\r\nSubject: bench {tag}\r\n"
        f"Message-ID: <{tag}@bench.test>\r\n\r\n"
    ).encode()
    lines = max(1, (size - len(header)) // len(_LINE))
    return header + _LINE * lines + b".\r\n"


class SmtpError(Exception):
    pass


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, login: bool = False) -> Client:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        client = cls(reader, writer)
        await client.expect(b"220")
        writer.write(b"EHLO bench.test\r\n")
        await client.expect(b"250")
        if login:
            plain = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode())
            writer.write(b"AUTH PLAIN " + plain + b"\r\n")
            await client.expect(b"235")
        return client

    async def expect(self, code: bytes) -> None:
        while True:
            line = await self.reader.readline()
            if not line:
                raise SmtpError("connection closed")
            if line[3:4] != b"-":
                break
        if not line.startswith(code):
            raise SmtpError(line.decode(errors="replace").strip())

    async def send(self, recipient: str, data: bytes) -> float:
        started = time.perf_counter()
        self.writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
        await self.expect(b"250")
        self.writer.write(f"RCPT TO:<{recipient}>\r\n".encode())
        await self.expect(b"250")
        self.writer.write(b"DATA\r\n")
        await self.expect(b"354")
        self.writer.write(data)
        await self.expect(b"250")
        return time.perf_counter() - started

    async def quit(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await self.expect(b"221")
        except (SmtpError, OSError):
            pass
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class BlockingClient:
    """One session on a blocking socket, the cheapest client to measure latency with."""

    def __init__(self, host: str, port: int) -> None:
        self.socket = socket.create_connection((host, port), timeout=30)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.expect(b"220")
        self.socket.sendall(b"EHLO bench.test\r\n")
        self.expect(b"250")

    def expect(self, code: bytes) -> None:
        while True:
            end = self.buffer.find(b"\r\n")
            while end < 0:
                received = self.socket.recv(65536)
                if not received:
                    raise SmtpError("connection closed")
                self.buffer += received
                end = self.buffer.find(b"\r\n")
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            if line[3:4] != b"-":
                break
        if not line.startswith(code):
            raise SmtpError(line.decode(errors="replace").strip())

    def send(self, recipient: str, data: bytes) -> float:
        started = time.perf_counter()
        self.socket.sendall(f"MAIL FROM:<{SENDER}>\r\n".encode())
        self.expect(b"250")
        self.socket.sendall(f"RCPT TO:<{recipient}>\r\n".encode())
        self.expect(b"250")
        self.socket.sendall(b"DATA\r\n")
        self.expect(b"354")
        self.socket.sendall(data)
        self.expect(b"250")
        return time.perf_counter() - started

    def quit(self) -> None:
        with contextlib.suppress(SmtpError, OSError):
            self.socket.sendall(b"QUIT\r\n")
            self.expect(b"221")
        self.socket.close()


@dataclass
class Result:
    sent: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw_bytes: int = 0

    def acknowledged(self, latency: float, data: bytes) -> None:
        self.latencies.append(latency)
        self.sent += 1
        self.raw_bytes += len(data)

    def refused(self, error: SmtpError) -> None:
        self.failed += 1
        self.errors.append(str(error))


async def stream(
    host: str,
    port: int,
    sessions: int,
    per_session: int,
    size: int,
    tag: str,
    new_connection: bool = False,
    login: bool = False,
) -> Result:
    """`sessions` clients, each sending `per_session` messages (`login`: after AUTH)."""
    result = Result()
    counter = itertools.count()

    async def one_session(index: int) -> None:
        client = None
        try:
            for _ in range(per_session):
                if client is None:
                    client = await Client.connect(host, port, login)
                n = next(counter)
                data = message(size, f"{tag}-{n}")
                try:
                    result.acknowledged(await client.send(f"r{tag}-{n}@example.net", data), data)
                except SmtpError as error:
                    result.refused(error)
                if new_connection:
                    await client.quit()
                    client = None
        finally:
            if client is not None:
                await client.quit()

    await asyncio.gather(*(one_session(i) for i in range(sessions)))
    return result


def one_session(host: str, port: int, count: int, size: int, tag: str) -> Result:
    """`count` messages, one after the other, in one session on a blocking socket."""
    result = Result()
    client = BlockingClient(host, port)
    try:
        for n in range(count):
            data = message(size, f"{tag}-{n}")
            try:
                result.acknowledged(client.send(f"r{tag}-{n}@example.net", data), data)
            except SmtpError as error:
                result.refused(error)
    finally:
        client.quit()
    return result


async def beside(
    host: str, port: int, big_size: int, big_count: int, small_sessions: int, tag: str
) -> tuple[Result, Result]:
    """`big_count` big messages one after the other, while `small_sessions` clients send
    2 KB messages until the big ones are through: (big, small)."""
    small = Result()
    big = Result()
    done = asyncio.Event()
    counter = itertools.count()

    async def small_session() -> None:
        client = await Client.connect(host, port)
        try:
            while not done.is_set():
                n = next(counter)
                data = message(2048, f"{tag}-s{n}")
                try:
                    small.acknowledged(await client.send(f"r{tag}-s{n}@example.net", data), data)
                except SmtpError as error:
                    small.refused(error)
        finally:
            await client.quit()

    async def big_session() -> None:
        await asyncio.sleep(0.2)  # let the small ones get going
        client = await Client.connect(host, port)
        try:
            for n in range(big_count):
                data = message(big_size, f"{tag}-b{n}")
                try:
                    big.acknowledged(await client.send(f"r{tag}-b{n}@example.net", data), data)
                except SmtpError as error:
                    big.refused(error)
                await asyncio.sleep(0.1)
        finally:
            await client.quit()
            done.set()

    await asyncio.gather(big_session(), *(small_session() for _ in range(small_sessions)))
    return big, small


async def open_idle(host: str, port: int, count: int) -> list[Client]:
    """Open `count` sessions (banner + EHLO) and leave them idle."""
    clients: list[Client] = []
    gate = asyncio.Semaphore(100)

    async def open_one() -> None:
        async with gate:
            clients.append(await Client.connect(host, port))

    await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
    return clients


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(client.quit() for client in clients))
