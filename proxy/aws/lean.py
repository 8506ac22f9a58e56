"""The lean per-message send to SES, without botocore's per-call machinery.

`LeanSend` is that path for either API: the body encoded (`payload.py`, off the loop for a
big message), the SigV4 signature (`sigv4.py`), the session's credentials, and the HTTP
POST (`transport.py`, keep-alive to the endpoint botocore resolved for the client, with
the client's timeouts and pool size and the CA bundle the session resolves; behind a
proxy, the aiobotocore client's own HTTP session). A subclass says where its operation
goes and how its body and answers are written: `sendraw.SendRawEmail` (v1's form and
XML), `sendemail.SendEmail` (v2's JSON).

Stock aiobotocore is costly per message (docs/performance.md) and holds the loop on a
big one: it builds the request through its generic serializer, url-encodes a form twice
in pure Python (once to sign, once to send) and runs a dozen event hooks, all on the
event loop. Credentials are the session's own, `await get_frozen_credentials()` per
call, so botocore's refresh and rotation keep working.
"""

from __future__ import annotations

import asyncio
import io
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self
from urllib.parse import urlsplit

from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import NoCredentialsError
from botocore.parsers import ResponseParserError

from proxy.aws import transport
from proxy.aws.payload import THREAD_THRESHOLD, encode_body, encode_body_sliced
from proxy.aws.sigv4 import Frozen, Signer
from proxy.message import Octets
from proxy.settings import ConfigError


class SesErrorReply(Exception):
    """SES answered with an error: what botocore would have put in its ClientError."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code} (HTTP {status}): {message}")
        self.code = code
        self.message = message
        self.status = status


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


@dataclass(frozen=True)
class SendOptions:
    """SendRawEmail's parameters besides Source, Destinations and the message."""

    configuration_set: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    from_arn: str | None = None
    source_arn: str | None = None
    return_path_arn: str | None = None


class MalformedAnswer(ResponseParserError):
    """A success-shaped answer without a usable MessageId: never acknowledged (451)."""


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
