"""With a proxy set for the SES endpoint, the lean path sends through it; without, or
with NO_PROXY naming the endpoint, straight to SES (proxy/aws/transport.py).

The proxy is a real forward proxy on loopback (plain HTTP, absolute-form requests):
the fake SES checks the signature of what it forwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import aiohttp
import pytest
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
