"""HTTP/1.1 keep-alive to the SES endpoint for the lean SendRawEmail, on asyncio's protocol API.

Going through the aiobotocore client's HTTP session cost nearly a third of a small
message's CPU (`make bench`): botocore's request and response objects, header maps
built and rebuilt, a proxy lookup per call, and aiohttp's general client under it.
One endpoint and one kind of request need far less: the request is one buffer
(headers and body, or the headers and the body in 256 KiB steps for a big one), the
answer is a status, a few headers and a small XML body read with `bytes.find`.

What stays as botocore does it, resolved once when the transport is built:
- the CA bundle: the session's `ca_bundle` (`AWS_CA_BUNDLE` or the AWS config file),
  else `REQUESTS_CA_BUNDLE`, else botocore's own; the host name is checked;
- the timeouts: `connect_timeout_seconds` to connect (and finish TLS),
  `read_timeout_seconds` for the answer once the request is written;
- the pool: up to `pool_size` connections, idle ones reused newest first and closed
  after `IDLE_SECONDS` (before SES's own idle limit, so that a reused connection is
  rarely one SES is closing). A pooled connection is looked at before it is reused:
  one the server has closed (or written to out of turn) since the loop last read it is
  dropped and the request goes on another, before any byte of it is written. Nothing
  that may have reached SES is sent again: that could send a mail twice.

A proxy for the endpoint (HTTPS_PROXY and NO_PROXY, as botocore reads them) is not
this module's: `proxy_for` tells, and the lean path then sends through the aiobotocore
client's HTTP session, which knows proxies.

Every failure to get an answer (refused, reset, closed early, timed out, TLS refused,
an answer that is not HTTP) raises TransportError: nothing says SES did not get the
request, so the message is deferred (451), never acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import select
import ssl
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from botocore.httpsession import create_urllib3_context, get_cert_path
from botocore.utils import get_environ_proxies

IDLE_SECONDS: Final = 15.0  # aiohttp's keep-alive default, which aiobotocore used
WRITE_STEP: Final = 256 * 1024
_MAX_HEAD: Final = 64 * 1024
_MAX_BODY: Final = 16 * 1024 * 1024  # SES's answers are a few hundred octets
# Headers that say where the answer ends: given twice, which one to believe is a guess
# (and a way to smuggle an answer), so the answer is refused.
_FRAMING: Final = ("content-length", "transfer-encoding", "connection")


class TransportError(Exception):
    """No (usable) answer from SES: the request may or may not have been processed."""


def proxy_for(url: str) -> str | None:
    """The proxy botocore would use for `url` (from the environment), if any."""
    return get_environ_proxies(url).get(urlsplit(url).scheme)


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The TLS context botocore builds for the session's ca_bundle setting (a path, or
    None: REQUESTS_CA_BUNDLE, else botocore's default bundle). Certificates are always
    verified: the relay has no setting that turns verification off."""
    verify: bool | str = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or True
    context: ssl.SSLContext = create_urllib3_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    ca_certs = get_cert_path(verify)  # type: ignore[arg-type]  # stubs say bool; str is a path
    if ca_certs:
        context.load_verify_locations(ca_certs)
    return context


class _Answer:
    """The parts of one HTTP answer, filled in as bytes arrive."""

    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.keep_alive = True


class _Connection(asyncio.Protocol):
    """One connection to the endpoint: one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Answer] | None = None
        self._answer: _Answer | None = None
        self._need = -1  # octets of body still expected once the head is read; -1: head
        self._chunked = False
        self._chunks: list[bytes] = []
        self._writable: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: an answer out of turn ends the connection
            self._fail(TransportError("SES sent data with no request pending"))
            return
        self._buffer += data
        try:
            self._parse()
        except TransportError as error:
            self._fail(error)

    def eof_received(self) -> bool:
        self._fail(TransportError("SES closed the connection before answering"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        detail = f": {exc}" if exc is not None else ""
        self._fail(TransportError(f"connection to SES lost{detail}"))
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # the exchange

    async def exchange(self, request: bytes, body: bytes, read_timeout: float) -> _Answer:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._answer = _Answer()
        self._need = -1
        self._buffer.clear()
        transport = self.transport
        if len(body) <= WRITE_STEP:
            transport.write(request + body)
        else:
            # A big body goes in steps, waiting whenever the socket's buffer is full:
            # one write of 14 MB would copy most of it into asyncio's buffer at once.
            transport.write(request)
            view = memoryview(body)
            for start in range(0, len(body), WRITE_STEP):
                if self._writable is not None:
                    try:
                        async with asyncio.timeout(read_timeout):
                            await self._writable
                    except TimeoutError:
                        self._timed_out(read_timeout)
                        break
                if self.closed:
                    break
                transport.write(view[start : start + WRITE_STEP])
        timer = loop.call_later(read_timeout, self._timed_out, read_timeout)
        try:
            answer: _Answer = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return answer

    def _timed_out(self, seconds: float) -> None:
        self._fail(TransportError(f"no answer from SES within {seconds:g} s"))

    def _fail(self, error: TransportError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def stale(self) -> bool:
        """Closed, or octets (a FIN, a reset, data out of turn) wait in its socket
        that the loop has not read yet: not to be written to."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return True
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLRDHUP)
        return bool(poller.poll(0))

    def _parse(self) -> None:
        answer = self._answer
        assert answer is not None
        while True:
            if self._need < 0:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > _MAX_HEAD:
                        raise TransportError("SES's answer has an over-long head")
                    return
                head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
                del self._buffer[: end + 4]
                self._read_head(answer, head)
                if 100 <= answer.status < 200:  # an interim answer: the real one follows
                    self._need = -1  # its head, not a body, comes next
                    continue
            if self._chunked:
                if not self._read_chunks(answer):
                    return
            else:
                if len(self._buffer) < self._need:
                    return
                answer.body = bytes(self._buffer[: self._need])
                del self._buffer[: self._need]
            if self._buffer:
                answer.keep_alive = False  # octets after the answer: not to be trusted
            # Detached at once: octets that come before `post` resumes are out of turn
            # (they end the connection) and cannot overwrite this answer.
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(answer)
            return

    def _read_head(self, answer: _Answer, head: list[str]) -> None:
        version, _, rest = head[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
            raise TransportError("SES's answer is not HTTP/1.x")
        answer.status = int(code)
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise TransportError("SES's answer has a malformed header")
            name, value = name.strip().lower(), value.strip()
            if name in headers:
                if name in _FRAMING:
                    raise TransportError(f"SES's answer repeats {name}")
                value = f"{headers[name]}, {value}"  # RFC 9110 5.3: one list
            headers[name] = value
        answer.headers = headers
        answer.keep_alive = (
            version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        )
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if self._chunked:
            self._need = 0
            self._chunks = []
        elif 100 <= answer.status < 200 or answer.status in (204, 304):
            self._need = 0
        else:
            length = headers.get("content-length")
            if (
                length is None
                or not (length.isascii() and length.isdigit())  # not "²": int() refuses it
                or int(length) > _MAX_BODY
            ):
                # Read to the end of the connection is not supported: SES sends a length.
                raise TransportError("SES's answer has no usable Content-Length")
            self._need = int(length)

    def _read_chunks(self, answer: _Answer) -> bool:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            size_text = bytes(buffer[:end]).split(b";")[0].strip()
            # Hex digits only: int() also takes "-ff" (a negative size, which made this
            # loop spin forever), "+5", "0x5" and "1_0".
            if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                raise TransportError("SES's answer has a malformed chunk")
            size = int(size_text, 16)
            if size == 0:
                trailer = buffer.find(b"\r\n\r\n", end)
                if trailer < 0:
                    return False
                del buffer[: trailer + 4]
                answer.body = b"".join(self._chunks)
                return True
            if sum(map(len, self._chunks)) + size > _MAX_BODY:
                raise TransportError("SES's answer is too long")
            if len(buffer) < end + 2 + size + 2:
                return False
            self._chunks.append(bytes(buffer[end + 2 : end + 2 + size]))
            del buffer[: end + 2 + size + 2]


class Transport:
    """Keep-alive connections to one endpoint (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        tls: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
    ) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        if secure and tls is None:
            raise ValueError("an https endpoint needs a TLS context")
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if secure else 80)
        self._tls = tls if secure else None
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: list[_Connection] = []  # oldest first
        self._sweeper: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(pool_size)

    async def post(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of SES's answer."""
        head = [f"POST {self._target} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8")
        async with self._slots:
            connection = await self._checkout()
            try:
                answer = await connection.exchange(request, body, self._read_timeout)
            except BaseException:
                connection.close()
                raise
            if answer.keep_alive and not connection.closed:
                self._park(connection)
            else:
                connection.close()
            return answer.status, answer.headers, answer.body

    def _park(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(IDLE_SECONDS, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for IDLE_SECONDS; look again when the next one is due."""
        loop = asyncio.get_running_loop()
        self._sweeper = None
        due = loop.time() - IDLE_SECONDS
        while self._idle and (self._idle[0].idle_since <= due or self._idle[0].closed):
            self._idle.pop(0).close()
        if self._idle:
            self._sweeper = loop.call_at(self._idle[0].idle_since + IDLE_SECONDS, self._sweep)

    async def _checkout(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while self._idle:
            connection = self._idle.pop()
            if not connection.stale() and loop.time() - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
        except TimeoutError:
            raise TransportError(
                f"could not connect to SES within {self._connect_timeout:g} s"
            ) from None
        except OSError as error:  # refused, unreachable, TLS refused (SSLError)
            raise TransportError(f"could not connect to SES: {error}") from None
        return protocol

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._idle:
            self._idle.pop().close()
