"""SigV4 for a POST to SES, as botocore's SigV4Auth computes it, with hmac and hashlib.

The headers botocore signs for SES's query (v1) and JSON (v2) APIs: content-type, host,
x-amz-date and the session token; the same canonical request, so the signature equals
botocore's for the same instant (tests/aws compare the two).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final, Protocol
from urllib.parse import quote, urlsplit

from botocore.utils import normalize_url_path

from proxy.settings import ConfigError

_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class Frozen(Protocol):
    access_key: str
    secret_key: str
    token: str | None


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
    """The Authorization and signed headers of POSTs to one endpoint."""

    def __init__(self, url: str, region: str, service: str, content_type: str) -> None:
        parts = urlsplit(url)
        if parts.query:
            raise ConfigError("ses.endpoint_url: a query string is not supported")
        self.region = region
        self.service = service
        self.content_type = content_type
        self.host = _host_header(url)
        self.canonical_path = quote(normalize_url_path(parts.path or "/"), safe="/~")

    def _key(self, secret: str, date: str) -> bytes:
        key = _hmac(f"AWS4{secret}".encode(), date)
        key = _hmac(key, self.region)
        key = _hmac(key, self.service)
        return _hmac(key, "aws4_request")

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
