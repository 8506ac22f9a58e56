"""The lean SESv2 SendEmail builds what stock aiobotocore's `sesv2` client builds.

Offline: for the same parameters (in the same order: botocore writes the JSON in the
order of the caller's dict), instant and credential, the body is the same bytes and
the Authorization header the same signature as botocore's (captured at `before-send`,
so nothing leaves the process). The field names are checked against botocore's own
`sesv2` service model. Against the fake SES: tests/aws/test_sendemail_fake.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.loaders import Loader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.aws import payload, sendemail
from proxy.aws.lean import SendOptions
from proxy.aws.sendemail import SendEmail
from tests.aws.stock import ENDPOINTS, Api, Botocore, offline
from tests.aws.test_sendraw_equivalence import addresses, options
from tests.properties import examples


def _params(
    source: str, destinations: list[str], raw: bytes, options: SendOptions
) -> dict[str, Any]:
    # In the model's order, as the lean body has them.
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
    return params


SEND_EMAIL = Api("sesv2", "SendEmail", "send_email", SendEmail, _params)


@pytest.fixture(params=["token+/=", None], ids=["session-token", "no-token"])
def botocore_offline(request: pytest.FixtureRequest) -> Iterator[Botocore]:
    with offline(SEND_EMAIL, "http://127.0.0.1:9/", request.param) as botocore:
        yield botocore


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


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_endpoint_hosts_and_paths_sign_like_botocore(endpoint: str) -> None:
    with offline(SEND_EMAIL, endpoint, "token") as botocore:
        botocore.compare(
            "noreply@example.com", ["a@example.net"], b"From: x\r\n\r\nhi\r\n", SendOptions()
        )


def test_without_endpoint_url_it_posts_where_botocore_does() -> None:
    with offline(SEND_EMAIL, None, "token", region="ap-southeast-2") as botocore:
        botocore.compare("noreply@example.com", ["a@example.net"], b"x", SendOptions())
        assert (
            botocore.lean.url
            == "https://email.ap-southeast-2.amazonaws.com/v2/email/outbound-emails"
        )
        assert botocore.lean.signer.service == "ses"


def test_a_message_over_the_thread_threshold_is_the_same_request() -> None:
    with offline(SEND_EMAIL, "http://127.0.0.1:9/", "token") as botocore:
        raw = bytes(range(256)) * (2 * payload.THREAD_THRESHOLD // 256 + 7)
        botocore.compare(
            "noreply@example.com",
            ["a@example.net"],
            raw,
            SendOptions(configuration_set="tls-required", tags=(("run", "7"),)),
        )


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
