"""Every SES error answer is classified the same on the lean path as on stock aiobotocore,
and credential rotation mid-run keeps the lean path sending."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from tests.aws.paths import Paths
from tests.fakes.aws import FAULTS, FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.fakes.server import BackgroundServer

SOURCE = "noreply@example.com"
RAW = b"From: noreply@example.com\r\nTo: a@example.net\r\n\r\nhello\r\n"


# Answers without a usable MessageId: the lean path is stricter than stock (below).
_NO_MESSAGE_ID = {"empty_message_id", "no_message_id"}


@pytest.mark.parametrize("fault", sorted(FAULTS - {"slow"} - _NO_MESSAGE_ID))
def test_each_fake_ses_fault_is_classified_alike(
    paths: Paths, fake_aws: FakeAWS, fault: str
) -> None:
    fake_aws.inject(fault)
    stock = paths.stock(SOURCE, ["a@example.net"], RAW, None)
    fake_aws.inject(fault)
    lean = paths.lean(SOURCE, ["a@example.net"], RAW, None)
    assert stock[0] == "error"
    assert stock == lean
    assert fake_aws.sent == []


@pytest.mark.parametrize("fault", sorted(_NO_MESSAGE_ID))
def test_a_success_without_a_message_id_is_unavailable_on_the_lean_path(
    paths: Paths, fake_aws: FakeAWS, fault: str
) -> None:
    fake_aws.inject(fault)
    outcome = paths.lean(SOURCE, ["a@example.net"], RAW, None)
    assert outcome[:2] == ("error", "unavailable")
    assert outcome[2].startswith("451 ")


def test_ses_refusals_without_injection_are_classified_alike(
    paths: Paths, fake_aws: FakeAWS
) -> None:
    cases = [
        ("someone@unverified.test", None),  # MessageRejected
        (SOURCE, "no-such-set"),  # ConfigurationSetDoesNotExist
    ]
    for source, config_set in cases:
        stock = paths.stock(source, ["a@example.net"], RAW, config_set)
        lean = paths.lean(source, ["a@example.net"], RAW, config_set)
        assert stock[0] == "error"
        assert stock == lean
    fake_aws.clock_offset = 3600.0  # our signature now looks an hour old
    stock = paths.stock(SOURCE, ["a@example.net"], RAW, None)
    lean = paths.lean(SOURCE, ["a@example.net"], RAW, None)
    assert stock == lean == ("error", "credentials", stock[2])


class RawAnswers(BackgroundServer):
    """Answers every request with the (status, content type, body) set last."""

    def __init__(self) -> None:
        super().__init__()
        self.answer: tuple[int, str, bytes] = (200, "text/xml", b"")
        self._lock = threading.Lock()

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        with self._lock:
            status, content_type, body = self.answer
        return web.Response(status=status, body=body, content_type=content_type)


def _error_xml(code: str, message: str, wrapped: bool = False) -> bytes:
    error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    if wrapped:
        error = f"<Errors>{error}</Errors>"
    return (
        '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
        f"{error}<RequestId>r-1</RequestId></ErrorResponse>"
    ).encode()


ANSWERS = {
    "throttling": (400, "text/xml", _error_xml("Throttling", "Maximum sending rate exceeded.")),
    "daily-quota": (400, "text/xml", _error_xml("Throttling", "Daily message quota exceeded.")),
    "rejected": (400, "text/xml", _error_xml("MessageRejected", "Email address is not verified.")),
    "unknown-code": (400, "text/xml", _error_xml("SomethingNew", "new &amp; strange")),
    "wrapped": (403, "text/xml", _error_xml("AccessDenied", "not allowed", wrapped=True)),
    "no-code": (400, "text/xml", b"<ErrorResponse><Error></Error></ErrorResponse>"),
    "500-empty": (500, "text/plain", b""),
    "502-html": (502, "text/html", b"<html><body><b>Bad Gateway</b></body></html>"),
    "503-xml": (503, "text/xml", _error_xml("ServiceUnavailable", "Service Unavailable")),
    "400-not-xml": (400, "text/plain", b"this is not xml"),
    "504-not-xml": (504, "text/plain", b"gateway timeout, try later"),
    "200-not-xml": (200, "text/plain", b"hello"),
    "200-no-id": (
        200,
        "text/xml",
        b"<SendRawEmailResponse><SendRawEmailResult/></SendRawEmailResponse>",
    ),
}


STOCK_CRASHES: dict[str, type[Exception]] = {"no-code": AttributeError, "200-no-id": KeyError}


@pytest.fixture(scope="module")
def raw_answers() -> Iterator[RawAnswers]:
    with RawAnswers() as server:
        yield server


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_any_answer_is_classified_alike(
    raw_answers: RawAnswers,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    raw_answers.answer = ANSWERS[name]
    both = Paths(raw_answers.url)
    try:
        lean = both.lean(SOURCE, ["a@example.net"], RAW, None)
        if name in STOCK_CRASHES:
            # botocore trips over these (AttributeError on an empty <Error/>, KeyError
            # for a success without MessageId): the lean path says 451, never 250.
            with pytest.raises(STOCK_CRASHES[name]):
                both.stock(SOURCE, ["a@example.net"], RAW, None)
            assert lean[:2] == ("error", "unavailable")
            return
        stock = both.stock(SOURCE, ["a@example.net"], RAW, None)
    finally:
        both.close()
    assert stock == lean


def test_credential_rotation_mid_run_still_sends(
    fake_aws: FakeAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Within botocore's refresh window every call asks the endpoint again, so a
    # rotation shows at the next message; the old key is revoked to prove it.
    with FakeContainerCredentials(fake_aws, expires_in=14 * 60) as endpoint:
        endpoint.apply_env(monkeypatch)
        both = Paths(fake_aws.url, fake_aws.region)
        try:
            first = endpoint.current.access_key_id
            assert both.lean(SOURCE, ["a@example.net"], RAW, None)[0] == "ok"
            second = endpoint.rotate()
            fake_aws.revoke(first)
            assert both.lean(SOURCE, ["b@example.net"], RAW, None)[0] == "ok"
            third = endpoint.rotate()
            fake_aws.revoke(second.access_key_id)
            assert both.lean(SOURCE, ["c@example.net"], RAW, None)[0] == "ok"
        finally:
            both.close()
    keys = [message.access_key_id for message in fake_aws.sent]
    assert keys == [first, second.access_key_id, third.access_key_id]
