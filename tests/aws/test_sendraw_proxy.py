"""With a proxy set for the SES endpoint, the lean path sends through it; without, or
with NO_PROXY naming the endpoint, straight to SES (proxy/aws/transport.py).

The proxies are real ones on loopback: a forward proxy for a plain-HTTP endpoint
(absolute-form requests), and for an HTTPS endpoint, as in production, a CONNECT
tunnel to the fake SES served over TLS, whose certificate the relay checks against
AWS_CA_BUNDLE. The fake SES checks the signature of whatever reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.aws.paths import Paths
from tests.fakes.aws import FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.fakes.server import MAX_REQUEST_BYTES, BackgroundServer

_HOP_BY_HOP = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}
_MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: via proxy\r\n\r\nhi\r\n"


class ForwardProxy(BackgroundServer):
    """Forwards each request to the URL it names; records (method, URL) of each."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded: list[tuple[str, str]] = []

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _forward(self, request: web.Request) -> web.Response:
        self.forwarded.append((request.method, str(request.url)))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                request.url,
                headers=headers,
                data=await request.read(),
                skip_auto_headers={"Content-Type"},
            ) as answer,
        ):
            body = await answer.read()
            kept = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in _HOP_BY_HOP | {"content-length", "transfer-encoding"}
            }
            return web.Response(status=answer.status, headers=kept, body=body)


class ConnectProxy:
    """An HTTPS proxy: `CONNECT host:port`, then the bytes both ways, unread. Records
    each CONNECT's target; anything but CONNECT is answered 405."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        )
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, _ = (await reader.readline()).decode("ascii").split(" ", 2)
        while (await reader.readline()).strip():
            pass  # the proxy request's headers
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        self.targets.append(target)
        host, _, port = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def tls_fake_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAWS]:
    """The fake SES over TLS, its certificate from a CA that AWS_CA_BUNDLE names."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    with FakeAWS(tls=context) as aws:
        yield aws


@pytest.fixture
def connect_proxy(tls_fake_aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    """An HTTPS proxy that HTTPS_PROXY names (and no NO_PROXY), container credentials set."""
    with FakeContainerCredentials(tls_fake_aws) as credentials:
        credentials.apply_env(monkeypatch)
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        proxy = ConnectProxy()
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        try:
            yield proxy
        finally:
            proxy.close()


@pytest.fixture
def forward_proxy(
    container_credentials: FakeContainerCredentials, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ForwardProxy]:
    """A forward proxy that HTTP_PROXY names (and no NO_PROXY), container credentials set."""
    container_credentials.apply_env(monkeypatch)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        yield proxy


def _send_lean(fake_aws: FakeAWS, api: Literal["v1", "v2"] = "v1") -> tuple[str, ...]:
    paths = Paths(fake_aws.url, fake_aws.region, api)
    try:
        return paths.lean("a@example.com", ["b@example.net"], _MESSAGE, None)
    finally:
        paths.close()


def _ses_requests(proxy: ForwardProxy, fake_aws: FakeAWS) -> list[tuple[str, str]]:
    return [(m, url) for m, url in proxy.forwarded if url.startswith(fake_aws.url)]


def test_a_proxy_in_the_environment_carries_the_lean_send(
    fake_aws: FakeAWS, forward_proxy: ForwardProxy
) -> None:
    outcome = _send_lean(fake_aws)

    assert outcome[0] == "ok", outcome
    assert _ses_requests(forward_proxy, fake_aws) == [("POST", f"{fake_aws.url}/")]
    assert [m.raw for m in fake_aws.sent] == [_MESSAGE]
    assert outcome[1] == fake_aws.sent[0].message_id


def test_no_proxy_naming_the_endpoint_sends_straight_to_ses(
    fake_aws: FakeAWS, forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    outcome = _send_lean(fake_aws)

    assert outcome[0] == "ok", outcome
    assert _ses_requests(forward_proxy, fake_aws) == []
    assert [m.raw for m in fake_aws.sent] == [_MESSAGE]


def test_a_proxy_carries_v2s_send_email_and_its_json_errors(
    fake_aws: FakeAWS, forward_proxy: ForwardProxy
) -> None:
    outcome = _send_lean(fake_aws, "v2")
    assert outcome[0] == "ok", outcome
    url = f"{fake_aws.url}/v2/email/outbound-emails"
    assert _ses_requests(forward_proxy, fake_aws) == [("POST", url)]
    assert [m.raw for m in fake_aws.sent] == [_MESSAGE]
    # The error type comes in a header, whatever case the proxy's HTTP stack gives it.
    fake_aws.inject("message_rejected")
    assert _send_lean(fake_aws, "v2")[:2] == ("error", "rejected")
    fake_aws.inject("config_set_missing")
    assert _send_lean(fake_aws, "v2")[:2] == ("error", "config")


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_an_https_proxy_tunnels_the_lean_send_to_ses_over_tls(
    tls_fake_aws: FakeAWS, connect_proxy: ConnectProxy, api: Literal["v1", "v2"]
) -> None:
    outcome = _send_lean(tls_fake_aws, api)

    assert outcome[0] == "ok", outcome
    # transport.py does not speak to proxies: the send took the client's HTTP session.
    assert set(connect_proxy.targets) == {f"127.0.0.1:{tls_fake_aws.port}"}
    assert [m.raw for m in tls_fake_aws.sent] == [_MESSAGE]
    assert outcome[1] == tls_fake_aws.sent[0].message_id


def test_through_an_https_proxy_the_certificate_is_still_checked(
    tls_fake_aws: FakeAWS,
    connect_proxy: ConnectProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("AWS_CA_BUNDLE", str(other))

    outcome = _send_lean(tls_fake_aws)

    assert outcome[:2] == ("error", "unavailable"), outcome
    assert set(connect_proxy.targets) == {f"127.0.0.1:{tls_fake_aws.port}"}
    assert tls_fake_aws.sent == []
