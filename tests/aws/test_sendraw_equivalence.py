"""The lean SendRawEmail builds what stock aiobotocore builds, and SES accepts both.

Offline: for the same parameters, instant and credential, the form body is the same
bytes and the Authorization header the same signature as botocore's (captured at
`before-send`, so nothing leaves the process). Online: both paths send to the fake
SES, which verifies each signature independently, and it records the same fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.aws import lean, payload, sendraw
from proxy.aws.lean import SendOptions
from proxy.aws.sendraw import SendRawEmail
from tests.aws.paths import Paths
from tests.aws.stock import ENDPOINTS, Api, Botocore, offline
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


def _params(
    source: str, destinations: list[str], raw: bytes, options: SendOptions
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "Source": source,
        "Destinations": destinations,
        "RawMessage": {"Data": raw},
    }
    # The members' order of the model's SendRawEmailRequest, as the lean form has them.
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
    return params


SEND_RAW_EMAIL = Api("ses", "SendRawEmail", "send_raw_email", SendRawEmail, _params)


@pytest.fixture(params=["token+/=", None], ids=["session-token", "no-token"])
def botocore_offline(request: pytest.FixtureRequest) -> Iterator[Botocore]:
    with offline(SEND_RAW_EMAIL, "http://127.0.0.1:9/", request.param) as botocore:
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
    with offline(SEND_RAW_EMAIL, endpoint, "token") as botocore:
        botocore.compare(
            "noreply@example.com", ["a@example.net"], b"From: x\r\n\r\nhi\r\n", SendOptions()
        )


def test_a_message_over_the_thread_threshold_is_the_same_request() -> None:
    with offline(SEND_RAW_EMAIL, "http://127.0.0.1:9/", "token") as botocore:
        raw = bytes(range(256)) * (payload.THREAD_THRESHOLD // 256 + 7)
        botocore.compare(
            "noreply@example.com",
            ["a@example.net"],
            raw,
            SendOptions(configuration_set="tls-required", tags=(("campaign", "spring"),)),
        )


@pytest.mark.parametrize("size", [0, 1, 2, 3, 786431, 786432, 786433, 2 * 786432 + 5])
def test_sliced_encoding_equals_one_pass(size: int) -> None:
    raw = (b"\xfb\xff\xbe" * (size // 3 + 1))[:size]
    head, tail = sendraw.form_parts("a@example.com", ["b@example.net"], SendOptions())
    assert payload.encode_body_sliced(head, raw, tail) == payload.encode_body(head, raw, tail)


def test_the_endpoint_is_the_one_botocore_resolves_without_endpoint_url() -> None:
    with offline(SEND_RAW_EMAIL, None, "token", region="ap-southeast-2") as botocore:
        botocore.compare("a@example.com", ["b@example.net"], b"x", SendOptions())
        assert botocore.lean.url == "https://email.ap-southeast-2.amazonaws.com/"


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
