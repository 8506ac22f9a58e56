"""The fakes answer like AWS: driven here by real botocore and aiobotocore clients."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectionClosedError

from tests.fakes import sigv4
from tests.fakes.aws import Credential, FakeAWS, IdentityState
from tests.fakes.credentials import FakeContainerCredentials

REGION = "eu-west-3"
NO_RETRY = {"total_max_attempts": 1}
RAW = (
    b"From: Sender <noreply@example.com>\r\n"
    b"To: a@example.net\r\n"
    b"Subject: caf\xc3\xa9\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"8-bit body: \xe2\x82\xac, a lone dot:\r\n.\r\n"
)
MESSAGE_ID = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}-000000$")


@pytest.fixture
def aws() -> Iterator[FakeAWS]:
    with FakeAWS(REGION) as fake:
        fake.configuration_sets["outbound"] = "Require"
        yield fake


@pytest.fixture
def container(aws: FakeAWS, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeContainerCredentials]:
    # 800 s: inside botocore's 15-minute advisory window, so every call re-fetches
    # (rotation shows at once), yet outside the 10-minute mandatory one.
    with FakeContainerCredentials(aws, expires_in=800, auth_token="container-token") as creds:
        creds.apply_env(monkeypatch)
        yield creds


_open_clients: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open_clients:  # their pooled sockets would otherwise outlive the test
        _open_clients.pop().close()


def client(aws: FakeAWS, cred: Credential, service: str = "ses") -> Any:
    """A plain botocore client that never retries, so each fault shows as it is."""
    session = botocore.session.Session()
    session.set_credentials(cred.access_key_id, cred.secret_access_key, cred.session_token)
    made = session.create_client(
        service,
        region_name=REGION,
        endpoint_url=aws.url,
        config=Config(retries=NO_RETRY),  # type: ignore[arg-type]
    )
    _open_clients.append(made)
    return made


def send(ses: Any, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "Source": "noreply@example.com",
        "Destinations": ["a@example.net"],
        "RawMessage": {"Data": RAW},
    }
    params.update(extra)
    result: dict[str, Any] = ses.send_raw_email(**params)
    return result


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response: Any = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


# ---------------------------------------------------------------- sending & recording


async def test_aiobotocore_send_with_container_credentials_is_recorded_byte_exact(
    aws: FakeAWS, container: FakeContainerCredentials
) -> None:
    session = get_session()
    config = AioConfig(retries=NO_RETRY)
    async with session.create_client(
        "ses", region_name=REGION, endpoint_url=aws.url, config=config
    ) as ses:
        response = await ses.send_raw_email(
            Source="noreply@example.com",
            Destinations=["a@example.net", "B@Example.NET"],
            RawMessage={"Data": RAW},
            ConfigurationSetName="outbound",
        )
    [sent] = aws.sent
    assert sent.raw == RAW
    assert sent.source == "noreply@example.com"
    assert sent.destinations == ["a@example.net", "B@Example.NET"]
    assert sent.configuration_set == "outbound"
    assert sent.message_id == response["MessageId"]
    assert MESSAGE_ID.match(sent.message_id)
    assert sent.access_key_id == container.current.access_key_id
    assert container.fetch_count >= 1
    assert aws.sent_last_24h == 2
    request = aws.requests[-1]
    assert request.action == "SendRawEmail"
    assert "RawMessage.Data" not in request.params
    assert request.params["ConfigurationSetName"] == "outbound"


def test_static_key_get_send_quota_returns_the_set_numbers(aws: FakeAWS) -> None:
    aws.max_send_rate, aws.max_24h_send, aws.sent_last_24h = 3.5, 200.0, 7.0
    quota = client(aws, aws.add_static_key()).get_send_quota()
    assert (quota["MaxSendRate"], quota["Max24HourSend"], quota["SentLast24Hours"]) == (
        3.5,
        200.0,
        7.0,
    )


def test_sending_authorization_arns_are_recorded(aws: FakeAWS) -> None:
    arn = f"arn:aws:ses:{REGION}:123456789012:identity/example.com"
    send(client(aws, aws.issue_credentials()), SourceArn=arn, FromArn=arn, ReturnPathArn=arn)
    [sent] = aws.sent
    assert (sent.source_arn, sent.from_arn, sent.return_path_arn) == (arn, arn, arn)


def test_wait_for_sent(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    threading.Timer(0.1, send, args=(ses,)).start()
    assert len(aws.wait_for_sent(1, timeout=5)) == 1
    with pytest.raises(TimeoutError):
        aws.wait_for_sent(2, timeout=0.1)


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    ("authorization", "query", "headers"),
    [
        (  # AWS SigV4 test suite, "get-vanilla"
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "",
            {"host": ["example.amazonaws.com"]},
        ),
        (  # the IAM ListUsers walk-through in AWS's SigV4 documentation
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            "Action=ListUsers&Version=2010-05-08",
            {
                "content-type": ["application/x-www-form-urlencoded; charset=utf-8"],
                "host": ["iam.amazonaws.com"],
            },
        ),
    ],
)
def test_sigv4_judge_matches_aws_published_vectors(
    authorization: str, query: str, headers: dict[str, list[str]]
) -> None:
    # The judge is checked against AWS's own examples, not against botocore.
    auth = sigv4.parse_authorization(authorization)
    canonical = sigv4.canonical_request(
        "GET",
        "/",
        query,
        {**headers, "x-amz-date": ["20150830T123600Z"]},
        auth.signed_headers,
        hashlib.sha256(b"").hexdigest(),
    )
    to_sign = sigv4.string_to_sign("20150830T123600Z", auth.scope, canonical)
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    assert sigv4.signatures_match(sigv4.signature(secret, auth, to_sign), auth.signature)


def test_tampered_secret_gets_signature_does_not_match(aws: FakeAWS) -> None:
    good = aws.issue_credentials()
    bad = Credential(good.access_key_id, good.secret_access_key + "x", good.session_token, None)
    with pytest.raises(ClientError) as excinfo:
        send(client(aws, bad))
    code, status, message = error_of(excinfo)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith("The request signature we calculated does not match")
    assert aws.sent == []
    assert aws.requests[-1].error_code == "SignatureDoesNotMatch"
    assert aws.last_canonical_request is not None
    assert good.session_token is not None
    assert good.session_token not in aws.last_canonical_request


def test_unknown_key_gets_invalid_client_token_id(aws: FakeAWS) -> None:
    stranger = Credential(
        "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, None
    )
    with pytest.raises(ClientError) as excinfo:
        client(aws, stranger).get_send_quota()
    assert error_of(excinfo) == (
        "InvalidClientTokenId",
        403,
        "The security token included in the request is invalid.",
    )


def test_temporary_key_without_its_token_is_invalid(aws: FakeAWS) -> None:
    cred = aws.issue_credentials()
    tokenless = Credential(cred.access_key_id, cred.secret_access_key, None, None)
    with pytest.raises(ClientError) as excinfo:
        client(aws, tokenless).get_send_quota()
    assert error_of(excinfo)[:2] == ("InvalidClientTokenId", 403)


@pytest.mark.parametrize("service", ["ses", "sts"])
def test_expired_and_revoked_tokens_get_expired_token(aws: FakeAWS, service: str) -> None:
    expired = aws.issue_credentials(expires_in=-1)
    revoked = aws.issue_credentials()
    aws.revoke(revoked.access_key_id)
    for cred in (expired, revoked):
        c = client(aws, cred, service)
        call = c.get_send_quota if service == "ses" else c.get_caller_identity
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == (
            "ExpiredToken",
            403,
            "The security token included in the request is expired",
        )


def test_clock_skew_windows(aws: FakeAWS) -> None:
    cred = aws.issue_credentials()
    aws.clock_offset = 600  # this host's clock is 10 minutes behind AWS's
    with pytest.raises(ClientError) as excinfo:
        client(aws, cred).get_send_quota()
    code, status, message = error_of(excinfo)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert re.match(r"Signature expired: \d{8}T\d{6}Z is now earlier than .* - 5 min\.\)$", message)
    # STS allows 15 minutes.
    assert client(aws, cred, "sts").get_caller_identity()["Account"] == "123456789012"
    aws.clock_offset = -600
    with pytest.raises(ClientError) as excinfo:
        client(aws, cred).get_send_quota()
    assert error_of(excinfo)[2].startswith("Signature not yet current:")


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def _signed_post(aws: FakeAWS, cred: Credential, signing_name: str, body: bytes) -> tuple[int, str]:
    request = AWSRequest(
        method="POST",
        url=aws.url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    creds = Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token)
    SigV4Auth(creds, signing_name, REGION).add_auth(request)
    return _post(aws.url + "/", body, {k: str(v) for k, v in request.headers.items()})


def test_credential_scope_must_name_ses_not_the_endpoint_prefix(aws: FakeAWS) -> None:
    cred = aws.issue_credentials()
    body = b"Action=GetSendQuota&Version=2010-12-01"
    status, xml = _signed_post(aws, cred, "ses", body)
    assert status == 200
    assert "<MaxSendRate>14.0</MaxSendRate>" in xml
    status, xml = _signed_post(aws, cred, "email", body)
    assert status == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in xml
    assert "<Message>Credential should be scoped to correct service: 'ses'.</Message>" in xml


def test_unsigned_request_and_unknown_action(aws: FakeAWS) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, xml = _post(aws.url + "/", b"Action=GetSendQuota&Version=2010-12-01", form)
    assert status == 403
    assert "<Code>MissingAuthenticationToken</Code>" in xml
    assert '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">' in xml
    status, xml = _post(aws.url + "/", b"Action=SendEmail&Version=2010-12-01", form)
    assert status == 400
    assert "<Code>InvalidAction</Code>" in xml


# ---------------------------------------------------------------- injected faults


@pytest.mark.parametrize(
    ("fault", "code", "status", "message"),
    [
        ("throttle_rate", "Throttling", 400, "Maximum sending rate exceeded."),
        ("throttle_daily", "Throttling", 400, "Daily message quota exceeded."),
        ("message_rejected", "MessageRejected", 400, "Email address is not verified."),
        ("access_denied", "AccessDenied", 403, "User `arn:aws:sts::123456789012:"),
        ("config_set_missing", "ConfigurationSetDoesNotExist", 400, "Configuration set outbound"),
        ("mail_from_not_verified", "MailFromDomainNotVerifiedException", 400, "The MAIL FROM"),
        ("account_paused", "AccountSendingPausedException", 400, "Email sending is disabled"),
        ("invalid_parameter", "InvalidParameterValue", 400, "Missing final '@domain'"),
        ("http_500", "InternalFailure", 500, "The request processing has failed"),
        ("http_503", "ServiceUnavailable", 503, "Service Unavailable"),
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
    assert aws.requests[-1].error_code == code
    send(ses)  # the fault was consumed
    assert len(aws.sent) == 1


def test_access_denied_names_caller_action_and_identity(aws: FakeAWS) -> None:
    aws.inject("access_denied")
    with pytest.raises(ClientError) as excinfo:
        send(client(aws, aws.issue_credentials()))
    assert error_of(excinfo)[2] == (
        "User `arn:aws:sts::123456789012:assumed-role/ses-proxy/fake-host' is not authorized "
        "to perform `ses:SendRawEmail' on resource "
        "`arn:aws:ses:eu-west-3:123456789012:identity/example.com'"
    )


def test_injected_fault_count_and_drop(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    aws.inject("http_503", count=2)
    aws.inject("drop")
    for _ in range(2):
        with pytest.raises(ClientError):
            send(ses)
    with pytest.raises(ConnectionClosedError):
        send(ses)
    assert aws.sent == []
    assert [r.error_code for r in aws.requests] == [
        "ServiceUnavailable",
        "ServiceUnavailable",
        "ConnectionDropped",
    ]
    send(ses)
    assert len(aws.sent) == 1


def test_slow_fault_delays_then_succeeds(aws: FakeAWS) -> None:
    aws.slow_seconds = 0.3
    aws.inject("slow")
    started = time.monotonic()
    send(client(aws, aws.issue_credentials()))
    assert time.monotonic() - started >= 0.3
    assert len(aws.sent) == 1


def test_unknown_fault_is_refused(aws: FakeAWS) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        aws.inject("throttle")


# ---------------------------------------------------------------- SES's own checks


def test_send_validation_like_ses(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    cases: list[tuple[dict[str, Any], tuple[str, int, str]]] = [
        (
            {"Destinations": [f"r{i}@example.net" for i in range(51)]},
            ("InvalidParameterValue", 400, "Recipient count exceeds 50."),
        ),
        (
            {"ConfigurationSetName": "nope"},
            ("ConfigurationSetDoesNotExist", 400, "Configuration set nope does not exist."),
        ),
        (
            {"Source": "someone@unverified.example"},
            (
                "MessageRejected",
                400,
                "Email address is not verified. The following identities failed the check in "
                "region EU-WEST-3: someone@unverified.example",
            ),
        ),
    ]
    for extra, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            send(ses, **extra)
        assert error_of(excinfo) == expected
    send(ses, Destinations=[f"r{i}@example.net" for i in range(50)])
    aws.sending_enabled = False
    with pytest.raises(ClientError) as excinfo:
        send(ses)
    assert error_of(excinfo)[:2] == ("AccountSendingPausedException", 400)
    assert len(aws.sent) == 1


def test_message_over_10_mib_is_refused(aws: FakeAWS) -> None:
    ses = client(aws, aws.issue_credentials())
    limit = 10 * 1024 * 1024
    big = RAW + b"x" * (limit - len(RAW) + 1)
    with pytest.raises(ClientError) as excinfo:
        send(ses, RawMessage={"Data": big})
    assert error_of(excinfo) == (
        "InvalidParameterValue",
        400,
        f"Message length is more than {limit} bytes long: '{limit + 1}'.",
    )
    send(ses, RawMessage={"Data": big[:-1]})
    assert len(aws.sent[0].raw) == limit


def test_daily_quota_counts_recipients(aws: FakeAWS) -> None:
    aws.max_24h_send, aws.sent_last_24h = 10.0, 8.0
    ses = client(aws, aws.issue_credentials())
    with pytest.raises(ClientError) as excinfo:
        send(ses, Destinations=["a@example.net", "b@example.net", "c@example.net"])
    assert error_of(excinfo) == ("Throttling", 400, "Daily message quota exceeded.")
    send(ses, Destinations=["a@example.net", "b@example.net"])
    assert ses.get_send_quota()["SentLast24Hours"] == 10.0


def test_rate_is_a_bucket_with_debt(aws: FakeAWS) -> None:
    aws.enforce_rate = True
    aws.max_send_rate = 100.0
    ses = client(aws, aws.issue_credentials())
    fifty = [f"r{i}@example.net" for i in range(50)]
    send(ses, Destinations=fifty)  # 100 -> 50
    send(ses, Destinations=fifty)  # 50 left: passes, -> 0 (well, a hair above)
    send(ses, Destinations=fifty)  # any budget left passes: -> about -50 (debt)
    with pytest.raises(ClientError) as excinfo:
        send(ses)
    assert error_of(excinfo) == ("Throttling", 400, "Maximum sending rate exceeded.")
    time.sleep(0.6)  # the debt (~50 recipients at 100/s) is paid off after 0.5 s
    send(ses)
    assert len(aws.sent) == 4


def test_a_one_second_burst_at_the_rate_passes(aws: FakeAWS) -> None:
    aws.enforce_rate = True
    aws.max_send_rate = 14.0
    ses = client(aws, aws.issue_credentials())
    for _ in range(14):  # a strict sliding second would refuse none of these either,
        send(ses)  # but a pacer's burst at exactly the rate must never be throttled
    assert len(aws.sent) == 14


# ---------------------------------------------------------------- read-only SES calls


def test_doctor_calls(aws: FakeAWS) -> None:
    aws.identities["noreply@example.com"] = IdentityState(verified=True, dkim=False)
    aws.identities["pending.example"] = IdentityState(verified=False, dkim=False)
    aws.configuration_sets["lax"] = "Optional"
    ses = client(aws, aws.issue_credentials())
    assert ses.get_account_sending_enabled()["Enabled"] is True
    verification = ses.get_identity_verification_attributes(
        Identities=["example.com", "pending.example", "unknown.example"]
    )["VerificationAttributes"]
    assert verification["example.com"]["VerificationStatus"] == "Success"
    assert verification["example.com"]["VerificationToken"]
    assert verification["pending.example"]["VerificationStatus"] == "Pending"
    assert "unknown.example" not in verification
    dkim = ses.get_identity_dkim_attributes(Identities=["example.com", "pending.example"])[
        "DkimAttributes"
    ]
    assert dkim["example.com"]["DkimEnabled"] is True
    assert dkim["example.com"]["DkimVerificationStatus"] == "Success"
    assert len(dkim["example.com"]["DkimTokens"]) == 3
    assert dkim["pending.example"]["DkimEnabled"] is False
    described = ses.describe_configuration_set(
        ConfigurationSetName="outbound", ConfigurationSetAttributeNames=["deliveryOptions"]
    )
    assert described["ConfigurationSet"]["Name"] == "outbound"
    assert described["DeliveryOptions"]["TlsPolicy"] == "Require"
    bare = ses.describe_configuration_set(ConfigurationSetName="lax")
    assert "DeliveryOptions" not in bare  # only returned when asked for, as SES does
    with pytest.raises(ClientError) as excinfo:
        ses.describe_configuration_set(ConfigurationSetName="missing")
    assert error_of(excinfo)[:2] == ("ConfigurationSetDoesNotExist", 400)
    domains = ses.list_identities(IdentityType="Domain")["Identities"]
    assert set(domains) == {"example.com", "example.org", "pending.example"}
    assert ses.list_identities(IdentityType="EmailAddress")["Identities"] == ["noreply@example.com"]
    aws.sending_enabled = False
    assert ses.get_account_sending_enabled()["Enabled"] is False


# ---------------------------------------------------------------- rotation & STS


async def test_rotation_new_key_is_used_and_accepted(
    aws: FakeAWS, container: FakeContainerCredentials
) -> None:
    session = get_session()
    config = AioConfig(retries=NO_RETRY)
    async with session.create_client(
        "ses", region_name=REGION, endpoint_url=aws.url, config=config
    ) as ses:
        await ses.send_raw_email(RawMessage={"Data": RAW}, Destinations=["a@example.net"])
        first = container.current
        second = container.rotate()
        await ses.send_raw_email(RawMessage={"Data": RAW}, Destinations=["a@example.net"])
    assert first.access_key_id != second.access_key_id
    assert [m.access_key_id for m in aws.sent] == [first.access_key_id, second.access_key_id]
    assert container.fetch_count >= 2
    assert container.refused_count == 0


async def test_assume_role_returns_usable_credentials_and_records_policy(
    aws: FakeAWS, container: FakeContainerCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws.url)  # botocore's own endpoint resolution
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": "*"}],
        },
        separators=(",", ":"),
    )
    role_arn = "arn:aws:iam::123456789012:role/ses-proxy-sender"
    session = get_session()
    config = AioConfig(retries=NO_RETRY)
    async with session.create_client("sts", region_name=REGION, config=config) as sts:
        assumed = await sts.assume_role(
            RoleArn=role_arn, RoleSessionName="ses-proxy", Policy=policy, DurationSeconds=900
        )
    creds = assumed["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert assumed["AssumedRoleUser"]["Arn"] == (
        "arn:aws:sts::123456789012:assumed-role/ses-proxy-sender/ses-proxy"
    )
    [record] = aws.assumed_roles
    assert (record.role_arn, record.session_name, record.policy) == (role_arn, "ses-proxy", policy)
    assert record.access_key_id == creds["AccessKeyId"]
    assert record.caller_access_key_id == container.current.access_key_id
    assert record.duration_seconds == 900

    as_role = Credential(
        creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], None
    )
    send(client(aws, as_role))
    assert aws.sent[0].access_key_id == creds["AccessKeyId"]
    identity = client(aws, as_role, "sts").get_caller_identity()
    assert identity["Account"] == "123456789012"
    assert identity["Arn"].endswith(":assumed-role/ses-proxy-sender/ses-proxy")


def test_assume_role_refuses_what_sts_refuses(aws: FakeAWS) -> None:
    sts = client(aws, aws.issue_credentials(), "sts")
    role = "arn:aws:iam::123456789012:role/r"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Policy": json.dumps({"Statement": ["x" * 2100]})}, "ValidationError"),
        ({"Policy": "{not json"}, "MalformedPolicyDocument"),
        ({"RoleArn": "arn:aws:iam::123456789012:user/u"}, "ValidationError"),
    ]
    for extra, code in cases:
        params: dict[str, Any] = {"RoleArn": role, "RoleSessionName": "s1"}
        params.update(extra)
        with pytest.raises(ClientError) as excinfo:
            sts.assume_role(**params)
        assert error_of(excinfo)[:2] == (code, 400)
    assert aws.assumed_roles == []


# ---------------------------------------------------------------- container endpoint


def test_container_endpoint_shape_and_token(aws: FakeAWS) -> None:
    with FakeContainerCredentials(aws, auth_token="t0ken") as creds:
        request = urllib.request.Request(creds.url, headers={"Authorization": "wrong"})  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310
        excinfo.value.close()
        assert excinfo.value.code == 401
        request = urllib.request.Request(creds.url, headers={"Authorization": "t0ken"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            body = json.loads(response.read())
        assert set(body) == {"RoleArn", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
        assert body["AccessKeyId"] == creds.current.access_key_id
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", body["Expiration"])
        assert (creds.fetch_count, creds.refused_count) == (1, 1)
        env = creds.env({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_PROFILE": "p", "PATH": "/bin"})
        assert "AWS_ACCESS_KEY_ID" not in env
        assert "AWS_PROFILE" not in env
        assert env["PATH"] == "/bin"
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == creds.url
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == "t0ken"
        assert env["AWS_EC2_METADATA_DISABLED"] == "true"


def test_standalone_mode_prints_url_and_credential() -> None:
    root = Path(__file__).resolve().parent.parent
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.aws", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline().strip() for _ in range(7)]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    env = dict(line.split("=", 1) for line in lines[1:])
    assert env["AWS_ENDPOINT_URL_SES"].startswith("http://127.0.0.1:")
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert env["AWS_SESSION_TOKEN"]
