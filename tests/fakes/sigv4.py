"""An independent AWS Signature Version 4 judge for the fakes.

Written from the public SigV4 description with hashlib/hmac only. It deliberately
does not import botocore: a hand-written signer in the proxy is compared against
botocore's, and the fake must judge both without sharing code with either.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"


class SigV4Error(Exception):
    """A request that AWS would refuse before looking at its parameters."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AuthHeader:
    access_key_id: str
    date: str  # YYYYMMDD from the credential scope
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def _incomplete(message: str) -> SigV4Error:
    return SigV4Error(400, "IncompleteSignature", message)


def parse_authorization(value: str) -> AuthHeader:
    """Split `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{algorithm}'")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key.strip()] = val.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in parts:
            raise _incomplete(
                f"Authorization header requires '{required}' parameter. "
                f"Authorization={value.split(',')[0]}"
            )
    scope = parts["Credential"].split("/")
    if len(scope) != 5:
        raise _incomplete(
            "Credential should be scoped to a valid region, service and terminator: "
            "<key>/<date>/<region>/<service>/aws4_request"
        )
    key_id, date, region, service, terminator = scope
    return AuthHeader(
        access_key_id=key_id,
        date=date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=tuple(parts["SignedHeaders"].split(";")),
        signature=parts["Signature"],
    )


def _uri_encode(text: str) -> str:
    # RFC 3986 unreserved characters stay; everything else is %XX (upper case).
    return quote(text, safe="-_.~")


def canonical_uri(raw_path: str) -> str:
    """Non-S3 services normalise the path and encode it once more (double encoding)."""
    path = raw_path or "/"
    normalized = posixpath.normpath(path)
    if path.endswith("/") and normalized != "/":
        normalized += "/"
    if normalized.startswith("//"):  # normpath keeps a leading '//' (POSIX rule)
        normalized = "/" + normalized.lstrip("/")
    return quote(normalized, safe="/~")


def canonical_query(raw_query: str) -> str:
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, val = item.partition("=")
        pairs.append((_uri_encode(unquote(key)), _uri_encode(unquote(val))))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_header_value(values: Iterable[str]) -> str:
    # Trim, collapse runs of spaces, join repeated headers with commas.
    return ",".join(" ".join(v.split()) for v in values)


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, list[str]],
    signed_headers: tuple[str, ...],
    payload_sha256: str,
) -> str:
    """`headers` maps lower-case names to every value the request carried."""
    lines = [
        method.upper(),
        canonical_uri(raw_path),
        canonical_query(raw_query),
    ]
    lines.extend(
        f"{name}:{canonical_header_value(headers.get(name, []))}" for name in signed_headers
    )
    lines.append("")  # canonical headers end with a newline
    lines.append(";".join(signed_headers))
    lines.append(payload_sha256)
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signature(secret_access_key: str, auth: AuthHeader, to_sign: str) -> str:
    key = _hmac(f"AWS4{secret_access_key}".encode(), auth.date)
    key = _hmac(key, auth.region)
    key = _hmac(key, auth.service)
    key = _hmac(key, auth.terminator)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.lower().encode())
