"""Stock aiobotocore beside the lean path, offline: the harness of the equivalence tests.

botocore's request is captured at `before-send`, so nothing leaves the process; the
lean path then builds the same send at the same instant with the same credential, and
the two must be the same bytes under the same signature. What differs between SES v1
(SendRawEmail) and v2 (SendEmail) is in an `Api`: the tests of each build botocore's
parameters (tests/aws/test_sendraw_equivalence.py, test_sendemail_equivalence.py).
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from proxy.aws.lean import LeanSend, SendOptions

# Where a test's endpoint may be: the lean path must sign its host and path as botocore does.
ENDPOINTS = [
    "https://email.eu-west-3.amazonaws.com",
    "https://EMAIL.eu-west-3.amazonaws.com:443",
    "http://127.0.0.1:8080",
    "http://[::1]:8080/",
    "https://ses.internal.example:8443/prefix/./ses/",
    "https://ses.internal.example/prefix",
]

# botocore's parameters for a send, in the order the lean body writes them: botocore
# serializes them in the order they are given.
Params = Callable[[str, list[str], bytes, SendOptions], dict[str, Any]]


@dataclass(frozen=True)
class Api:
    service: Literal["ses", "sesv2"]
    operation: str
    method: str
    lean: type[LeanSend]
    params: Params


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def _capture(request: Any, **_: Any) -> None:
    raise _Captured(request)


class Botocore:
    """A stock client of `api` that never sends, and the lean path made from it."""

    def __init__(
        self, api: Api, endpoint_url: str | None, token: str | None, region: str = "eu-west-3"
    ) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.session = get_session()
        self.session.set_credentials("ASIAEXAMPLEKEY", "secret/Key+abc=", token)
        self._context = self.session.create_client(
            api.service,
            region_name=region,
            endpoint_url=endpoint_url,
            config=AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        self.client = self.loop.run_until_complete(self._context.__aenter__())
        self.client.meta.events.register(f"before-send.{api.service}.{api.operation}", _capture)
        credentials = self.loop.run_until_complete(self.session.get_credentials())
        assert credentials is not None
        # The region's own endpoint is https: it must pass without the allowance a test's
        # plain-http endpoint needs.
        self.lean = api.lean.for_client(self.client, credentials, endpoint_url is not None)

    def close(self) -> None:
        self.loop.run_until_complete(self._context.__aexit__(None, None, None))
        self.loop.close()

    def stock_request(self, params: dict[str, Any]) -> Any:
        try:
            self.loop.run_until_complete(getattr(self.client, self.api.method)(**params))
        except _Captured as captured:
            return captured.request
        raise AssertionError("before-send was not reached")

    def compare(
        self, source: str, destinations: list[str], raw: bytes, options: SendOptions
    ) -> None:
        stock = self.stock_request(self.api.params(source, destinations, raw, options))
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in stock.headers.items()}
        instant = calendar.timegm(time.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
        lean = self.loop.run_until_complete(
            self.lean.build(source, destinations, raw, options, now=instant)
        )
        assert lean.url == stock.url
        assert stock.method == "POST"
        stock_body = stock.body.encode() if isinstance(stock.body, str) else stock.body
        assert lean.body == stock_body
        for name in ("Content-Type", "X-Amz-Date", "Authorization"):
            assert lean.headers[name] == headers[name], name
        assert lean.headers.get("X-Amz-Security-Token") == headers.get("X-Amz-Security-Token")


@contextmanager
def offline(
    api: Api, endpoint_url: str | None, token: str | None, region: str = "eu-west-3"
) -> Iterator[Botocore]:
    botocore = Botocore(api, endpoint_url, token, region)
    try:
        yield botocore
    finally:
        botocore.close()
