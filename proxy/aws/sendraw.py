"""SendRawEmail on a lean path: the per-message hot path, without botocore's per-call machinery.

`LeanSend` is that path for any SES send: the body around the base64 of the message,
encoded off the loop in slices, the SigV4 signature, the credentials, the transport.
`SendRawEmail` (below) is v1's form and XML; `sendemail.SendEmail` is v2's JSON.

Stock aiobotocore is costly per message (docs/performance.md) and holds the loop on a
big one: it builds the form through its generic serializer, url-encodes it twice in pure
Python (once to sign, once to send) and runs a dozen event hooks, all on the event
loop. This module does the same request in a few C-speed steps:

- body: the query form botocore's serializer and `urlencode` produce, with
  `RawMessage.Data` = base64, then the three base64 characters that need escaping
  (`+ / =`) replaced with `bytes.replace`; the small fields go through `quote_plus`,
  exactly as `urlencode` does;
- signature: SigV4 with hmac/hashlib, the headers botocore signs for the query
  protocol (content-type, host, x-amz-date, x-amz-security-token), the same canonical
  request, so the signature equals botocore's for the same instant (tests compare);
- credentials: the session's own, `await get_frozen_credentials()` per call, so
  botocore's refresh and rotation keep working;
- transport: `transport.py`, keep-alive HTTP/1.1 to the endpoint botocore resolved
  for the client, with the client's timeouts and pool size and the CA bundle the
  session resolves (`ca_bundle`, `AWS_CA_BUNDLE`); when a proxy is set for the
  endpoint, the aiobotocore client's own HTTP session, which speaks to proxies;
- answers: the MessageId of a success is found with `bytes.find`; an error answer
  goes through botocore's own query parser, so the code, message and status handed
  to `delivery/ses_errors.classify` are the ones the stock client would give.

A message over `THREAD_THRESHOLD` is encoded and hashed in a worker thread, in
slices, and its body is written to the socket 256 KiB a step: the event loop never
waits on one long C call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, Self
from urllib.parse import quote, quote_plus, urlsplit
from xml.sax.saxutils import unescape

from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import NoCredentialsError
from botocore.parsers import QueryParser, ResponseParserError
from botocore.utils import normalize_url_path

from proxy.aws import transport
from proxy.message import Octets
from proxy.settings import ConfigError

API_VERSION: Final = "2010-12-01"
CONTENT_TYPE: Final = "application/x-www-form-urlencoded; charset=utf-8"
_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# Raw messages at least this large are encoded and hashed in a worker thread.
THREAD_THRESHOLD: Final = 256 * 1024
# Base64 input slice: a multiple of 3, so the slices' encodings concatenate cleanly.
_SLICE: Final = 3 * 256 * 1024
_HASH_SLICE: Final = 1024 * 1024


class SesErrorReply(Exception):
    """SES answered with an error: what botocore would have put in its ClientError."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code} (HTTP {status}): {message}")
        self.code = code
        self.message = message
        self.status = status


class Frozen(Protocol):
    access_key: str
    secret_key: str
    token: str | None


class Credentials(Protocol):
    async def get_frozen_credentials(self) -> Any: ...


class Poster(Protocol):
    """POSTs to the endpoint: (status, headers with lower-case names, body) of the answer."""

    async def post(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]: ...

    def close(self) -> None: ...


class BotocorePoster:
    """POSTs through the aiobotocore client's HTTP session: the way when a proxy
    stands between the relay and SES (transport.py does not speak to proxies)."""

    def __init__(self, http_session: Any, url: str) -> None:
        self._http = http_session
        self._url = url

    async def post(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        payload: bytes | io.BytesIO = body
        if len(body) >= THREAD_THRESHOLD:
            # Bytes go to the socket in one write: for a 10 MB message, a join, a send
            # and copies of the rest, all on the event loop. A stream goes in steps, with
            # the same Content-Length and the same octets.
            payload = io.BytesIO(body)
        prepared = AWSPreparedRequest(
            method="POST",
            url=self._url,
            headers=dict(headers),  # type: ignore[arg-type]  # botocore accepts any mapping
            body=payload,
            stream_output=False,
        )
        response = await self._http.send(prepared)
        return int(response.status_code), dict(response.headers), await response.content

    def close(self) -> None:
        """Nothing of its own to close: the HTTP session is the client's."""


@dataclass(frozen=True)
class SignedRequest:
    """One request, ready to send (also what tests compare with botocore's)."""

    url: str
    headers: dict[str, str]
    body: bytes


def escape_base64(encoded: bytes) -> bytes:
    """`quote_plus` of base64 text: only `+`, `/` and `=` are outside its safe set."""
    return encoded.replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D")


def _field(value: str) -> bytes:
    return quote_plus(value).encode("ascii")


@dataclass(frozen=True)
class SendOptions:
    """SendRawEmail's parameters besides Source, Destinations and the message."""

    configuration_set: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    from_arn: str | None = None
    source_arn: str | None = None
    return_path_arn: str | None = None


def form_parts(
    source: str, destinations: Sequence[str], options: SendOptions
) -> tuple[bytes, bytes]:
    """The form before and after the RawMessage.Data value, in botocore's field order
    (the members' order in the SES model's SendRawEmailRequest)."""
    head = [b"Action=SendRawEmail&Version=", API_VERSION.encode(), b"&Source=", _field(source)]
    if destinations:
        for index, destination in enumerate(destinations, 1):
            head.append(b"&Destinations.member.%d=%s" % (index, _field(destination)))
    else:
        head.append(b"&Destinations=")  # botocore's query serializer sends empty lists so
    head.append(b"&RawMessage.Data=")
    tail = []
    for key, arn in (
        (b"FromArn", options.from_arn),
        (b"SourceArn", options.source_arn),
        (b"ReturnPathArn", options.return_path_arn),
    ):
        if arn is not None:
            tail.append(b"&%s=%s" % (key, _field(arn)))
    for index, (name, value) in enumerate(options.tags, 1):
        tail.append(b"&Tags.member.%d.Name=%s" % (index, _field(name)))
        tail.append(b"&Tags.member.%d.Value=%s" % (index, _field(value)))
    if options.configuration_set is not None:
        tail.append(b"&ConfigurationSetName=" + _field(options.configuration_set))
    return b"".join(head), b"".join(tail)


Escape = Callable[[bytes], bytes]


def encode_body(
    head: bytes, raw: Octets, tail: bytes, escape: Escape = escape_base64
) -> tuple[bytes, str]:
    """The body (`raw` in base64, passed through `escape`, between `head` and `tail`)
    and its SHA-256 (hex), in one pass for small messages."""
    body = b"".join((head, escape(base64.b64encode(raw)), tail))
    return body, hashlib.sha256(body).hexdigest()


def encode_body_sliced(
    head: bytes, raw: Octets, tail: bytes, escape: Escape = escape_base64
) -> tuple[bytes, str]:
    """The same as `encode_body`, in slices: for a worker thread, so that no single
    C call holds the GIL for long (base64 and bytes.replace do not release it)."""
    view = memoryview(raw)
    parts = [head]
    for start in range(0, len(raw), _SLICE):
        parts.append(escape(base64.b64encode(view[start : start + _SLICE])))
    parts.append(tail)
    body = b"".join(parts)
    digest = hashlib.sha256()
    body_view = memoryview(body)
    for start in range(0, len(body), _HASH_SLICE):
        digest.update(body_view[start : start + _HASH_SLICE])  # releases the GIL
    return body, digest.hexdigest()


def _host_header(url: str) -> str:
    # botocore.auth._host_from_url: lower-case host, port only when not the default.
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class Signer:
    """SigV4 for a POST to SES (v1's query API, v2's JSON one), as botocore's SigV4Auth
    computes it: both sign content-type, host, x-amz-date and the session token."""

    def __init__(
        self, url: str, region: str, service: str, content_type: str = CONTENT_TYPE
    ) -> None:
        parts = urlsplit(url)
        if parts.query:
            raise ConfigError("ses.endpoint_url: a query string is not supported")
        self.region = region
        self.service = service
        self.content_type = content_type
        self.host = _host_header(url)
        self.canonical_path = quote(normalize_url_path(parts.path or "/"), safe="/~")
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, date: str) -> bytes:
        cached = self._keys.get((secret, date))
        if cached is None:
            key = _hmac(f"AWS4{secret}".encode(), date)
            key = _hmac(key, self.region)
            key = _hmac(key, self.service)
            cached = _hmac(key, "aws4_request")
            self._keys = {(secret, date): cached}  # one credential and day at a time
        return cached

    def headers(self, frozen: Frozen, payload_sha256: str, now: float) -> dict[str, str]:
        amz_date = time.strftime(_TIMESTAMP, time.gmtime(now))
        date = amz_date[:8]
        token = frozen.token
        canonical_headers = (
            f"content-type:{self.content_type}\nhost:{self.host}\nx-amz-date:{amz_date}\n"
        )
        signed = "content-type;host;x-amz-date"
        if token:
            canonical_headers += f"x-amz-security-token:{' '.join(token.split())}\n"
            signed += ";x-amz-security-token"
        canonical = (
            f"POST\n{self.canonical_path}\n\n{canonical_headers}\n{signed}\n{payload_sha256}"
        )
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
        )
        signature = hmac.new(
            self._key(frozen.secret_key, date), to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": self.content_type,
            "Host": self.host,
            "X-Amz-Date": amz_date,
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (
            f"{_ALGORITHM} Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers


class MalformedAnswer(ResponseParserError):
    """A success-shaped answer without a usable MessageId: never acknowledged (451)."""


def parse_message_id(body: bytes) -> str:
    """The MessageId of a 2xx answer; MalformedAnswer unless it is there and not empty."""
    start = body.find(b"<MessageId>")
    end = body.find(b"</MessageId>", start)
    if start < 0 or end < 0:
        raise MalformedAnswer("SES answered success without a MessageId")
    value = body[start + len(b"<MessageId>") : end].decode("utf-8", "replace").strip()
    value = unescape(value) if "&" in value else value
    if not value:
        raise MalformedAnswer("SES answered success with an empty MessageId")
    return value


def parse_error(status: int, headers: dict[str, str], body: bytes) -> SesErrorReply:
    """An error answer, read by botocore's own query parser (errors are rare: cost is moot).

    Raises ResponseParserError, like the stock client, for a body that is not XML.
    """
    answer = {"status_code": status, "headers": headers, "body": body}
    # No shape: botocore parses query errors without one.
    parsed = QueryParser().parse(answer, None)  # type: ignore[arg-type]
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):  # e.g. an empty <Error/>: botocore itself trips on it
        error = {}
    code = error.get("QueryErrorCode") or error.get("Code") or ""
    return SesErrorReply(str(code), str(error.get("Message") or ""), status)


def request_url(endpoint_url: str, allow_insecure_endpoint: bool, operation_path: str = "/") -> str:
    """The URL an operation is posted to (botocore's join of the endpoint and the
    operation's path: "/" for v1, "/v2/email/..." for v2); an endpoint that is not
    https is refused unless allowed."""
    parts = urlsplit(endpoint_url)
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_insecure_endpoint):
        raise ConfigError(
            f"ses.endpoint_url: {endpoint_url!r} is not https (set allow_insecure_endpoint: "
            "true only for tests)"
        )
    path = parts.path
    if operation_path == "/":
        path = path or "/"
    elif path.endswith("/"):
        path = path[:-1] + operation_path
    else:
        path += operation_path
    return parts._replace(path=path).geturl()


class LeanSend(ABC):
    """One SES sending operation on the lean path (see the module docstring): a
    subclass says where it goes and how its body and answers are written; the
    encoding off the loop, the signature, the credentials and the transport are here."""

    operation_path: ClassVar[str]
    content_type: ClassVar[str]

    def __init__(
        self,
        *,
        credentials: Credentials,
        poster: Poster,
        url: str,
        region: str,
        signing_name: str,
        user_agent: str,
    ) -> None:
        self._credentials = credentials
        self._poster = poster
        self.url = url
        self.signer = Signer(url, region, signing_name, self.content_type)
        self._user_agent = user_agent

    @classmethod
    def for_client(
        cls,
        client: Any,
        credentials: Credentials,
        allow_insecure_endpoint: bool,
        ca_bundle: str | None = None,
    ) -> Self:
        """The lean path of an aiobotocore SES client: its endpoint, region, signing
        name, user agent, timeouts and pool size; `ca_bundle` is the session's setting
        (None: botocore's default). Straight to the endpoint on transport.py, or
        through the client's own HTTP session when a proxy is set for the endpoint."""
        meta = client.meta
        config = meta.config
        url = request_url(meta.endpoint_url, allow_insecure_endpoint, cls.operation_path)
        poster: Poster
        if transport.proxy_for(url) is not None:
            poster = BotocorePoster(client._endpoint.http_session, url)
        else:
            poster = transport.Transport(
                url,
                tls=transport.tls_context(ca_bundle) if url.startswith("https:") else None,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                pool_size=config.max_pool_connections,
            )
        return cls(
            credentials=credentials,
            poster=poster,
            url=url,
            region=meta.region_name,
            signing_name=meta.service_model.signing_name,
            user_agent=config.user_agent or "ses-proxy",
        )

    def close(self) -> None:
        self._poster.close()

    async def frozen_credentials(self) -> Frozen:
        frozen = await self._credentials.get_frozen_credentials()
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise NoCredentialsError()
        result: Frozen = frozen
        return result

    def sign(
        self, frozen: Frozen, body: bytes, payload_sha256: str, now: float | None = None
    ) -> SignedRequest:
        headers = self.signer.headers(frozen, payload_sha256, time.time() if now is None else now)
        headers["User-Agent"] = self._user_agent
        return SignedRequest(self.url, headers, body)

    @abstractmethod
    def parts(
        self, source: str, destinations: Sequence[str], options: SendOptions
    ) -> tuple[bytes, bytes]:
        """The body before and after the base64 of the raw message."""

    @abstractmethod
    def escape(self, encoded: bytes) -> bytes:
        """The base64 text as the body carries it (the form escapes it, JSON does not)."""

    @abstractmethod
    def message_id(self, body: bytes) -> str:
        """The MessageId of a 2xx answer; MalformedAnswer unless it is there, not empty."""

    @abstractmethod
    def error(self, status: int, headers: dict[str, str], body: bytes) -> SesErrorReply:
        """What an error answer said, as the stock client would have read it."""

    async def build(
        self,
        source: str,
        destinations: Sequence[str],
        raw: Octets,
        options: SendOptions,
        now: float | None = None,
    ) -> SignedRequest:
        head, tail = self.parts(source, destinations, options)
        if len(raw) >= THREAD_THRESHOLD:
            body, digest = await asyncio.to_thread(encode_body_sliced, head, raw, tail, self.escape)
        else:
            body, digest = encode_body(head, raw, tail, self.escape)
        frozen = await self.frozen_credentials()
        return self.sign(frozen, body, digest, now)

    async def send(
        self,
        source: str,
        destinations: Sequence[str],
        raw: Octets,
        options: SendOptions,
    ) -> str:
        """SES's MessageId; SesErrorReply for an error answer; botocore's exceptions
        (BotoCoreError subclasses) for no answer, a broken one or no credentials."""
        request = await self.build(source, destinations, raw, options)
        status, headers, body = await self._poster.post(request.headers, request.body)
        if status < 300:
            return self.message_id(body)
        raise self.error(status, headers, body)


class SendRawEmail(LeanSend):
    """SES v1 SendRawEmail: the query form, its XML answers."""

    operation_path = "/"
    content_type = CONTENT_TYPE

    def parts(
        self, source: str, destinations: Sequence[str], options: SendOptions
    ) -> tuple[bytes, bytes]:
        return form_parts(source, destinations, options)

    def escape(self, encoded: bytes) -> bytes:
        return escape_base64(encoded)

    def message_id(self, body: bytes) -> str:
        return parse_message_id(body)

    def error(self, status: int, headers: dict[str, str], body: bytes) -> SesErrorReply:
        return parse_error(status, headers, body)
