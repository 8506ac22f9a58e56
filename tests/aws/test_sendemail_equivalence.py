"""The lean SESv2 SendEmail builds what stock aiobotocore's `sesv2` client builds.

Offline: for the same parameters (in the same order: botocore writes the JSON in the
order of the caller's dict), instant and credential, the body is the same bytes and
the Authorization header the same signature as botocore's (captured at `before-send`,
so nothing leaves the process). The field names are checked against botocore's own
`sesv2` service model. Against the fake SES: tests/aws/test_sendemail_fake.py.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.loaders import Loader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.aws import payload, sendemail
from proxy.aws.lean import SendOptions
from proxy.aws.sendemail import SendEmail
from tests.aws.test_sendraw_equivalence import addresses, options
from tests.properties import examples


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def _capture(request: Any, **_: Any) -> None:
    raise _Captured(request)


class Botocore:
    """A stock `sesv2` client that never sends: the request is captured at before-send."""

    def __init__(self, endpoint_url: str | None, token: str | None, region: str = "eu-west-3"):
        self.loop = asyncio.new_event_loop()
        self.session = get_session()
        self.session.set_credentials("ASIAEXAMPLEKEY", "secret/Key+abc=", token)
        self._context = self.session.create_client(
            "sesv2",
            region_name=region,
            endpoint_url=endpoint_url,
            config=AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        self.client = self.loop.run_until_complete(self._context.__aenter__())
        self.client.meta.events.register("before-send.sesv2.SendEmail", _capture)
        credentials = self.loop.run_until_complete(self.session.get_credentials())
        assert credentials is not None
        self.lean = SendEmail.for_client(self.client, credentials, True)

    def close(self) -> None:
        self.loop.run_until_complete(self._context.__aexit__(None, None, None))
        self.loop.close()

    def stock_request(self, params: dict[str, Any]) -> Any:
        try:
            self.loop.run_until_complete(self.client.send_email(**params))
        except _Captured as captured:
            return captured.request
        raise AssertionError("before-send was not reached")

    def compare(
        self, source: str, destinations: list[str], raw: bytes, options: SendOptions | None
    ) -> None:
        options = options or SendOptions()
        # In the model's order, as the lean body has them (botocore keeps the given order).
        params: dict[str, Any] = {"FromEmailAddress": source}
        identity_arn = options.from_arn or options.source_arn
        if identity_arn is not None:
            params["FromEmailAddressIdentityArn"] = identity_arn
        params["Destination"] = {"ToAddresses": destinations}
        params["Content"] = {"Raw": {"Data": raw}}
        if options.tags:
            params["EmailTags"] = [{"Name": n, "Value": v} for n, v in options.tags]
        if options.configuration_set is not None:
            params["ConfigurationSetName"] = options.configuration_set
        stock = self.stock_request(params)
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
        "https://ses.internal.example/prefix",
    ],
)
def test_endpoint_hosts_and_paths_sign_like_botocore(endpoint: str) -> None:
    offline = Botocore(endpoint, "token")
    try:
        offline.compare("noreply@example.com", ["a@example.net"], b"From: x\r\n\r\nhi\r\n", None)
    finally:
        offline.close()


def test_without_endpoint_url_it_posts_where_botocore_does() -> None:
    offline = Botocore(None, "token", region="ap-southeast-2")
    try:
        offline.compare("noreply@example.com", ["a@example.net"], b"x", None)
        assert (
            offline.lean.url
            == "https://email.ap-southeast-2.amazonaws.com/v2/email/outbound-emails"
        )
        assert offline.lean.signer.service == "ses"
    finally:
        offline.close()


def test_a_message_over_the_thread_threshold_is_the_same_request() -> None:
    offline = Botocore("http://127.0.0.1:9/", "token")
    try:
        raw = bytes(range(256)) * (2 * payload.THREAD_THRESHOLD // 256 + 7)
        offline.compare(
            "noreply@example.com",
            ["a@example.net"],
            raw,
            SendOptions(configuration_set="tls-required", tags=(("run", "7"),)),
        )
    finally:
        offline.close()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 786431, 786432, 786433, 2 * 786432 + 5])
def test_sliced_encoding_equals_one_pass(size: int) -> None:
    raw = (b"\xfb\xff\xbe" * (size // 3 + 1))[:size]
    head, tail = sendemail.json_parts(
        "a@example.com",
        ["b@example.net"],
        SendOptions(
            configuration_set="cs",
            tags=(("a", "b"),),
            from_arn="arn:aws:ses:eu-west-3:210987654321:identity/example.com",
        ),
    )
    lean = SendEmail.__new__(SendEmail)
    one_pass = payload.encode_body(head, raw, tail, lean.escape)
    assert payload.encode_body_sliced(head, raw, tail, lean.escape) == one_pass
    body = json.loads(one_pass[0])
    assert body["Content"]["Raw"]["Data"] == base64.b64encode(raw).decode()


def _shape(model: dict[str, Any], name: str) -> dict[str, Any]:
    shape: dict[str, Any] = model["shapes"][name]
    return shape


def test_every_field_sent_is_in_botocores_sesv2_model() -> None:
    model = Loader().load_service_model("sesv2", "service-2", "2019-09-27")
    assert model["metadata"]["signingName"] == "ses"
    operation = model["operations"]["SendEmail"]
    assert dict(operation["http"]) == {"method": "POST", "requestUri": sendemail.OPERATION_PATH}
    head, tail = sendemail.json_parts(
        "a@example.com",
        ["b@example.net"],
        SendOptions(
            configuration_set="cs",
            tags=(("a", "b"),),
            from_arn="arn:aws:ses:eu-west-3:210987654321:identity/example.com",
        ),
    )
    body = json.loads(head + b"eA==" + tail)

    def check(value: dict[str, Any], shape_name: str) -> None:
        members = _shape(model, shape_name)["members"]
        for key, member_value in value.items():
            assert key in members, f"{key} is not a member of {shape_name}"
            member_shape = members[key]["shape"]
            if isinstance(member_value, dict):
                check(member_value, member_shape)

    check(body, operation["input"]["shape"])
    assert set(body) == {
        "FromEmailAddress",
        "FromEmailAddressIdentityArn",
        "Destination",
        "Content",
        "EmailTags",
        "ConfigurationSetName",
    }
    tag_shape = _shape(model, _shape(model, "MessageTagList")["member"]["shape"])
    assert set(body["EmailTags"][0]) == set(tag_shape["members"])
    assert body["Content"] == {"Raw": {"Data": "eA=="}}
    assert _shape(model, "RawMessageData")["type"] == "blob"  # botocore sends it as base64
    assert _shape(model, "EmailAddressList")["type"] == "list"
    answer = _shape(model, operation["output"]["shape"])["members"]
    assert "MessageId" in answer
