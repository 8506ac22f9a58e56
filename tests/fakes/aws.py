"""A fake AWS endpoint: SES v1 (2010-12-01) and STS (2011-06-15) on the query protocol,
SES v2 (2019-09-27: SendEmail, GetAccount) on rest-json.

One aiohttp server in a background thread answers all three, dispatching v2 on its
paths (`/v2/email/...`) and the rest on the form's `Action`, so botocore can be
pointed at it with `endpoint_url` or `AWS_ENDPOINT_URL_SES` / `AWS_ENDPOINT_URL_STS`.
Both SES APIs share one account state: what is sent, faults, quota, identities.
Every request must carry a valid SigV4 signature made with a credential this fake
issued (checked by `sigv4.py`, which shares no code with botocore). Answers mirror
real AWS: XML (v1, STS) or JSON (v2) shapes, HTTP statuses, error codes and
messages, because the proxy's error classification is tested against them. Where
the real behaviour is not documented, the choice made here is written next to the code.

Run standalone for manual tours: `python -m tests.fakes.aws --port 4566`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import email.parser
import email.utils
import hashlib
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web

from tests.fakes import sigv4
from tests.fakes.server import MAX_REQUEST_BYTES, BackgroundServer

ACCOUNT_ID: Final = "123456789012"
SES_NS: Final = "http://ses.amazonaws.com/doc/2010-12-01/"
STS_NS: Final = "https://sts.amazonaws.com/doc/2011-06-15/"
SES_VERSION: Final = "2010-12-01"
STS_VERSION: Final = "2011-06-15"

# botocore signs SES v1 with the signing name "ses" (its endpoint prefix is "email");
# a credential scoped to anything else gets AWS's "scoped to correct service" answer.
SES_SIGNING_NAME: Final = "ses"
STS_SIGNING_NAME: Final = "sts"

# Real SES reports a stale signature as "... (<now> - 5 min.)": its window is 5 minutes.
# STS, like most AWS services, allows 15 minutes.
CLOCK_SKEW_SECONDS: Final = {SES_SIGNING_NAME: 300.0, STS_SIGNING_NAME: 900.0}

SES_MAX_RECIPIENTS: Final = 50
# SES v1: 10 MB per message. Real SES answers InvalidParameterValue, HTTP 400,
# "Message length is more than 10485760 bytes long: '<n>'." (seen in the wild, e.g.
# aws/aws-sdk-go-v2#1774). It is counted here on the decoded raw message, the size a
# proxy controls; the SES quota page says "after base64 encoding" of attachments,
# i.e. the MIME text, which is that same raw message.
SES_MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
# SES v2 SendEmail, raw content: 40 MB, counted the same way (DESIGN.md: "after base64
# encoding" of the attachments, i.e. the MIME message as sent).
SES_V2_MAX_MESSAGE_BYTES: Final = 40 * 1024 * 1024
V2_PREFIX: Final = "/v2/email/"
_V2_ROUTES: Final = {
    ("POST", "/v2/email/outbound-emails"): "SendEmail",
    ("GET", "/v2/email/account"): "GetAccount",
}
STS_MAX_POLICY_CHARS: Final = 2048

FAULTS: Final = frozenset(
    {
        "throttle_rate",
        "throttle_daily",
        "message_rejected",
        "access_denied",
        "config_set_missing",
        "mail_from_not_verified",
        "account_paused",
        "invalid_parameter",
        "http_500",
        "http_503",
        "slow",
        "drop",
        # 200 answers without a usable MessageId (nothing recorded as sent).
        "empty_message_id",
        "no_message_id",
        # v2's AccountSuspendedException; v1 has no such code and says it is paused.
        "account_suspended",
    }
)

_SES_ACTIONS: Final = frozenset(
    {
        "SendRawEmail",
        "GetSendQuota",
        "GetAccountSendingEnabled",
        "GetIdentityVerificationAttributes",
        "GetIdentityDkimAttributes",
        "DescribeConfigurationSet",
        "ListIdentities",
    }
)
_STS_ACTIONS: Final = frozenset({"AssumeRole", "GetCallerIdentity"})
_ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_KEY_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    session_token: str | None  # None for long-lived (AKIA…) keys
    expiration: datetime | None  # UTC; None for long-lived keys


@dataclass
class IdentityState:
    verified: bool = True
    dkim: bool = True


_TAG_PART = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _message_tags(params: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Tags.member.N.Name / .Value, as SES reads them, refused as SES refuses them."""
    tags = []
    index = 1
    while f"Tags.member.{index}.Name" in params:
        name = params[f"Tags.member.{index}.Name"]
        value = params.get(f"Tags.member.{index}.Value", "")
        for part in (name, value):
            if not _TAG_PART.fullmatch(part):
                # Chosen wording (SES's own message for a bad tag is undocumented).
                raise AwsError(400, "InvalidParameterValue", f"Invalid tag: {part[:64]}")
        tags.append((name, value))
        index += 1
    return tuple(tags)


def _email_tags(value: object) -> tuple[tuple[str, str], ...]:
    """v2's EmailTags: a list of {"Name", "Value"}, checked by the same rule as v1's."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise AwsError(400, "BadRequestException", "EmailTags must be a list")
    params: dict[str, str] = {}
    for index, tag in enumerate(value, 1):
        if not isinstance(tag, dict):
            raise AwsError(400, "BadRequestException", "an EmailTag must be an object")
        params[f"Tags.member.{index}.Name"] = str(tag.get("Name", ""))
        params[f"Tags.member.{index}.Value"] = str(tag.get("Value", ""))
    return _message_tags(params)


@dataclass(frozen=True)
class SentMessage:
    source: str | None
    destinations: list[str]
    configuration_set: str | None
    raw: bytes
    message_id: str
    access_key_id: str
    source_arn: str | None = None
    from_arn: str | None = None
    return_path_arn: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RecordedRequest:
    action: str
    access_key_id: str | None
    # The form, without RawMessage.Data; for v2 the JSON flattened the same way
    # ("Destination.ToAddresses.1"), without Content.Raw.Data.
    params: dict[str, str]
    status: int
    error_code: str | None


@dataclass(frozen=True)
class AssumedRole:
    role_arn: str
    session_name: str
    policy: str | None
    access_key_id: str  # of the credential issued
    duration_seconds: int = 3600
    caller_access_key_id: str | None = None


class AwsError(Exception):
    """An answer in AWS's <ErrorResponse> shape."""

    def __init__(self, status: int, code: str, message: str, sender: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fault_type = "Sender" if sender else "Receiver"


class _DropConnection(Exception):
    """Close the TCP connection without answering."""


def _throttle_rate() -> AwsError:
    return AwsError(400, "Throttling", "Maximum sending rate exceeded.")


def _throttle_daily() -> AwsError:
    return AwsError(400, "Throttling", "Daily message quota exceeded.")


def _config_set_missing(name: str) -> AwsError:
    return AwsError(
        400, "ConfigurationSetDoesNotExist", f"Configuration set {name} does not exist."
    )


def _account_paused() -> AwsError:
    # Code and status from the SES model; message wording chosen (undocumented).
    return AwsError(
        400,
        "AccountSendingPausedException",
        "Email sending is disabled for your entire Amazon SES account.",
    )


def _new_key_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt_float(value: float) -> str:
    return repr(float(value))


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _members(params: dict[str, str], prefix: str) -> list[str]:
    """Query-protocol lists: `<prefix>.member.N`, ordered by N."""
    pattern = re.compile(re.escape(prefix) + r"\.member\.(\d+)$")
    found = [(int(m.group(1)), v) for k, v in params.items() if (m := pattern.match(k))]
    return [v for _, v in sorted(found)]


class FakeAWS(BackgroundServer):
    """SES v1 + STS, answering like the real services. See the module docstring."""

    def __init__(
        self, region: str = "eu-west-3", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(port, tls)
        self.region = region
        self.account_id = ACCOUNT_ID
        # Settable account state (plain attributes; the server reads them under the lock).
        self.max_send_rate: float = 14.0
        self.max_24h_send: float = 50000.0  # -1 means unlimited, as in GetSendQuota
        self.sent_last_24h: float = 0.0  # recipients
        self.sending_enabled: bool = True
        self.enforce_rate: bool = False
        # Actions this caller is not authorized for (AccessDenied), like a least-privilege role.
        self.denied_actions: set[str] = set()
        # Verified sender identities (addresses or domains). SES refuses any other Source.
        self.identities: dict[str, IdentityState] = {
            "example.com": IdentityState(),
            "example.org": IdentityState(),
        }
        self.configuration_sets: dict[str, str] = {}  # name -> TlsPolicy (Require|Optional)
        self.slow_seconds: float = 2.0
        self.max_message_bytes: int = SES_MAX_MESSAGE_BYTES
        self.max_message_bytes_v2: int = SES_V2_MAX_MESSAGE_BYTES
        # Added to this fake's clock: simulates a host whose clock is off.
        self.clock_offset: float = 0.0
        # When set, GetSendQuota's result element holds this text instead (a broken answer).
        self.quota_result_override: str | None = None

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._credentials: dict[str, Credential] = {}
        self._principals: dict[str, str] = {}  # access key id -> caller ARN
        self._revoked: set[str] = set()
        self._faults: deque[str] = deque()
        self._sent: list[SentMessage] = []
        self._requests: list[RecordedRequest] = []
        self._assumed: list[AssumedRole] = []
        self._tokens: float | None = None  # SES rate bucket (recipients), may go negative
        self._tokens_at = 0.0
        # Last rejected signature's canonical request (token redacted), for debugging signers.
        self.last_canonical_request: str | None = None

    # ------------------------------------------------------------------ credentials

    def _register(self, cred: Credential, principal_arn: str) -> Credential:
        with self._lock:
            self._credentials[cred.access_key_id] = cred
            self._principals[cred.access_key_id] = principal_arn
        return cred

    def issue_credentials(
        self,
        expires_in: float = 3600.0,
        principal_arn: str | None = None,
    ) -> Credential:
        """A temporary (ASIA…) credential, valid until it expires or is revoked."""
        cred = Credential(
            access_key_id=_new_key_id("ASIA"),
            secret_access_key=secrets.token_urlsafe(30),
            session_token=base64.b64encode(secrets.token_bytes(96)).decode(),
            expiration=datetime.now(UTC) + timedelta(seconds=expires_in),
        )
        arn = principal_arn or f"arn:aws:sts::{self.account_id}:assumed-role/ses-proxy/fake-host"
        return self._register(cred, arn)

    def add_static_key(self) -> Credential:
        """A long-lived (AKIA…) IAM user key: no session token, no expiry."""
        cred = Credential(
            access_key_id=_new_key_id("AKIA"),
            secret_access_key=secrets.token_urlsafe(30),
            session_token=None,
            expiration=None,
        )
        return self._register(cred, f"arn:aws:iam::{self.account_id}:user/ses-proxy")

    def revoke(self, access_key_id: str) -> None:
        with self._lock:
            self._revoked.add(access_key_id)

    # ------------------------------------------------------------------ faults & records

    def inject(self, fault: str, count: int = 1) -> None:
        """Queue `fault` for the next `count` SendRawEmail calls."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        with self._lock:
            self._faults.extend([fault] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def sent(self) -> list[SentMessage]:
        with self._lock:
            return list(self._sent)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def assumed_roles(self) -> list[AssumedRole]:
        with self._lock:
            return list(self._assumed)

    def wait_for_sent(self, n: int, timeout: float) -> list[SentMessage]:
        """Block until at least `n` messages were sent; TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._sent) >= n, timeout=timeout):
                raise TimeoutError(f"{len(self._sent)} message(s) sent, expected {n}")
            return list(self._sent)

    def reset(self) -> None:
        """Forget what was sent and requested (credentials and settings stay)."""
        with self._lock:
            self._sent.clear()
            self._requests.clear()
            self._assumed.clear()
            self._faults.clear()
            self._tokens = None
            self.sent_last_24h = 0.0

    # ------------------------------------------------------------------ HTTP

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.startswith(V2_PREFIX):
            return await self._handle_v2(request, body)
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "")
        ns = STS_NS if action in _STS_ACTIONS else SES_NS
        request_id = str(uuid.uuid4())
        key_id = _claimed_key_id(request.headers.get("Authorization", ""))
        try:
            service = self._service_for(action, params)
            key_id = self._authenticate(request, body, service)
            status, xml = await self._dispatch(action, params, key_id, request_id)
        except _DropConnection:
            self._record(action, key_id, params, 0, "ConnectionDropped")
            if request.transport is not None:
                request.transport.abort()
            # aiohttp treats a handler cancelled after the peer is gone as routine.
            raise asyncio.CancelledError() from None
        except AwsError as err:
            self._record(action, key_id, params, err.status, err.code)
            return _xml_response(err.status, _error_xml(ns, err, request_id), request_id)
        self._record(action, key_id, params, status, None)
        return _xml_response(status, xml, request_id)

    def _record(
        self,
        action: str,
        key_id: str | None,
        params: dict[str, str],
        status: int,
        code: str | None,
    ) -> None:
        kept = {k: v for k, v in params.items() if k != "RawMessage.Data"}
        with self._lock:
            self._requests.append(RecordedRequest(action, key_id, kept, status, code))

    @staticmethod
    def _service_for(action: str, params: dict[str, str]) -> str:
        version = params.get("Version", "NO_VERSION_SPECIFIED")
        if action in _SES_ACTIONS and version == SES_VERSION:
            return SES_SIGNING_NAME
        if action in _STS_ACTIONS and version == STS_VERSION:
            return STS_SIGNING_NAME
        raise AwsError(
            400, "InvalidAction", f"Could not find operation {action} for version {version}"
        )

    # ------------------------------------------------------------------ SigV4

    def _authenticate(self, request: web.Request, body: bytes, service: str) -> str:
        header = request.headers.get("Authorization")
        if header is None:
            raise AwsError(
                403, "MissingAuthenticationToken", "Request is missing Authentication Token"
            )
        try:
            auth = sigv4.parse_authorization(header)
        except sigv4.SigV4Error as err:
            raise AwsError(err.status, err.code, err.message) from None
        with self._lock:
            cred = self._credentials.get(auth.access_key_id)
            revoked = auth.access_key_id in self._revoked
        token = request.headers.get("X-Amz-Security-Token")
        if cred is None or token != cred.session_token:
            raise AwsError(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
        now = self._now()
        if revoked or (cred.expiration is not None and cred.expiration <= now):
            raise AwsError(
                403, "ExpiredToken", "The security token included in the request is expired"
            )
        self._check_scope(request, auth, service, now)
        headers = {k.lower(): request.headers.getall(k) for k in request.headers}
        payload_hash = hashlib.sha256(body).hexdigest()
        claimed_hash = request.headers.get("X-Amz-Content-Sha256")
        if claimed_hash is not None and claimed_hash != payload_hash:
            raise AwsError(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        canonical = sigv4.canonical_request(
            request.method,
            request.raw_path.partition("?")[0],
            request.query_string,
            headers,
            auth.signed_headers,
            payload_hash,
        )
        to_sign = sigv4.string_to_sign(request.headers["X-Amz-Date"], auth.scope, canonical)
        expected = sigv4.signature(cred.secret_access_key, auth, to_sign)
        if not sigv4.signatures_match(expected, auth.signature):
            redacted = canonical.replace(token, "<token>") if token else canonical
            self.last_canonical_request = redacted
            raise AwsError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method. Consult the "
                "service documentation for details.",
            )
        return auth.access_key_id

    def _check_scope(
        self, request: web.Request, auth: sigv4.AuthHeader, service: str, now: datetime
    ) -> None:
        def mismatch(message: str) -> AwsError:
            return AwsError(403, "SignatureDoesNotMatch", message)

        if "host" not in auth.signed_headers:
            raise mismatch(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        amz_date = request.headers.get("X-Amz-Date")
        if amz_date is None:
            raise AwsError(
                400,
                "IncompleteSignature",
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header.",
            )
        problems = []
        # STS's global endpoint scope is us-east-1; a regional STS endpoint uses its region.
        regions = {self.region, "us-east-1"} if service == STS_SIGNING_NAME else {self.region}
        if auth.region not in regions:
            problems.append(f"Credential should be scoped to a valid region, not '{auth.region}'. ")
        if auth.service != service:
            problems.append(f"Credential should be scoped to correct service: '{service}'. ")
        if auth.terminator != sigv4.TERMINATOR:
            problems.append(
                "Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{auth.terminator}'. "
            )
        if auth.date != amz_date[:8]:
            problems.append(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        if problems:
            raise mismatch("".join(problems).strip())
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise AwsError(
                400,
                "IncompleteSignature",
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.",
            ) from None
        window = timedelta(seconds=CLOCK_SKEW_SECONDS[service])
        minutes = int(window.total_seconds() // 60)
        stamp = "%Y%m%dT%H%M%SZ"
        if signed_at < now - window:
            raise mismatch(
                f"Signature expired: {amz_date} is now earlier than "
                f"{(now - window).strftime(stamp)} ({now.strftime(stamp)} - {minutes} min.)"
            )
        if signed_at > now + window:
            raise mismatch(
                f"Signature not yet current: {amz_date} is still later than "
                f"{(now + window).strftime(stamp)} ({now.strftime(stamp)} + {minutes} min.)"
            )

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(
        self, action: str, params: dict[str, str], key_id: str, request_id: str
    ) -> tuple[int, str]:
        ns = STS_NS if action in _STS_ACTIONS else SES_NS
        if action in self.denied_actions:
            caller = self._principals.get(key_id, f"arn:aws:iam::{self.account_id}:user/unknown")
            service = "sts" if action in _STS_ACTIONS else "ses"
            raise AwsError(
                403,
                "AccessDenied",
                f"User `{caller}' is not authorized to perform `{service}:{action}'",
            )
        if action == "SendRawEmail":
            result = await self._send_raw_email(params, key_id)
            return 200, _ok_xml(action, ns, result, request_id)
        handlers: dict[str, Callable[[dict[str, str], str], str]] = {
            "GetSendQuota": self._get_send_quota,
            "GetAccountSendingEnabled": self._get_account_sending_enabled,
            "GetIdentityVerificationAttributes": self._get_identity_verification,
            "GetIdentityDkimAttributes": self._get_identity_dkim,
            "DescribeConfigurationSet": self._describe_configuration_set,
            "ListIdentities": self._list_identities,
            "AssumeRole": self._assume_role,
            "GetCallerIdentity": self._get_caller_identity,
        }
        return 200, _ok_xml(action, ns, handlers[action](params, key_id), request_id)

    # ------------------------------------------------------------------ SES

    async def _next_fault(self, action: str, params: dict[str, str], key_id: str) -> str | None:
        """The fault queued for this send, raised when it is an error; else its name
        (slow has been waited out) or None."""
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif fault is not None and fault not in ("empty_message_id", "no_message_id"):
            raise self._fault_error(fault, params, key_id, action)
        return fault

    async def _send_raw_email(self, params: dict[str, str], key_id: str) -> str:
        fault = await self._next_fault("SendRawEmail", params, key_id)
        if fault == "empty_message_id":
            return "<MessageId/>"
        if fault == "no_message_id":
            return ""
        try:
            raw = base64.b64decode(params["RawMessage.Data"], validate=True)
        except KeyError:
            raise AwsError(
                400, "MissingParameter", "The request must contain the parameter RawMessage.Data."
            ) from None
        except binascii.Error:
            raise AwsError(
                400, "InvalidParameterValue", "Invalid base64 in RawMessage.Data."
            ) from None
        message_id = self._deliver(
            raw,
            params.get("Source"),
            _members(params, "Destinations"),
            params.get("ConfigurationSetName"),
            key_id,
            self.max_message_bytes,
            (params.get("SourceArn"), params.get("FromArn"), params.get("ReturnPathArn")),
            _message_tags(params),
        )
        return f"<MessageId>{message_id}</MessageId>"

    def _deliver(
        self,
        raw: bytes,
        source: str | None,
        destinations: list[str],
        config_set: str | None,
        key_id: str,
        max_bytes: int,
        arns: tuple[str | None, str | None, str | None],
        tags: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Judge and record one message as SES would (the checks of both APIs, in v1's
        codes: the v2 path translates them); its MessageId."""
        if len(raw) > max_bytes:
            raise AwsError(
                400,
                "InvalidParameterValue",
                f"Message length is more than {max_bytes} bytes long: '{len(raw)}'.",
            )
        headers = email.parser.BytesHeaderParser().parsebytes(raw)
        if not destinations:
            # Without Destinations SES takes the recipients from To/Cc/Bcc.
            fields = [v for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
            destinations = [addr for _, addr in email.utils.getaddresses(fields) if addr]
        if not destinations:
            # Chosen wording: SES requires at least one recipient (message undocumented).
            raise AwsError(400, "InvalidParameterValue", "Missing final '@domain'")
        if len(destinations) > SES_MAX_RECIPIENTS:
            raise AwsError(
                400, "InvalidParameterValue", f"Recipient count exceeds {SES_MAX_RECIPIENTS}."
            )
        sender = source or email.utils.parseaddr(headers.get("From", ""))[1]
        count = len(destinations)
        with self._lock:
            if config_set is not None and config_set not in self.configuration_sets:
                raise _config_set_missing(config_set)
            if not self.sending_enabled:
                raise _account_paused()
            if not self._verified(sender):
                raise AwsError(
                    400,
                    "MessageRejected",
                    "Email address is not verified. The following identities failed the "
                    f"check in region {self.region.upper()}: {sender}",
                )
            if self.max_24h_send >= 0 and self.sent_last_24h + count > self.max_24h_send:
                raise _throttle_daily()
            if self.enforce_rate:
                self._take_rate_budget(count)
            message_id = _message_id()
            self._sent.append(
                SentMessage(
                    source=source,
                    destinations=destinations,
                    configuration_set=config_set,
                    raw=raw,
                    message_id=message_id,
                    access_key_id=key_id,
                    source_arn=arns[0],
                    from_arn=arns[1],
                    return_path_arn=arns[2],
                    tags=tags,
                )
            )
            self.sent_last_24h += count
            self._changed.notify_all()
        return message_id

    def _verified(self, address: str) -> bool:
        """Caller holds the lock. An address passes if it, or its domain, is verified."""
        wanted = {address.lower(), _domain_of(address)}
        return any(name.lower() in wanted and st.verified for name, st in self.identities.items())

    def _take_rate_budget(self, recipients: int) -> None:
        """Caller holds the lock. A bucket with debt, as SES behaves: a call passes while
        any budget is left and its recipients beyond it become debt later calls wait out."""
        now = time.monotonic()
        rate = self.max_send_rate
        if self._tokens is None:
            self._tokens = rate
        else:
            self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens <= 0:
            raise _throttle_rate()
        self._tokens -= recipients

    def _fault_error(
        self, fault: str, params: dict[str, str], key_id: str, action: str = "SendRawEmail"
    ) -> Exception:
        source = params.get("Source", "sender@example.com")
        domain = _domain_of(source)
        with self._lock:
            caller = self._principals.get(key_id, f"arn:aws:iam::{self.account_id}:user/unknown")
        errors: dict[str, Callable[[], Exception]] = {
            "throttle_rate": _throttle_rate,
            "throttle_daily": _throttle_daily,
            "message_rejected": lambda: AwsError(
                400,
                "MessageRejected",
                "Email address is not verified. The following identities failed the check "
                f"in region {self.region.upper()}: {source}",
            ),
            "access_denied": lambda: AwsError(
                403,
                "AccessDenied",
                f"User `{caller}' is not authorized to perform `ses:{action}' on resource "
                f"`arn:aws:ses:{self.region}:{self.account_id}:identity/{domain}'",
            ),
            "config_set_missing": lambda: _config_set_missing(
                params.get("ConfigurationSetName", "default")
            ),
            # Code and status from the SES model; message wording chosen (undocumented).
            "mail_from_not_verified": lambda: AwsError(
                400,
                "MailFromDomainNotVerifiedException",
                f"The MAIL FROM domain of identity {domain} is not verified.",
            ),
            "account_paused": _account_paused,
            "account_suspended": lambda: AwsError(
                400,
                "AccountSendingPausedException",
                "Your account has been suspended and can no longer send email.",
            ),
            "invalid_parameter": lambda: AwsError(
                400, "InvalidParameterValue", "Missing final '@domain'"
            ),
            "http_500": lambda: AwsError(
                500,
                "InternalFailure",
                "The request processing has failed because of an unknown error, exception "
                "or failure.",
                sender=False,
            ),
            "http_503": lambda: AwsError(
                503, "ServiceUnavailable", "Service Unavailable", sender=False
            ),
            "drop": _DropConnection,
        }
        return errors[fault]()

    def _get_send_quota(self, params: dict[str, str], key_id: str) -> str:
        if self.quota_result_override is not None:
            return self.quota_result_override
        body = (
            f"<Max24HourSend>{_fmt_float(self.max_24h_send)}</Max24HourSend>"
            f"<MaxSendRate>{_fmt_float(self.max_send_rate)}</MaxSendRate>"
            f"<SentLast24Hours>{_fmt_float(self.sent_last_24h)}</SentLast24Hours>"
        )
        return body

    def _get_account_sending_enabled(self, params: dict[str, str], key_id: str) -> str:
        enabled = "true" if self.sending_enabled else "false"
        return f"<Enabled>{enabled}</Enabled>"

    def _identity(self, name: str) -> IdentityState | None:
        with self._lock:
            for known, state in self.identities.items():
                if known.lower() == name.lower():
                    return state
        return None

    def _get_identity_verification(self, params: dict[str, str], key_id: str) -> str:
        entries = []
        for name in _members(params, "Identities"):
            state = self._identity(name)
            if state is None:
                continue  # SES leaves identities it does not know out of the map
            status = "Success" if state.verified else "Pending"
            token = ""
            if "@" not in name:  # domains carry a TXT verification token, addresses do not
                digest = base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()
                token = f"<VerificationToken>{digest}</VerificationToken>"
            entries.append(
                f"<entry><key>{escape(name)}</key><value>"
                f"<VerificationStatus>{status}</VerificationStatus>{token}</value></entry>"
            )
        body = f"<VerificationAttributes>{''.join(entries)}</VerificationAttributes>"
        return body

    def _get_identity_dkim(self, params: dict[str, str], key_id: str) -> str:
        entries = []
        for name in _members(params, "Identities"):
            state = self._identity(name)
            # Chosen: unknown identities come back as DKIM off / NotStarted.
            enabled = state is not None and state.dkim
            status = "Success" if enabled else "NotStarted"
            tokens = ""
            if enabled and "@" not in name:
                tokens = (
                    "<DkimTokens>"
                    + "".join(
                        f"<member>{hashlib.sha1(f'{name}{i}'.encode()).hexdigest()[:32]}</member>"  # noqa: S324
                        for i in range(3)
                    )
                    + "</DkimTokens>"
                )
            entries.append(
                f"<entry><key>{escape(name)}</key><value>"
                f"<DkimEnabled>{'true' if enabled else 'false'}</DkimEnabled>"
                f"<DkimVerificationStatus>{status}</DkimVerificationStatus>{tokens}"
                "</value></entry>"
            )
        body = f"<DkimAttributes>{''.join(entries)}</DkimAttributes>"
        return body

    def _describe_configuration_set(self, params: dict[str, str], key_id: str) -> str:
        name = params.get("ConfigurationSetName", "")
        with self._lock:
            policy = self.configuration_sets.get(name)
        if policy is None:
            raise _config_set_missing(name)
        body = f"<ConfigurationSet><Name>{escape(name)}</Name></ConfigurationSet>"
        # Like SES, attributes come back only when asked for by name.
        if "deliveryOptions" in _members(params, "ConfigurationSetAttributeNames"):
            body += f"<DeliveryOptions><TlsPolicy>{escape(policy)}</TlsPolicy></DeliveryOptions>"
        return body

    def _list_identities(self, params: dict[str, str], key_id: str) -> str:
        kind = params.get("IdentityType")
        with self._lock:
            names = list(self.identities)
        if kind == "EmailAddress":
            names = [n for n in names if "@" in n]
        elif kind == "Domain":
            names = [n for n in names if "@" not in n]
        members = "".join(f"<member>{escape(n)}</member>" for n in names)
        return f"<Identities>{members}</Identities>"

    # ------------------------------------------------------------------ SES v2

    async def _handle_v2(self, request: web.Request, body: bytes) -> web.StreamResponse:
        action = _V2_ROUTES.get((request.method, request.path))
        request_id = str(uuid.uuid4())
        key_id = _claimed_key_id(request.headers.get("Authorization", ""))
        recorded: dict[str, str] = {}
        try:
            if action is None:
                # Chosen: what API Gateway-fronted AWS JSON services say to an unknown route.
                raise AwsError(404, "UnknownOperationException", "")
            key_id = self._authenticate(request, body, SES_SIGNING_NAME)
            if action in self.denied_actions:
                with self._lock:
                    caller = self._principals[key_id]
                raise AwsError(
                    403,
                    "AccessDenied",
                    f"User: {caller} is not authorized to perform: ses:{action}",
                )
            if action == "GetAccount":
                answer = self._get_account()
            else:
                document = _json_object(body)
                recorded = _flatten(document, skip="Content.Raw.Data")
                answer = await self._send_email(document, key_id)
        except _DropConnection:
            self._record(action or request.path, key_id, recorded, 0, "ConnectionDropped")
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError() from None
        except AwsError as err:
            status, code = _v2_error_code(err)
            self._record(action or request.path, key_id, recorded, status, code)
            return _json_error_response(status, code, err.message, request_id)
        self._record(action, key_id, recorded, 200, None)
        return web.Response(
            status=200,
            body=answer.encode(),
            content_type="application/json",
            headers={"x-amzn-RequestId": request_id},
        )

    async def _send_email(self, document: dict[str, object], key_id: str) -> str:
        source = document.get("FromEmailAddress")
        config_set = document.get("ConfigurationSetName")
        if not isinstance(source, str | None) or not isinstance(config_set, str | None):
            raise AwsError(400, "BadRequestException", "FromEmailAddress must be a string")
        params = {"Source": source or "sender@example.com"}
        if config_set is not None:
            params["ConfigurationSetName"] = config_set
        fault = await self._next_fault("SendEmail", params, key_id)
        if fault == "empty_message_id":
            return '{"MessageId": ""}'
        if fault == "no_message_id":
            return "{}"
        content = document.get("Content")
        raw_part = content.get("Raw") if isinstance(content, dict) else None
        data = raw_part.get("Data") if isinstance(raw_part, dict) else None
        if not isinstance(data, str):
            # Chosen wording: Simple and Template content are not what this fake serves.
            raise AwsError(400, "BadRequestException", "Content.Raw.Data is required.")
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise AwsError(
                400, "BadRequestException", "Invalid base64 in Content.Raw.Data."
            ) from None
        destination = document.get("Destination") or {}
        if not isinstance(destination, dict):
            raise AwsError(400, "BadRequestException", "Destination must be an object")
        destinations: list[str] = []
        for field in ("ToAddresses", "CcAddresses", "BccAddresses"):
            addresses = destination.get(field, [])
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise AwsError(400, "BadRequestException", f"{field} must be a list of strings")
            destinations += addresses
        message_id = self._deliver(
            raw,
            source,
            destinations,
            config_set,
            key_id,
            self.max_message_bytes_v2,
            (None, _optional_str(document.get("FromEmailAddressIdentityArn")), None),
            _email_tags(document.get("EmailTags")),
        )
        return json.dumps({"MessageId": message_id})

    def _get_account(self) -> str:
        if self.quota_result_override is not None:
            return self.quota_result_override
        return json.dumps(
            {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
                "SendQuota": {
                    "Max24HourSend": self.max_24h_send,
                    "MaxSendRate": self.max_send_rate,
                    "SentLast24Hours": self.sent_last_24h,
                },
                "SendingEnabled": self.sending_enabled,
            }
        )

    # ------------------------------------------------------------------ STS

    def _assume_role(self, params: dict[str, str], key_id: str) -> str:
        role_arn = params.get("RoleArn", "")
        session_name = params.get("RoleSessionName", "")
        policy = params.get("Policy")
        duration = int(params.get("DurationSeconds", "3600"))
        match = _ROLE_ARN.match(role_arn)
        if match is None:
            raise AwsError(400, "ValidationError", f"{role_arn} is invalid")
        if _SESSION_NAME.match(session_name) is None:
            raise AwsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{session_name}' at 'roleSessionName' failed "
                "to satisfy constraint: Member must satisfy regular expression pattern: "
                "[\\w+=,.@-]*",
            )
        if not 900 <= duration <= 43200:
            raise AwsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to "
                "satisfy constraint: Member must have value "
                + (
                    "greater than or equal to 900"
                    if duration < 900
                    else "less than or equal to 43200"
                ),
            )
        if policy is not None:
            if len(policy) > STS_MAX_POLICY_CHARS:
                raise AwsError(
                    400,
                    "ValidationError",
                    "1 validation error detected: Value at 'policy' failed to satisfy constraint: "
                    f"Member must have length less than or equal to {STS_MAX_POLICY_CHARS}",
                )
            try:
                json.loads(policy)
            except ValueError:
                raise AwsError(
                    400, "MalformedPolicyDocument", "The policy is not in the valid JSON format."
                ) from None
        account, role_name = match.group(1), match.group(2)
        role_id = "AROA" + hashlib.sha256(role_arn.encode()).hexdigest()[:17].upper()
        caller_arn = f"arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}"
        cred = self.issue_credentials(expires_in=duration, principal_arn=caller_arn)
        assert cred.session_token is not None
        assert cred.expiration is not None
        with self._lock:
            self._assumed.append(
                AssumedRole(role_arn, session_name, policy, cred.access_key_id, duration, key_id)
            )
        packed = ""
        if policy is not None:  # percent of the allowance used; AWS compresses, we don't
            percent = min(99, len(policy) * 100 // STS_MAX_POLICY_CHARS)
            packed = f"<PackedPolicySize>{percent}</PackedPolicySize>"
        body = (
            "<AssumedRoleUser>"
            f"<AssumedRoleId>{role_id}:{escape(session_name)}</AssumedRoleId>"
            f"<Arn>{escape(caller_arn)}</Arn>"
            "</AssumedRoleUser>"
            "<Credentials>"
            f"<AccessKeyId>{cred.access_key_id}</AccessKeyId>"
            f"<SecretAccessKey>{cred.secret_access_key}</SecretAccessKey>"
            f"<SessionToken>{cred.session_token}</SessionToken>"
            f"<Expiration>{_iso(cred.expiration)}</Expiration>"
            "</Credentials>"
            f"{packed}"
        )
        return body

    def _get_caller_identity(self, params: dict[str, str], key_id: str) -> str:
        with self._lock:
            arn = self._principals[key_id]
        user_id = key_id if ":user/" in arn else f"AROAFAKEROLEID:{arn.rpartition('/')[2]}"
        body = (
            f"<Arn>{escape(arn)}</Arn><UserId>{escape(user_id)}</UserId>"
            f"<Account>{self.account_id}</Account>"
        )
        return body


# ---------------------------------------------------------------------- v2 JSON helpers

# v1's codes (what the shared checks and faults raise) as SES v2 says them: the error
# shapes of botocore's sesv2 model, with their statuses. The rate answer, 429
# TooManyRequestsException "Maximum sending rate exceeded.", is as seen from real SES v2
# (pm-pmaas/etailors_amazon_ses#117); the daily quota's LimitExceededException is chosen
# (the model's other limit error). The signature codes are those of AWS's JSON services.
_V2_CODES: Final = {
    "ConfigurationSetDoesNotExist": (404, "NotFoundException"),
    "AccountSendingPausedException": (400, "SendingPausedException"),
    "InvalidParameterValue": (400, "BadRequestException"),
    "MissingParameter": (400, "BadRequestException"),
    "AccessDenied": (403, "AccessDeniedException"),
    "InvalidClientTokenId": (403, "UnrecognizedClientException"),
    "SignatureDoesNotMatch": (403, "InvalidSignatureException"),
    "ExpiredToken": (403, "ExpiredTokenException"),
    "MissingAuthenticationToken": (403, "MissingAuthenticationTokenException"),
    "IncompleteSignature": (400, "IncompleteSignatureException"),
}


def _v2_error_code(err: AwsError) -> tuple[int, str]:
    if err.code == "Throttling":
        if "daily" in err.message.lower():
            return 400, "LimitExceededException"
        return 429, "TooManyRequestsException"
    if err.code == "AccountSendingPausedException" and "suspended" in err.message:
        return 400, "AccountSuspendedException"
    return _V2_CODES.get(err.code, (err.status, err.code))


def _json_error_response(status: int, code: str, message: str, request_id: str) -> web.Response:
    headers = {"x-amzn-RequestId": request_id}
    if code == "ServiceUnavailable":
        # Chosen: an overloaded front end answers without a type, in plain text.
        return web.Response(status=status, text="Service Unavailable", headers=headers)
    if code == "InternalFailure":
        # Chosen: the type in the body only, the other place botocore looks for it.
        body = {"__type": f"com.amazonaws.sesv2#{code}", "message": message}
    else:
        headers["x-amzn-ErrorType"] = (
            f"{code}:http://internal.amazon.com/coral/com.amazonaws.sesv2/"
        )
        body = {"message": message}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


def _json_object(body: bytes) -> dict[str, object]:
    try:
        document = json.loads(body)
    except ValueError:
        raise AwsError(400, "BadRequestException", "The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise AwsError(400, "BadRequestException", "The request body must be a JSON object.")
    return document


def _flatten(value: object, skip: str, prefix: str = "") -> dict[str, str]:
    """JSON as query-style keys: {"A": {"B": ["x"]}} -> {"A.B.1": "x"}."""
    if isinstance(value, dict):
        items = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{prefix}.{i}", v) for i, v in enumerate(value, 1)]
    else:
        return {} if prefix == skip else {prefix: str(value)}
    flat: dict[str, str] = {}
    for key, item in items:
        flat.update(_flatten(item, skip, key))
    return flat


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------- XML helpers


def _message_id() -> str:
    # Shaped like real SES ids: 16 hex (region prefix + ms timestamp), a UUID, "-000000".
    return f"0107{int(time.time() * 1000):012x}-{uuid.uuid4()}-000000"


def _claimed_key_id(authorization: str) -> str | None:
    match = re.search(r"Credential=([^/,\s]+)/", authorization)
    return match.group(1) if match else None


def _ok_xml(action: str, ns: str, result: str, request_id: str) -> str:
    return (
        f'<{action}Response xmlns="{ns}">\n'
        f"  <{action}Result>{result}</{action}Result>\n"
        f"  <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\n"
        f"</{action}Response>\n"
    )


def _error_xml(ns: str, err: AwsError, request_id: str) -> str:
    return (
        f'<ErrorResponse xmlns="{ns}">\n'
        f"  <Error>\n    <Type>{err.fault_type}</Type>\n    <Code>{escape(err.code)}</Code>\n"
        f"    <Message>{escape(err.message)}</Message>\n  </Error>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        "</ErrorResponse>\n"
    )


def _xml_response(status: int, xml: str, request_id: str) -> web.Response:
    return web.Response(
        status=status,
        body=xml.encode(),
        content_type="text/xml",
        headers={"x-amzn-RequestId": request_id},
    )


# ---------------------------------------------------------------------- standalone


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake SES v1 + v2 + STS for manual tours")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--region", default="eu-west-3")
    parser.add_argument("--enforce-rate", action="store_true")
    parser.add_argument("--identity", action="append", default=[], help="extra verified identity")
    parser.add_argument(
        "--configuration-set", action="append", default=[], help="NAME[=Require|Optional]"
    )
    args = parser.parse_args(argv)
    aws = FakeAWS(region=args.region, port=args.port)
    aws.enforce_rate = args.enforce_rate
    for name in args.identity:
        aws.identities[name] = IdentityState()
    for spec in args.configuration_set:
        name, _, policy = spec.partition("=")
        aws.configuration_sets[name] = policy or "Require"
    aws.start()
    cred = aws.issue_credentials(expires_in=12 * 3600)
    # Standalone mode only: printing a fake credential is the point here.
    print(f"# fake AWS listening on {aws.url} (Ctrl-C to stop)")
    print(f"AWS_ENDPOINT_URL_SES={aws.url}")
    print(f"AWS_ENDPOINT_URL_STS={aws.url}")
    print(f"AWS_DEFAULT_REGION={aws.region}")
    print(f"AWS_ACCESS_KEY_ID={cred.access_key_id}")
    print(f"AWS_SECRET_ACCESS_KEY={cred.secret_access_key}")
    print(f"AWS_SESSION_TOKEN={cred.session_token}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        aws.stop()


if __name__ == "__main__":
    main()
