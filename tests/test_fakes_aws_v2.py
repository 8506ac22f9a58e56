"""The fake SES answers SES v2 like AWS: driven here by real botocore `sesv2` clients."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from tests.fakes.aws import Credential, FakeAWS
from tests.test_fakes_aws import MESSAGE_ID, RAW, REGION, error_of

_open_clients: list[Any] = []


@pytest.fixture
def aws() -> Iterator[FakeAWS]:
    with FakeAWS(REGION) as fake:
        fake.configuration_sets["outbound"] = "Require"
        yield fake


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open_clients:
        _open_clients.pop().close()


def client(aws: FakeAWS, cred: Credential, service: str = "sesv2") -> Any:
    """A plain botocore client that never retries, so each fault shows as it is."""
    session = botocore.session.Session()
    session.set_credentials(cred.access_key_id, cred.secret_access_key, cred.session_token)
    made = session.create_client(
        service,
        region_name=REGION,
        endpoint_url=aws.url,
        config=Config(retries={"total_max_attempts": 1}),
    )
    _open_clients.append(made)
    return made


def send(ses: Any, raw: bytes = RAW, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FromEmailAddress": "noreply@example.com",
        "Destination": {"ToAddresses": ["a@example.net"]},
        "Content": {"Raw": {"Data": raw}},
    }
    params.update(extra)
    result: dict[str, Any] = ses.send_email(**params)
    return result


def test_send_email_is_recorded_byte_exact(aws: FakeAWS) -> None:
    cred = aws.issue_credentials()
    answer = send(
        client(aws, cred),
        ConfigurationSetName="outbound",
        Destination={"ToAddresses": ["a@example.net"], "CcAddresses": ["b@example.org"]},
    )
    assert MESSAGE_ID.match(answer["MessageId"])
    [sent] = aws.sent
    assert sent.raw == RAW
    assert (sent.source, sent.destinations, sent.configuration_set) == (
        "noreply@example.com",
        ["a@example.net", "b@example.org"],
        "outbound",
    )
    assert sent.message_id == answer["MessageId"]
    assert sent.access_key_id == cred.access_key_id
    [request] = aws.requests
    assert request.action == "SendEmail"
    assert request.params == {
        "FromEmailAddress": "noreply@example.com",
        "Destination.ToAddresses.1": "a@example.net",
        "Destination.CcAddresses.1": "b@example.org",
        "ConfigurationSetName": "outbound",
    }


def test_both_apis_share_the_account(aws: FakeAWS) -> None:
    cred = aws.issue_credentials()
    send(client(aws, cred))
    client(aws, cred, "ses").send_raw_email(
        Source="noreply@example.com", Destinations=["c@example.net"], RawMessage={"Data": RAW}
    )
    assert [r.action for r in aws.requests] == ["SendEmail", "SendRawEmail"]
    assert aws.sent_last_24h == 2
    quota = client(aws, cred).get_account()["SendQuota"]
    assert quota == {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 2.0}


def test_get_account(aws: FakeAWS) -> None:
    aws.max_send_rate = 33.0
    aws.max_24h_send = 1000.0
    aws.sending_enabled = False
    account = client(aws, aws.issue_credentials()).get_account()
    assert account["SendQuota"]["MaxSendRate"] == 33.0
    assert account["SendQuota"]["Max24HourSend"] == 1000.0
    assert account["SendingEnabled"] is False
    assert aws.requests[-1].action == "GetAccount"


@pytest.mark.parametrize(
    ("fault", "code", "status", "message"),
    [
        ("throttle_rate", "TooManyRequestsException", 429, "Maximum sending rate exceeded."),
        ("throttle_daily", "LimitExceededException", 400, "Daily message quota exceeded."),
        ("message_rejected", "MessageRejected", 400, "Email address is not verified."),
        ("access_denied", "AccessDeniedException", 403, "User `arn:aws:sts::123456789012:"),
        ("config_set_missing", "NotFoundException", 404, "Configuration set outbound"),
        ("mail_from_not_verified", "MailFromDomainNotVerifiedException", 400, "The MAIL FROM"),
        ("account_paused", "SendingPausedException", 400, "Email sending is disabled"),
        ("account_suspended", "AccountSuspendedException", 400, "Your account has been"),
        ("invalid_parameter", "BadRequestException", 400, "Missing final '@domain'"),
        ("http_500", "InternalFailure", 500, "The request processing has failed"),
        # No type at all (plain text): botocore names it by its status.
        ("http_503", "503", 503, "Service Unavailable"),
    ],
)
def test_injected_fault_surfaces_in_botocore(
    aws: FakeAWS, fault: str, code: str, status: int, message: str
) -> None:
    ses = client(aws, aws.issue_credentials())
    aws.inject(fault)
    with pytest.raises(ClientError) as excinfo:
        send(ses, ConfigurationSetName="outbound")
    got_code, got_status, got_message = error_of(excinfo)
    assert (got_code, got_status) == (code, status)
    assert got_message.startswith(message)
    assert aws.sent == []
    assert aws.requests[-1].error_code == ("ServiceUnavailable" if fault == "http_503" else code)
    send(ses)  # the fault was consumed
    assert len(aws.sent) == 1


def test_the_error_type_header_carries_a_suffix(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    seen: list[dict[str, str]] = []
    ses.meta.events.register(
        "after-call.sesv2.SendEmail",
        lambda http_response, **_: seen.append(dict(http_response.headers)),
    )
    aws.inject("message_rejected")
    with pytest.raises(ClientError):
        send(ses)
    assert seen[0]["x-amzn-ErrorType"].startswith("MessageRejected:http")


@pytest.mark.parametrize(("fault", "body"), [("empty_message_id", ""), ("no_message_id", None)])
def test_success_without_a_message_id(aws: FakeAWS, fault: str, body: str | None) -> None:
    aws.inject(fault)
    answer = send(client(aws, aws.issue_credentials()))
    assert answer.get("MessageId") == body
    assert aws.sent == []


def test_a_dropped_connection(aws: FakeAWS) -> None:
    aws.inject("drop")
    with pytest.raises(ConnectionClosedError):
        send(client(aws, aws.issue_credentials()))
    assert aws.requests[-1].error_code == "ConnectionDropped"


def test_denied_actions(aws: FakeAWS) -> None:
    aws.denied_actions = {"SendEmail", "GetAccount"}
    ses = client(aws, aws.issue_credentials())
    for call in (lambda: send(ses), ses.get_account):
        with pytest.raises(ClientError) as excinfo:
            call()
        code, status, message = error_of(excinfo)
        assert (code, status) == ("AccessDeniedException", 403)
        assert "is not authorized to perform: ses:" in message
    assert aws.sent == []


def test_signatures_are_checked(aws: FakeAWS) -> None:
    cred = aws.issue_credentials()
    tampered = Credential(cred.access_key_id, "wrong-secret", cred.session_token, cred.expiration)
    with pytest.raises(ClientError) as excinfo:
        send(client(aws, tampered))
    assert error_of(excinfo)[:2] == ("InvalidSignatureException", 403)
    unknown = aws.issue_credentials()
    aws.revoke(unknown.access_key_id)
    with pytest.raises(ClientError) as excinfo:
        client(aws, unknown).get_account()
    assert error_of(excinfo)[:2] == ("ExpiredTokenException", 403)
    assert aws.sent == []


def test_unsigned_and_unknown_routes(aws: FakeAWS) -> None:
    request = urllib.request.Request(  # noqa: S310  (the fake's loopback URL)
        f"{aws.url}/v2/email/outbound-emails", data=b"{}", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert excinfo.value.code == 403
    assert excinfo.value.headers["x-amzn-ErrorType"].startswith(
        "MissingAuthenticationTokenException:"
    )
    request = urllib.request.Request(f"{aws.url}/v2/email/nowhere")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert excinfo.value.code == 404


def test_send_validation_like_ses(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"FromEmailAddress": "someone@unverified.test"}, "MessageRejected"),
        ({"ConfigurationSetName": "nope"}, "NotFoundException"),
        (
            {"Destination": {"ToAddresses": [f"u{i}@example.net" for i in range(51)]}},
            "BadRequestException",
        ),
    ]
    for extra, code in cases:
        with pytest.raises(ClientError) as excinfo:
            send(ses, **extra)
        assert error_of(excinfo)[0] == code, extra
    aws.sending_enabled = False
    with pytest.raises(ClientError) as excinfo:
        send(ses)
    assert error_of(excinfo)[0] == "SendingPausedException"
    assert aws.sent == []


def test_without_destination_the_headers_name_the_recipients(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    ses.send_email(FromEmailAddress="noreply@example.com", Content={"Raw": {"Data": RAW}})
    assert aws.sent[0].destinations == ["a@example.net"]


def test_the_size_limit_is_v2s_on_the_raw_message(aws: FakeAWS) -> None:
    # The limit itself is 40 MiB (tests/test_relay_ses_v2.py sends that much); a
    # smaller one here shows where it is counted without moving 40 MiB twice.
    aws.max_message_bytes_v2 = len(RAW)
    ses = client(aws, aws.issue_credentials())
    send(ses)
    with pytest.raises(ClientError) as excinfo:
        send(ses, raw=RAW + b"x")
    code, status, message = error_of(excinfo)
    assert (code, status) == ("BadRequestException", 400)
    assert message == f"Message length is more than {len(RAW)} bytes long: '{len(RAW) + 1}'."
    assert len(aws.sent) == 1


def test_a_body_that_is_not_json(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    ses.meta.events.register(
        "before-sign.sesv2.SendEmail",
        lambda request, **_: setattr(request, "data", b"not json"),
    )
    with pytest.raises(ClientError) as excinfo:
        send(ses)
    assert error_of(excinfo)[0] == "BadRequestException"
    assert aws.requests[-1].params == {}
