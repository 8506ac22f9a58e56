"""transport.py against a scripted HTTP server on 127.0.0.1.

Keep-alive and the pool, every framing of an answer HTTP/1.1 allows (length, chunks,
interim answers), every way of not answering (refused, closed, reset, silent, not
HTTP) ending in TransportError, big bodies under flow control, TLS with a test CA,
the proxy lookup, and the answer parser fed real bytes split anywhere.

The server runs on the test's own loop: each test sets its script (what it answers,
when it closes, whether it reads at all) and reads back what it accepted and received.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.aws import transport
from proxy.aws.lean import SendOptions, SesErrorReply, request_url
from proxy.aws.sendraw import SendRawEmail
from proxy.aws.transport import (
    WRITE_STEP,
    Transport,
    TransportError,
    _Answer,
    _Connection,
    proxy_for,
    tls_context,
)
from tests.properties import examples

# Generous: only a test that has already failed waits this long.
TIMEOUT = 10.0
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


# The scripted server


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]  # as sent: names unchanged, in order
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


# An answer: raw bytes, pieces sent one by one (so that they arrive apart), or made
# from the request.
Reply = bytes | tuple[bytes, ...] | Callable[[Request], bytes]


class Peer:
    """One accepted connection, as a script sees it."""

    def __init__(
        self, server: ScriptedServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer

    async def request(self) -> Request | None:
        """The next request, recorded; None when the client closed between requests."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon, f"malformed request header {line!r}"
            headers.append((name, value.strip()))
        request = Request(method, target, version, headers, b"")
        request.body = await self.reader.readexactly(int(request.header("content-length") or 0))
        self.server.requests.append(request)
        return request

    async def send(self, reply: Reply, request: Request | None = None) -> None:
        if isinstance(reply, tuple):
            for piece in reply:
                self.writer.write(piece)
                await self.writer.drain()
                await asyncio.sleep(0.001)  # apart: the client reads before the next piece
            return
        if callable(reply):
            assert request is not None
            reply = reply(request)
        self.writer.write(reply)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a RST rather than a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[Peer], Awaitable[None]]


async def silent_until_closed(peer: Peer) -> None:
    """Read and drop whatever comes, answer nothing, end when the client closes."""
    while await peer.reader.read(64 * 1024):
        pass


def replying_then_silent(reply: bytes) -> Script:
    """Reads one request, sends `reply` (whatever it is), then answers nothing more."""

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(reply)
        await silent_until_closed(peer)

    return script


def answering(*replies: Reply, delay: float = 0.0) -> Script:
    """Answers the n-th request (server-wide) with the n-th reply, the last one repeating,
    until the client closes: the connection stays open whatever the answer said."""

    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            reply = replies[min(len(peer.server.requests), len(replies)) - 1]
            if delay:
                await asyncio.sleep(delay)
            await peer.send(reply, request)

    return script


class ScriptedServer:
    def __init__(self) -> None:
        self.script: Script = answering(answer(200, b"ok"))
        self.accepted = 0
        self.open = 0  # connections whose script still runs (until the client closes, mostly)
        self.most_open = 0
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, path: str = "/", scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.script(Peer(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request: what some tests do on purpose
        except asyncio.CancelledError:
            # Only stop() cancels; a task ending cancelled makes asyncio.streams log an error.
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0.01)  # let both ends' connection_lost run before the loop closes


def answer(
    status: int = 200,
    body: bytes = b"",
    *headers: str,
    version: str = "HTTP/1.1",
    reason: str = "OK",
) -> bytes:
    """An answer with a Content-Length, after the given header lines."""
    lines = [f"{version} {status} {reason}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def echo(request: Request) -> bytes:
    return answer(200, request.body)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def digest(request: Request) -> bytes:
    """An answer that says what arrived, without sending megabytes back."""
    return answer(200, sha256(request.body))


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({0, len(data), *cuts})
    return [data[start:end] for start, end in itertools.pairwise(points)]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {TIMEOUT:g} s: {what}")
        await asyncio.sleep(0.01)


async def post_fails(client: Transport, match: str, body: bytes = b"Action=SendRawEmail") -> float:
    """Seconds until `post` raised TransportError matching `match` (never a hang)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TransportError, match=match):
        async with asyncio.timeout(TIMEOUT):
            await client.post(FORM, body)
    return loop.time() - start


MakeClient = Callable[..., Transport]


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.stop()


@pytest.fixture
async def make_client(server: ScriptedServer) -> AsyncIterator[MakeClient]:
    """Transports closed before the server stops (fixtures tear down in reverse)."""
    made: list[Transport] = []

    def make(
        url: str | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float = TIMEOUT,
        read_timeout: float = TIMEOUT,
        pool_size: int = 4,
    ) -> Transport:
        client = Transport(
            url or server.url(),
            tls=tls,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            pool_size=pool_size,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
    await asyncio.sleep(0)


# Keep-alive, the request as sent, the answer as read


async def test_sequential_posts_share_one_keep_alive_connection(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    def reply(request: Request) -> bytes:
        return answer(
            200,
            b"<MessageId>" + request.body[-4:] + b"</MessageId>",
            "X-Amzn-RequestId: req-1",
            "content-TYPE:   text/xml  ",
            "Date: Tue, 01 Jul 2025 10:00:00 GMT",
        )

    server.script = answering(reply)
    client = make_client(server.url("/"))
    sent = {**FORM, "Host": f"127.0.0.1:{server.port}", "X-Amz-Date": "20250701T100000Z"}
    bodies = [b"Action=SendRawEmail&n=0001", b"", bytes(range(256)) * 40 + b"0003"]
    for body in bodies:
        status, headers, answer_body = await client.post(sent, body)
        assert status == 200
        assert answer_body == b"<MessageId>" + body[-4:] + b"</MessageId>"
        assert headers == {
            "x-amzn-requestid": "req-1",
            "content-type": "text/xml",
            "date": "Tue, 01 Jul 2025 10:00:00 GMT",
            "content-length": str(len(answer_body)),
        }
    assert server.accepted == 1
    assert [request.body for request in server.requests] == bodies
    for request, body in zip(server.requests, bodies, strict=True):
        assert (request.method, request.target, request.version) == ("POST", "/", "HTTP/1.1")
        # What the caller gave, in its order, and one Content-Length: nothing else.
        assert request.headers == [*sent.items(), ("Content-Length", str(len(body)))]


@pytest.mark.parametrize(
    ("path", "target"),
    [("", "/"), ("/", "/"), ("/ses/v1", "/ses/v1"), ("/x?Action=a&b=%2F", "/x?Action=a&b=%2F")],
)
async def test_request_target_is_the_urls_path_and_query(
    server: ScriptedServer, make_client: MakeClient, path: str, target: str
) -> None:
    await make_client(server.url(path)).post(FORM, b"x")
    assert [request.target for request in server.requests] == [target]


async def test_the_lean_sendrawemail_posts_through_a_transport(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """The way sendraw.py uses it: request_url's URL, signed headers, SES's XML back."""

    @dataclass
    class Frozen:
        access_key: str = "AKIDEXAMPLE"
        secret_key: str = "secret"
        token: str | None = None

    class Static:
        async def get_frozen_credentials(self) -> Frozen:
            return Frozen()

    success = (
        b"<SendRawEmailResponse><SendRawEmailResult><MessageId>0100-abc</MessageId>"
        b"</SendRawEmailResult></SendRawEmailResponse>"
    )
    refusal = (
        b"<ErrorResponse><Error><Type>Sender</Type><Code>MessageRejected</Code>"
        b"<Message>Email address is not verified.</Message></Error></ErrorResponse>"
    )
    server.script = answering(answer(200, success), answer(400, refusal, reason="Bad Request"))
    url = request_url(server.url(""), allow_insecure_endpoint=True)
    lean = SendRawEmail(
        credentials=Static(),
        poster=make_client(url),
        url=url,
        region="eu-west-3",
        signing_name="ses",
        user_agent="ses-proxy-test",
    )
    raw = b"From: a@example.com\r\nTo: b@example.net\r\n\r\nhi\r\n"
    assert await lean.send("a@example.com", ["b@example.net"], raw, SendOptions()) == "0100-abc"
    with pytest.raises(SesErrorReply) as refused:
        await lean.send("a@example.com", ["b@example.net"], raw, SendOptions())
    assert (refused.value.code, refused.value.status) == ("MessageRejected", 400)
    first = server.requests[0]
    assert first.target == "/"
    assert first.header("host") == f"127.0.0.1:{server.port}"
    assert (first.header("authorization") or "").startswith("AWS4-HMAC-SHA256 Credential=")
    assert first.body.startswith(b"Action=SendRawEmail&Version=2010-12-01&Source=")
    assert server.accepted == 1


async def test_https_without_a_tls_context_is_refused() -> None:
    with pytest.raises(ValueError, match="TLS context"):
        Transport(
            "https://email.eu-west-3.amazonaws.com/",
            tls=None,
            connect_timeout=1,
            read_timeout=1,
            pool_size=1,
        )


# The pool


async def test_pool_never_opens_more_connections_than_its_size(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    # The delay keeps answers pending, so that all six posts want a connection at once.
    server.script = answering(echo, delay=0.1)
    client = make_client(pool_size=2)
    bodies = [f"message {n}".encode() * (n + 1) for n in range(6)]
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(*(client.post(FORM, body) for body in bodies))
    # Each caller got its own answer: no answer crossed to another caller.
    assert [(status, body) for status, _, body in results] == [(200, body) for body in bodies]
    assert server.most_open == 2
    assert server.accepted == 2  # the waiting posts reused the two, not new ones


async def test_idle_connection_closed_by_the_server_is_not_reused(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def answer_once_then_close(peer: Peer) -> None:
        request = await peer.request()
        await peer.send(answer(200, b"once"), request)

    server.script = answer_once_then_close
    client = make_client()
    assert await client.post(FORM, b"1") == (200, {"content-length": "4"}, b"once")
    await eventually(lambda: server.open == 0, "the server closed its end")
    await eventually(
        lambda: [connection.closed for connection in client._idle] == [True],
        "the client saw the FIN on its idle connection",
    )
    assert (await client.post(FORM, b"2"))[2] == b"once"
    assert server.accepted == 2


async def test_idle_connection_older_than_idle_seconds_is_replaced(
    server: ScriptedServer, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "IDLE_SECONDS", 0.05)
    client = make_client()
    await client.post(FORM, b"1")
    await asyncio.sleep(0.1)
    await client.post(FORM, b"2")
    assert server.accepted == 2
    # The stale one was closed, not just left behind.
    await eventually(lambda: server.open == 1, "the stale connection closed")


async def test_idle_connection_is_closed_after_idle_seconds_without_another_post(
    server: ScriptedServer, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "IDLE_SECONDS", 0.05)
    client = make_client()
    await client.post(FORM, b"1")
    await eventually(lambda: server.open == 0, "the idle connection closed by the client")
    assert client._idle == []


async def test_pooled_connection_closed_before_the_loop_read_it_is_not_written_to(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    # The race a keep-alive pool loses: the server has closed an idle connection, but its
    # FIN still waits in the socket, unread by the loop (here: reading is paused, so it
    # stays there). The next request must go on a new connection, written once.
    async def answer_once_then_close(peer: Peer) -> None:
        request = await peer.request()
        await peer.send(answer(200, b"once"), request)

    server.script = answer_once_then_close
    client = make_client()
    await client.post(FORM, b"1")
    [idle] = client._idle
    assert idle.transport is not None
    idle.transport.pause_reading()
    await eventually(lambda: server.open == 0, "the server closed its end")
    assert not idle.closed  # the client has not seen it
    assert (await client.post(FORM, b"2"))[2] == b"once"
    assert server.accepted == 2
    assert [request.body for request in server.requests] == [b"1", b"2"]


async def post_twice(
    server: ScriptedServer, make_client: MakeClient, first: Reply
) -> tuple[tuple[int, dict[str, str], bytes], bytes]:
    """The first answer of a server that answers `first` and then `answer(200, b"next")`,
    and the body of the second: b"next" only if the client read the first to its exact
    end, or left its connection."""
    server.script = answering(first, answer(200, b"next"))
    client = make_client()
    return await client.post(FORM, b"1"), (await client.post(FORM, b"2"))[2]


@pytest.mark.parametrize(
    "first",
    [
        answer(200, b"ok", "Connection: close"),
        answer(200, b"ok", "connection: Keep-Alive, CLOSE"),
        answer(200, b"ok", version="HTTP/1.0"),
        answer(200, b"ok", "Connection: keep-alive", version="HTTP/1.0"),
        answer(200, b"ok") + b"HTTP/1.1 200 OK\r\n",  # octets after the answer
    ],
    ids=["connection-close", "close-in-a-list", "http-1.0", "http-1.0-keep-alive", "trailing"],
)
async def test_connection_not_reused_after_an_answer_that_ends_it(
    server: ScriptedServer, make_client: MakeClient, first: bytes
) -> None:
    # The server keeps the connection open whatever it said: only the client's own
    # reading of the answer can make it open a second one.
    (status, _, body), following = await post_twice(server, make_client, first)
    assert (status, body) == (200, b"ok")
    assert following == b"next"
    assert server.accepted == 2
    await eventually(lambda: server.open == 1, "the client closed the first connection")


async def test_octets_out_of_turn_on_an_idle_connection_end_it(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    answered, unsolicited = asyncio.Event(), asyncio.Event()

    async def script(peer: Peer) -> None:
        if peer.server.accepted == 1:
            request = await peer.request()
            await peer.send(answer(200, b"ok"), request)
            # Only once the client holds the connection idle: not read with the answer.
            await answered.wait()
            await peer.send(answer(200, b"not asked for"))
            unsolicited.set()
        while (request := await peer.request()) is not None:
            await peer.send(answer(200, b"fresh"), request)

    server.script = script
    client = make_client()
    assert (await client.post(FORM, b"1"))[2] == b"ok"
    assert [connection.closed for connection in client._idle] == [False]
    answered.set()
    await unsolicited.wait()
    await eventually(
        lambda: [connection.closed for connection in client._idle] == [True],
        "the client dropped the connection that spoke out of turn",
    )
    assert (await client.post(FORM, b"2"))[2] == b"fresh"
    assert server.accepted == 2


# Framing of the answer


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\n<Mess\r\n"
    b"A\r\nageId>m-1<\r\n"
    b"c\r\n/MessageId>\n\r\n"
    b"0;last\r\nX-Amzn-Trailer: yes\r\nX-Other: 1\r\n\r\n"
)
CHUNKED_BODY = b"<MessageId>m-1</MessageId>\n"


@pytest.mark.parametrize(
    "reply",
    [
        CHUNKED,
        # Cut inside the size line, inside the data, between CR and LF, in the trailer.
        tuple(
            split(
                CHUNKED,
                [
                    CHUNKED.index(b"A\r\nage") + 1,
                    CHUNKED.index(b"ageId") + 2,
                    CHUNKED.index(b"<\r\nc\r\n") + 2,
                    CHUNKED.index(b"Trailer: yes") + 3,
                ],
            )
        ),
        tuple(CHUNKED[n : n + 1] for n in range(len(CHUNKED))),
    ],
    ids=["whole", "pieces", "octet-by-octet"],
)
async def test_chunked_answer(
    server: ScriptedServer, make_client: MakeClient, reply: Reply
) -> None:
    (status, headers, body), following = await post_twice(server, make_client, reply)
    assert (status, body) == (200, CHUNKED_BODY)
    assert headers["transfer-encoding"] == "chunked"
    # Read to the last octet of the trailer: nothing left over, so the connection serves on.
    assert following == b"next"
    assert server.accepted == 1


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n" + answer(200, b"real"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", answer(200, b"real")),
        b"HTTP/1.1 100 Continue\r\nX-Note: a\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
        + answer(200, b"real"),
        (
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
            b"\r\n4\r\nreal\r\n0\r\n\r\n",
        ),
    ],
    ids=["one-write", "apart", "two-interim", "then-chunked"],
)
async def test_interim_answers_before_the_real_one(
    server: ScriptedServer, make_client: MakeClient, reply: Reply
) -> None:
    (status, headers, body), following = await post_twice(server, make_client, reply)
    assert (status, body) == (200, b"real")
    assert "x-note" not in headers  # the real answer's headers, not the interim one's
    assert following == b"next"
    assert server.accepted == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_status_needs_no_length(
    server: ScriptedServer, make_client: MakeClient, status: int
) -> None:
    server.script = answering(
        f"HTTP/1.1 {status} Nothing\r\nX-Amzn-RequestId: r\r\n\r\n".encode(), echo
    )
    client = make_client()
    assert await client.post(FORM, b"1") == (status, {"x-amzn-requestid": "r"}, b"")
    assert (await client.post(FORM, b"2"))[2] == b"2"
    assert server.accepted == 1


async def test_error_status_comes_back_as_an_answer(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    body = b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"
    server.script = answering(answer(503, body, reason="Service Unavailable"), echo)
    client = make_client()
    assert (await client.post(FORM, b"1"))[::2] == (503, body)
    assert (await client.post(FORM, b"2"))[2] == b"2"  # an error answer keeps the connection
    assert server.accepted == 1


# Failures: TransportError, and the connection not kept


async def test_connection_refused() -> None:
    # Bound, not listening: the port refuses, and nothing else can take it meanwhile.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        client = Transport(
            f"http://127.0.0.1:{port}/",
            tls=None,
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
            pool_size=1,
        )
        await post_fails(client, "could not connect")


async def test_server_closes_after_the_request_without_answering(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()

    server.script = script
    await post_fails(make_client(), "closed the connection before answering|lost")
    assert len(server.requests) == 1


async def test_server_closes_in_the_middle_of_the_answer(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<Message")

    server.script = script
    await post_fails(make_client(), "closed the connection before answering|lost")


async def test_server_resets_the_connection(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.reset()

    server.script = script
    await post_fails(make_client(), "lost|closed")


@pytest.mark.parametrize(
    "reply",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<Mess"],
    ids=["silent", "half-an-answer"],
)
async def test_no_answer_within_read_timeout(
    server: ScriptedServer, make_client: MakeClient, reply: bytes
) -> None:
    server.script = replying_then_silent(reply)
    client = make_client(read_timeout=0.3)
    elapsed = await post_fails(client, "no answer from SES within 0.3 s")
    assert elapsed >= 0.25  # it waited for the answer; 0.05: the loop's clock resolution
    await eventually(lambda: server.open == 0, "the client closed the silent connection")


async def test_cancelled_post_closes_its_connection_and_frees_its_slot(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if request.body == b"never answered":
                await silent_until_closed(peer)
                return
            await peer.send(answer(200, b"ok"), request)

    server.script = script
    client = make_client(pool_size=1)
    pending = asyncio.create_task(client.post(FORM, b"never answered"))
    await eventually(lambda: len(server.requests) == 1, "the request arrived")
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    # pool_size=1: this only gets a connection if the cancelled post gave its slot back.
    async with asyncio.timeout(TIMEOUT):
        assert (await client.post(FORM, b"again"))[2] == b"ok"
    assert server.accepted == 2
    await eventually(lambda: server.open == 1, "the cancelled post's connection closed")


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<x/>", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n<x/>", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n<x/>", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n<x/>", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 16777217\r\n\r\n", "Content-Length"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not HTTP"),
        (b"HTTP/2 200\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 OK 200\r\nContent-Length: 0\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 \xb200 OK\r\nContent-Length: 0\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * (65 * 1024), "over-long head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\nok", "repeats"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok", "repeats"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: identity\r\n\r\nok",
            "repeats",
        ),
    ],
    ids=[
        "no-length",
        "length-not-a-number",
        "negative-length",
        "length-superscript",
        "length-over-16MiB",
        "ssh",
        "http2",
        "no-status",
        "status-superscript",
        "header-without-colon",
        "chunk-size-not-hex",
        "head-over-64KiB",
        "two-lengths",
        "one-length-twice",
        "two-transfer-encodings",
    ],
)
async def test_unusable_answer(
    server: ScriptedServer, make_client: MakeClient, reply: bytes, match: str
) -> None:
    # The server stays silent after its reply: the client must fail on what it got,
    # not wait for the read timeout.
    server.script = replying_then_silent(reply)
    await post_fails(make_client(), match)
    await eventually(lambda: server.open == 0, "the client closed the connection")


async def test_octets_before_any_request(server: ScriptedServer, make_client: MakeClient) -> None:
    async def banner_first(peer: Peer) -> None:
        await peer.send(b"220 smtp.example.net ESMTP ready\r\n")
        while (request := await peer.request()) is not None:
            await peer.send(answer(200, b"ok"), request)

    server.script = banner_first
    await post_fails(make_client(read_timeout=2.0), "not HTTP|no answer")


# Big bodies


async def test_body_of_many_write_steps_arrives_intact(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    async def slow_reader(peer: Peer) -> None:
        # Not reading at first fills the socket buffers: the client must pause and resume.
        await asyncio.sleep(0.2)
        await answering(digest)(peer)

    server.script = slow_reader
    body = random.Random(7).randbytes(20 * WRITE_STEP + 12345)  # a partial last step
    client = make_client()
    async with asyncio.timeout(TIMEOUT):
        status, _, answer_body = await client.post(FORM, body)
        assert (status, answer_body) == (200, sha256(body))
        # The stepped write ended on the body's last octet: the connection serves on.
        assert (await client.post(FORM, b"small"))[2] == sha256(b"small")
    assert server.requests[0].header("content-length") == str(len(body))
    assert server.accepted == 1


async def test_server_that_never_reads_a_big_body_fails_the_post(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    failed = asyncio.Event()
    received: list[int] = []

    async def never_reads_then_drains(peer: Peer) -> None:
        await failed.wait()
        received.append(len(await peer.reader.read()))

    server.script = never_reads_then_drains
    body = bytes(32 * 1024 * 1024)
    elapsed = await post_fails(
        make_client(read_timeout=0.5), "no answer from SES within 0.5 s", body
    )
    assert elapsed < 5  # about the read timeout, not the time to send 32 MiB to nobody
    failed.set()
    await eventually(lambda: bool(received), "the server read to the end of the connection")
    # What the kernel's buffers held reaches the server; the rest of the abandoned
    # request must not (SES could still act on a request already reported failed).
    assert received[0] < len(body)


# TLS


@dataclass(frozen=True)
class Pki:
    server: ssl.SSLContext
    ca_file: Path
    stranger_ca_file: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA, its certificate for "localhost" in a server context, and another CA."""
    directory = tmp_path_factory.mktemp("pki")
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    ca_file, stranger_ca_file = directory / "ca.pem", directory / "stranger.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    trustme.CA().cert_pem.write_to_path(str(stranger_ca_file))
    return Pki(context, ca_file, stranger_ca_file)


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start(pki.server)
    yield scripted
    await scripted.stop()


def tls_client(
    scripted: ScriptedServer, context: ssl.SSLContext, host: str = "localhost"
) -> Transport:
    return Transport(
        scripted.url(scheme="https", host=host),
        tls=context,
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        pool_size=2,
    )


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_ca_env")
async def test_tls_exchange_with_the_configured_ca(tls_server: ScriptedServer, pki: Pki) -> None:
    tls_server.script = answering(digest)
    client = tls_client(tls_server, tls_context(str(pki.ca_file)))
    try:
        async with asyncio.timeout(TIMEOUT):
            assert (await client.post(FORM, b"small"))[2] == sha256(b"small")
            # Over TLS too, a body of several steps goes through the SSL transport's flow control.
            body = random.Random(8).randbytes(6 * WRITE_STEP + 1)
            assert (await client.post(FORM, body))[2] == sha256(body)
    finally:
        client.close()
    assert tls_server.accepted == 1


@pytest.mark.usefixtures("no_ca_env")
async def test_tls_certificate_from_another_ca_is_refused(
    tls_server: ScriptedServer, pki: Pki
) -> None:
    client = tls_client(tls_server, tls_context(str(pki.stranger_ca_file)))
    await post_fails(client, "could not connect.*CERTIFICATE_VERIFY_FAILED")
    assert tls_server.requests == []


@pytest.mark.usefixtures("no_ca_env")
async def test_tls_certificate_for_another_name_is_refused(
    tls_server: ScriptedServer, pki: Pki
) -> None:
    # The certificate names "localhost" only: 127.0.0.1 is the same server, not the same name.
    client = tls_client(tls_server, tls_context(str(pki.ca_file)), host="127.0.0.1")
    await post_fails(client, "could not connect.*CERTIFICATE_VERIFY_FAILED")
    assert tls_server.requests == []


@pytest.mark.usefixtures("no_ca_env")
async def test_tls_default_bundle_honours_requests_ca_bundle(
    tls_server: ScriptedServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the variable, botocore's own bundle: the test CA is not in it.
    await post_fails(tls_client(tls_server, tls_context(None)), "could not connect")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    client = tls_client(tls_server, tls_context(None))
    try:
        async with asyncio.timeout(TIMEOUT):
            assert (await client.post(FORM, b"x"))[0] == 200
    finally:
        client.close()
    # A bundle given explicitly (ses.ca_bundle / AWS_CA_BUNDLE) wins over the variable.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.stranger_ca_file))
    client = tls_client(tls_server, tls_context(str(pki.ca_file)))
    try:
        async with asyncio.timeout(TIMEOUT):
            assert (await client.post(FORM, b"x"))[0] == 200
    finally:
        client.close()


async def test_tls_handshake_that_never_completes_is_a_connect_timeout(
    server: ScriptedServer, make_client: MakeClient, pki: Pki
) -> None:
    # A plain TCP server that takes the ClientHello and says nothing.
    server.script = silent_until_closed
    client = make_client(
        server.url(scheme="https", host="localhost"),
        tls=tls_context(str(pki.ca_file)),
        connect_timeout=0.3,
    )
    elapsed = await post_fails(client, "could not connect to SES within 0.3 s")
    assert elapsed >= 0.25
    assert server.accepted == 1
    await eventually(lambda: server.open == 0, "the half-open TLS connection closed")


# proxy_for


_PROXY_VARIABLES = [
    variant
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
    for variant in (name, name.lower())
]
SES = "https://email.eu-west-3.amazonaws.com/"


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_proxy_for_without_proxy_settings(proxy_env: pytest.MonkeyPatch) -> None:
    assert proxy_for(SES) is None
    assert proxy_for("http://127.0.0.1:4566/") is None


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy"])
def test_proxy_for_https_proxy(proxy_env: pytest.MonkeyPatch, name: str) -> None:
    proxy_env.setenv(name, "http://proxy.internal:3128")
    assert proxy_for(SES) == "http://proxy.internal:3128"
    assert proxy_for("http://127.0.0.1:4566/") is None  # HTTPS_PROXY is for https only


def test_proxy_for_http_proxy_is_not_for_https(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert proxy_for(SES) is None
    assert proxy_for("http://ses.test:4566/") == "http://proxy.internal:3128"


@pytest.mark.parametrize(
    "no_proxy",
    [
        "email.eu-west-3.amazonaws.com",
        ".amazonaws.com",
        "amazonaws.com",
        "localhost,.amazonaws.com",
        "*",
    ],
)
def test_proxy_for_host_covered_by_no_proxy(proxy_env: pytest.MonkeyPatch, no_proxy: str) -> None:
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxy_env.setenv("NO_PROXY", no_proxy)
    assert proxy_for(SES) is None


def test_proxy_for_host_not_covered_by_no_proxy(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxy_env.setenv("NO_PROXY", "localhost,.example.com")
    assert proxy_for(SES) == "http://proxy.internal:3128"


# The answer parser, fed real bytes split anywhere


class _Unplugged(asyncio.Transport):
    """What the parser closes when it gives up on a connection; nothing is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = False

    def close(self) -> None:
        self.ended = True

    def abort(self) -> None:
        self.ended = True

    def is_closing(self) -> bool:
        return self.ended


@pytest.fixture(scope="module")
def parser_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Futures for the waiter need a loop; it never runs: nothing here awaits."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@dataclass
class Parsed:
    waiter: asyncio.Future[_Answer]
    wire: _Unplugged

    def answer(self) -> _Answer:
        assert self.waiter.done(), "the parser did not finish the answer"
        return self.waiter.result()


def feed(loop: asyncio.AbstractEventLoop, pieces: Iterable[bytes]) -> Parsed:
    """`data_received` for each piece, as exchange() would have set it up; in a thread,
    so that a parser stuck in a loop fails the test instead of hanging the run."""
    connection = _Connection()
    wire = _Unplugged()
    connection.connection_made(wire)
    connection._answer = _Answer()
    waiter = connection._waiter = loop.create_future()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            for piece in pieces:
                connection.data_received(piece)
        except BaseException as error:
            raised.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "data_received never returned"
    if raised:
        raise AssertionError(f"data_received raised {raised[0]!r}") from raised[0]
    return Parsed(waiter, wire)


_HEADER_NAMES = ["X-Amzn-RequestId", "Content-Type", "Date", "x-custom", "SERVER", "Vary"]
_VALUE = st.text(alphabet="abcXYZ019 -_;=/,.:", max_size=30).map(str.strip)


@dataclass
class Wire:
    raw: bytes
    status: int
    headers: dict[str, str]
    body: bytes


@st.composite
def answers(draw: st.DrawFn) -> Wire:
    status = draw(st.integers(200, 599))
    body = b"" if status in (204, 304) else draw(st.binary(max_size=2048))
    headers = {
        name.lower(): (name, draw(_VALUE)) for name in draw(st.sets(st.sampled_from(_HEADER_NAMES)))
    }
    if draw(st.booleans()):
        headers["transfer-encoding"] = ("Transfer-Encoding", "chunked")
        cuts = draw(st.lists(st.integers(0, len(body)), max_size=6))
        framed = b"".join(
            b"%x%s\r\n%s\r\n" % (len(piece), draw(st.sampled_from([b"", b";a=b", b" ; x"])), piece)
            for piece in split(body, cuts)
            if piece
        )
        trailer = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n", b"A: b\r\nC: d\r\n"]))
        framed += b"0\r\n" + trailer + b"\r\n"
    else:
        headers["content-length"] = ("Content-Length", str(len(body)))
        framed = body
    interim = draw(st.sampled_from([b"", b"HTTP/1.1 100 Continue\r\n\r\n"]))
    reason = draw(st.sampled_from(["OK", "", "Bad Request", "Some Reason"]))
    lines = [
        f"HTTP/1.1 {status} {reason}",
        *(f"{name}: {value}" for name, value in headers.values()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    expected = {key: value for key, (_, value) in headers.items()}
    return Wire(interim + head + framed, status, expected, body)


@settings(max_examples=examples(100), deadline=None)
@given(wire=answers(), data=st.data())
def test_parser_reads_a_valid_answer_however_it_is_split(
    parser_loop: asyncio.AbstractEventLoop, wire: Wire, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(wire.raw)), max_size=12))
    parsed = feed(parser_loop, split(wire.raw, cuts))
    got = parsed.answer()
    assert (got.status, got.body, got.headers) == (wire.status, wire.body, wire.headers)
    assert got.keep_alive  # every octet belonged to the answer
    assert not parsed.wire.ended


@settings(max_examples=examples(100), deadline=None)
@given(wire=answers(), data=st.data())
def test_parser_never_finishes_a_truncated_answer(
    parser_loop: asyncio.AbstractEventLoop, wire: Wire, data: st.DataObject
) -> None:
    end = data.draw(st.integers(0, len(wire.raw) - 1))
    cuts = data.draw(st.lists(st.integers(0, end), max_size=6))
    parsed = feed(parser_loop, split(wire.raw[:end], cuts))
    assert not parsed.waiter.done()
    assert not parsed.wire.ended


_TOKENS = [
    b"HTTP/1.1 ",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"0",
    b"1",
    b"a",
    b"-ff",
    b";x=y",
    b"zz",
    b"\xb2",
    b":",
    b" ",
]


@settings(max_examples=examples(300), deadline=None)
@given(
    pieces=st.lists(
        st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=6)), min_size=1, max_size=30
    )
)
def test_parser_survives_any_octets(
    parser_loop: asyncio.AbstractEventLoop, pieces: list[bytes]
) -> None:
    parsed = feed(parser_loop, pieces)  # raising or never returning fails here
    if parsed.waiter.done() and parsed.waiter.exception() is not None:
        assert isinstance(parsed.waiter.exception(), TransportError)
        assert parsed.wire.ended  # a connection that failed is not kept


@pytest.mark.parametrize("size", [b"-ff", b"-1", b"+5", b"0x5", b"1_0", b" ", b""])
def test_parser_refuses_a_chunk_size_that_is_not_plain_hex(
    parser_loop: asyncio.AbstractEventLoop, size: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    parsed = feed(parser_loop, [head + size + b"\r\n12345\r\n0\r\n\r\n"])
    assert parsed.waiter.done()
    with pytest.raises(TransportError, match="malformed chunk"):
        parsed.waiter.result()
    assert parsed.wire.ended
