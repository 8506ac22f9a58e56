"""The lean SendRawEmail builds what stock aiobotocore builds, and SES accepts both.

Offline: for the same parameters, instant and credential, the form body is the same
bytes and the Authorization header the same signature as botocore's (captured at
`before-send`, so nothing leaves the process). Online: both paths send to the fake
SES, which verifies each signature independently, and it records the same fields.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.aws import lean, payload, sendraw
from proxy.aws.lean import SendOptions
from proxy.aws.sendraw import SendRawEmail
from tests.aws.paths import Paths
from tests.fakes.aws import FakeAWS
from tests.properties import examples

_LOCAL = st.text(
    alphabet=st.sampled_from("abcXYZ019.+-_=&%/~!#$'*?^`{|} é☃"), min_size=1, max_size=20
)
addresses = st.builds(
    lambda local, domain: f"{local}@{domain}",
    _LOCAL,
    st.sampled_from(["example.com", "example.org", "Example.NET", "xn--bcher-kva.test"]),
)
config_sets = st.one_of(st.none(), st.sampled_from(["tls-required", "cs 1&2=3", "missing"]))
_TAG = st.text(alphabet=st.sampled_from("aZ09_-"), min_size=1, max_size=8)
_IDENTITY_ARN = st.one_of(
    st.none(), st.just("arn:aws:ses:eu-west-3:210987654321:identity/example.com")
)
options = st.builds(
    SendOptions,
    configuration_set=config_sets,
    tags=st.lists(st.tuples(_TAG, _TAG), max_size=3).map(tuple),
    from_arn=_IDENTITY_ARN,
    source_arn=_IDENTITY_ARN,
    return_path_arn=_IDENTITY_ARN,
)


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


class Botocore:
    """A stock client that never sends: the request is captured at before-send."""

    def __init__(self, endpoint_url: str, token: str | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.session = get_session()
        self.session.set_credentials("ASIAEXAMPLEKEY", "secret/Key+abc=", token)
        self._context = self.session.create_client(
            "ses",
            region_name="eu-west-3",
            endpoint_url=endpoint_url,
            config=AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        self.client = self.loop.run_until_complete(self._context.__aenter__())

        def capture(request: Any, **_: Any) -> None:
            raise _Captured(request)

        self.client.meta.events.register("before-send.ses.SendRawEmail", capture)
        credentials = self.loop.run_until_complete(self.session.get_credentials())
        assert credentials is not None
        self.lean = SendRawEmail.for_client(self.client, credentials, True)

    def close(self) -> None:
        self.loop.run_until_complete(self._context.__aexit__(None, None, None))
        self.loop.close()

    def stock_request(self, params: dict[str, Any]) -> Any:
        try:
            self.loop.run_until_complete(self.client.send_raw_email(**params))
        except _Captured as captured:
            return captured.request
        raise AssertionError("before-send was not reached")

    def compare(
        self, source: str, destinations: list[str], raw: bytes, options: SendOptions
    ) -> None:
        params: dict[str, Any] = {
            "Source": source,
            "Destinations": destinations,
            "RawMessage": {"Data": raw},
        }
        # botocore serializes the parameters in the order they are given: here the
        # members' order of the model's SendRawEmailRequest, as the lean form has them.
        for key, value in (
            ("FromArn", options.from_arn),
            ("SourceArn", options.source_arn),
            ("ReturnPathArn", options.return_path_arn),
        ):
            if value is not None:
                params[key] = value
        if options.tags:
            params["Tags"] = [{"Name": name, "Value": value} for name, value in options.tags]
        if options.configuration_set is not None:
            params["ConfigurationSetName"] = options.configuration_set
        stock = self.stock_request(params)
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in stock.headers.items()}
        instant = calendar.timegm(time.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
        lean = self.loop.run_until_complete(
            self.lean.build(source, destinations, raw, options, now=instant)
        )
        assert lean.url == stock.url
        stock_body = stock.body.encode() if isinstance(stock.body, str) else stock.body
        assert lean.body == stock_body
        for name in ("Content-Type", "X-Amz-Date", "Authorization"):
            assert lean.headers[name] == headers[name], name
        assert lean.headers.get("X-Amz-Security-Token") == headers.get("X-Amz-Security-Token")


@pytest.fixture(params=["token+/=", None], ids=["session-token", "no-token"])
def botocore_offline(request: pytest.FixtureRequest) -> Iterator[Botocore]:
    offline = Botocore("http://127.0.0.1:9/", request.param)
    yield offline
    offline.close()


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    source=addresses,
    destinations=st.lists(addresses, min_size=0, max_size=5),
    raw=st.binary(max_size=3000),
    send_options=options,
)
def test_body_and_signature_equal_botocores(
    botocore_offline: Botocore,
    source: str,
    destinations: list[str],
    raw: bytes,
    send_options: SendOptions,
) -> None:
    botocore_offline.compare(source, destinations, raw, send_options)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://email.eu-west-3.amazonaws.com",
        "https://EMAIL.eu-west-3.amazonaws.com:443",
        "http://127.0.0.1:8080",
        "http://[::1]:8080/",
        "https://ses.internal.example:8443/prefix/./ses/",
    ],
)
def test_endpoint_hosts_and_paths_sign_like_botocore(endpoint: str) -> None:
    offline = Botocore(endpoint, "token")
    try:
        offline.compare(
            "noreply@example.com", ["a@example.net"], b"From: x\r\n\r\nhi\r\n", SendOptions()
        )
    finally:
        offline.close()


def test_a_message_over_the_thread_threshold_is_the_same_request() -> None:
    offline = Botocore("http://127.0.0.1:9/", "token")
    try:
        raw = bytes(range(256)) * (payload.THREAD_THRESHOLD // 256 + 7)
        offline.compare(
            "noreply@example.com",
            ["a@example.net"],
            raw,
            SendOptions(configuration_set="tls-required", tags=(("campaign", "spring"),)),
        )
    finally:
        offline.close()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 786431, 786432, 786433, 2 * 786432 + 5])
def test_sliced_encoding_equals_one_pass(size: int) -> None:
    raw = (b"\xfb\xff\xbe" * (size // 3 + 1))[:size]
    head, tail = sendraw.form_parts("a@example.com", ["b@example.net"], SendOptions())
    assert payload.encode_body_sliced(head, raw, tail) == payload.encode_body(head, raw, tail)


def test_the_endpoint_is_the_one_botocore_resolves_without_endpoint_url() -> None:
    # No endpoint_url: the region's endpoint, as the stock client would call it.
    offline = Botocore.__new__(Botocore)
    loop = asyncio.new_event_loop()
    try:
        session = get_session()
        session.set_credentials("ASIAEXAMPLEKEY", "secret", "token")

        async def urls() -> tuple[str, str]:
            async with session.create_client("ses", region_name="ap-southeast-2") as client:
                captured: list[str] = []

                def capture(request: Any, **_: Any) -> None:
                    captured.append(request.url)
                    raise _Captured(request)

                client.meta.events.register("before-send.ses.SendRawEmail", capture)
                with pytest.raises(_Captured):
                    await client.send_raw_email(
                        Source="a@example.com",
                        Destinations=["b@example.net"],
                        RawMessage={"Data": b"x"},
                    )
                credentials = await session.get_credentials()
                assert credentials is not None
                lean = SendRawEmail.for_client(client, credentials, False)
                return captured[0], lean.url

        stock_url, lean_url = loop.run_until_complete(urls())
    finally:
        loop.close()
    del offline
    assert lean_url == stock_url == "https://email.ap-southeast-2.amazonaws.com/"


def test_plain_http_is_refused_unless_allowed() -> None:
    from proxy.settings import ConfigError

    with pytest.raises(ConfigError, match="https"):
        lean.request_url("http://127.0.0.1:1", allow_insecure_endpoint=False)
    assert lean.request_url("http://127.0.0.1:1", True) == "http://127.0.0.1:1/"
    assert lean.request_url("https://h.test/p", False) == "https://h.test/p"


# ---------------------------------------------------------------- against the fake SES


@pytest.fixture
def paths(paths: Paths, fake_aws: FakeAWS) -> Paths:
    """The shared fixture, with the configuration set the random requests may name."""
    fake_aws.configuration_sets["tls-required"] = "Require"
    return paths


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    source=addresses,
    destinations=st.lists(addresses, min_size=1, max_size=4),
    raw=st.binary(max_size=2000),
    config_set=config_sets,
)
def test_the_fake_ses_receives_the_same_from_both(
    paths: Paths,
    fake_aws: FakeAWS,
    source: str,
    destinations: list[str],
    raw: bytes,
    config_set: str | None,
) -> None:
    stock = paths.stock(source, destinations, raw, config_set)
    lean = paths.lean(source, destinations, raw, config_set)
    requests = fake_aws.requests[-2:]
    assert [r.action for r in requests] == ["SendRawEmail", "SendRawEmail"]
    # Both signatures passed the fake's own SigV4 check (or both failed for SES reasons).
    assert requests[0].error_code == requests[1].error_code
    assert "SignatureDoesNotMatch" not in (requests[0].error_code, requests[1].error_code)
    assert requests[0].params == requests[1].params
    assert stock[0] == lean[0]
    if stock[0] == "ok":
        first, second = fake_aws.sent[-2:]
        assert (first.source, first.destinations, first.configuration_set, first.raw) == (
            second.source,
            second.destinations,
            second.configuration_set,
            second.raw,
        )
        assert first.raw == raw
    else:
        assert stock == lean


def test_a_message_over_the_thread_threshold_reaches_the_fake_ses_whole(
    paths: Paths, fake_aws: FakeAWS
) -> None:
    # Its body goes to aiohttp as a stream: the same request, written in steps.
    raw = b"From: noreply@example.com\r\n\r\n" + b"x" * 76 + b"\r\n"
    raw *= 3 * payload.THREAD_THRESHOLD // len(raw)
    stock = paths.stock("noreply@example.com", ["a@example.net"], raw, None)
    lean = paths.lean("noreply@example.com", ["a@example.net"], raw, None)
    assert stock[0] == lean[0] == "ok"
    first, second = fake_aws.sent[-2:]
    assert first.raw == second.raw == raw
