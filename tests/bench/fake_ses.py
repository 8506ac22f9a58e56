"""A fast fake SES for the benchmark: plain asyncio HTTP/1.1 with keep-alive.

tests/fakes/aws.py answers like SES in every detail and is what behaviour tests use;
it is too slow to stand in front of a relay doing thousands of messages a second.
This one knows SendRawEmail and GetSendQuota (and v2's SendEmail and GetAccount)
only, still verifies every SigV4 signature (with tests/fakes/sigv4.py, which shares
no code with botocore or the relay; a send's once its answer is written, so that the
check adds nothing to the latency measured, and a bad one is counted, never as a
message), and records each message's recipients so the benchmark can check that
every message arrived exactly once. `--latency-ms` delays every answer.

Control: GET /__stats (JSON), POST /__reset. GET /__credentials is a container-credentials
endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI) serving the credential the fake checks,
valid for six hours: the relay takes it as it does in production, as a refreshable
credential. With `--tls-cert` and `--tls-key` it also serves HTTPS on a second port (the
first line it prints: "listening PORT tls PORT"), for SES over TLS as in production;
control and credentials stay on plain HTTP (botocore takes a container credential
from plain HTTP on loopback).
Run: python -m tests.bench.fake_ses --port P --key-id K --secret S --token T --max-send-rate R
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import gc
import hashlib
import json
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from tests.fakes import sigv4

SES_NS = "http://ses.amazonaws.com/doc/2010-12-01/"


@dataclass
class Stats:
    messages: int = 0
    raw_bytes: int = 0
    bad_signatures: int = 0
    errors: int = 0
    quota_calls: int = 0
    credential_fetches: int = 0
    recipients: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        duplicates = sum(n - 1 for n in self.recipients.values() if n > 1)
        return {
            "messages": self.messages,
            "raw_bytes": self.raw_bytes,
            "bad_signatures": self.bad_signatures,
            "errors": self.errors,
            "quota_calls": self.quota_calls,
            "credential_fetches": self.credential_fetches,
            "distinct": len(self.recipients),
            "duplicates": duplicates,
        }


@dataclass(frozen=True)
class Secret:
    key_id: str
    secret: str
    token: str | None
    region: str


def _response(status: int, body: bytes, content_type: str = "text/xml") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"x-amzn-RequestId: {uuid.uuid4()}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _error(status: int, code: str, message: str) -> bytes:
    xml = (
        f'<ErrorResponse xmlns="{SES_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )
    return _response(status, xml.encode())


def _ok(action: str, result: str) -> bytes:
    xml = (
        f'<{action}Response xmlns="{SES_NS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return _response(200, xml.encode())


def parse_form(body: bytes) -> tuple[dict[str, str], bytes | None]:
    """The form fields, and RawMessage.Data decoded (kept apart: it may be 14 MB)."""
    params: dict[str, str] = {}
    raw = None
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"RawMessage.Data":
            encoded = value.replace(b"%2B", b"+").replace(b"%2F", b"/").replace(b"%3D", b"=")
            raw = base64.b64decode(encoded, validate=True)
        else:
            params[unquote_plus(name.decode())] = unquote_plus(value.decode())
    return params, raw


V2_SEND_PATH = "/v2/email/outbound-emails"
V2_ACCOUNT_PATH = "/v2/email/account"


def _message_id() -> str:
    return f"0107{int(time.time() * 1000):012x}-{uuid.uuid4()}-000000"


class FakeSes:
    def __init__(self, secret: Secret, latency: float, max_send_rate: float) -> None:
        self.secret = secret
        self.latency = latency
        self.max_send_rate = max_send_rate
        self.stats = Stats()

    def verified(
        self, method: str, target: str, headers: dict[str, list[str]], body: bytes
    ) -> bool:
        try:
            auth = sigv4.parse_authorization(headers.get("authorization", [""])[0])
        except sigv4.SigV4Error:
            return False
        if (
            auth.access_key_id != self.secret.key_id
            or auth.service != "ses"
            or auth.region != self.secret.region
            or headers.get("x-amz-security-token", [None])[0] != self.secret.token
        ):
            return False
        path, _, query = target.partition("?")
        canonical = sigv4.canonical_request(
            method, path, query, headers, auth.signed_headers, hashlib.sha256(body).hexdigest()
        )
        amz_date = headers.get("x-amz-date", [""])[0]
        to_sign = sigv4.string_to_sign(amz_date, auth.scope, canonical)
        expected = sigv4.signature(self.secret.secret, auth, to_sign)
        return sigv4.signatures_match(expected, auth.signature)

    def handle(
        self, method: str, target: str, headers: dict[str, list[str]], body: bytes
    ) -> tuple[bytes, Callable[[], None] | None]:
        """The answer, and what is left to do once it is written: a SendRawEmail is
        answered first and its form and signature checked after, so that the checks
        are not in the latency measured (an instant fake); a bad one still shows in
        the stats."""
        if target == "/__stats":
            return _response(
                200, json.dumps(self.stats.as_json()).encode(), "application/json"
            ), None
        if target == "/__credentials":
            self.stats.credential_fetches += 1
            expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))
            credential = {
                "AccessKeyId": self.secret.key_id,
                "SecretAccessKey": self.secret.secret,
                "Token": self.secret.token,
                "Expiration": expiration,
            }
            return _response(200, json.dumps(credential).encode(), "application/json"), None
        if target == "/__reset":
            self.stats = Stats()
            gc.collect()
            return _response(200, b"{}", "application/json"), None
        if b"Action=SendRawEmail&" in body:
            return self._sent_raw_email(), lambda: self._record(method, target, headers, body)
        if target == V2_SEND_PATH:
            answer = json.dumps({"MessageId": _message_id()}).encode()
            return _response(200, answer, "application/json"), lambda: self._record_v2(
                method, target, headers, body
            )
        if target == V2_ACCOUNT_PATH:
            if not self.verified(method, target, headers, body):
                self.stats.bad_signatures += 1
                return _error(403, "SignatureDoesNotMatch", "The request signature is wrong."), None
            self.stats.quota_calls += 1
            quota = {
                "Max24HourSend": 1e9,
                "MaxSendRate": self.max_send_rate,
                "SentLast24Hours": 0.0,
            }
            return _response(
                200, json.dumps({"SendQuota": quota}).encode(), "application/json"
            ), None
        try:
            params, _ = parse_form(body)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            self.stats.errors += 1
            return _error(400, "InvalidParameterValue", "Invalid form."), None
        action = params.get("Action")
        if action == "GetSendQuota":
            if not self.verified(method, target, headers, body):
                self.stats.bad_signatures += 1
                return _error(403, "SignatureDoesNotMatch", "The request signature is wrong."), None
            self.stats.quota_calls += 1
            return _ok(
                action,
                f"<Max24HourSend>1.0E9</Max24HourSend><MaxSendRate>{self.max_send_rate}</MaxSendRate>"
                "<SentLast24Hours>0.0</SentLast24Hours>",
            ), None
        self.stats.errors += 1
        return _error(400, "InvalidAction", f"Could not find operation {action}"), None

    def _sent_raw_email(self) -> bytes:
        return _ok("SendRawEmail", f"<MessageId>{_message_id()}</MessageId>")

    def _record_v2(
        self, method: str, target: str, headers: dict[str, list[str]], body: bytes
    ) -> None:
        """A SESv2 SendEmail already answered, counted as `_record` counts v1's."""
        try:
            document = json.loads(body)
            raw = base64.b64decode(document["Content"]["Raw"]["Data"], validate=True)
            destinations = document["Destination"]["ToAddresses"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            self.stats.errors += 1
            return
        if not self.verified(method, target, headers, body):
            self.stats.bad_signatures += 1
            return
        self.stats.messages += 1
        self.stats.raw_bytes += len(raw)
        self.stats.recipients[",".join(destinations)] += 1

    def _record(self, method: str, target: str, headers: dict[str, list[str]], body: bytes) -> None:
        """A SendRawEmail already answered: a malformed form or a bad signature is
        counted as such (the run fails), a good one counted per recipient list."""
        try:
            params, raw = parse_form(body)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = None
        if raw is None:
            self.stats.errors += 1
            return
        if not self.verified(method, target, headers, body):
            self.stats.bad_signatures += 1
            return
        destinations = [v for k, v in sorted(params.items()) if k.startswith("Destinations.")]
        self.stats.messages += 1
        self.stats.raw_bytes += len(raw)
        self.stats.recipients[",".join(destinations)] += 1


class HttpConnection(asyncio.Protocol):
    def __init__(self, ses: FakeSes) -> None:
        self.ses = ses
        self.buffer = bytearray()
        self.head: tuple[str, str, dict[str, list[str]]] | None = None
        self.need = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.head is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                del self.buffer[: end + 4]
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, list[str]] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.setdefault(name.strip().lower(), []).append(value.strip())
                self.head = (method, target, headers)
                self.need = int(headers.get("content-length", ["0"])[0])
            if len(self.buffer) < self.need:
                return
            body = bytes(self.buffer[: self.need])
            del self.buffer[: self.need]
            method, target, headers = self.head
            self.head = None
            answer, after = self.ses.handle(method, target, headers, body)
            assert self.transport is not None
            if self.ses.latency > 0:
                asyncio.get_running_loop().call_later(
                    self.ses.latency, self.transport.write, answer
                )
            else:
                self.transport.write(answer)
            if after is not None:
                after()


async def serve(host: str, port: int, ses: FakeSes, tls: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(ses), host, port, backlog=1024)
    announced = f"listening {server.sockets[0].getsockname()[1]}"
    servers = [server]
    if tls is not None:
        secure = await loop.create_server(
            lambda: HttpConnection(ses), host, 0, backlog=1024, ssl=tls
        )
        announced += f" tls {secure.sockets[0].getsockname()[1]}"
        servers.append(secure)
    print(announced, flush=True)
    await asyncio.gather(*(each.serve_forever() for each in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="eu-west-3")
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--token", default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    # SES's MaxSendRate (recipients/s), which the relay paces to: run.py's --max-send-rate.
    parser.add_argument("--max-send-rate", type=float, required=True)
    parser.add_argument("--tls-cert", help="also serve HTTPS, with this certificate chain")
    parser.add_argument("--tls-key")
    args = parser.parse_args(argv)
    ses = FakeSes(
        Secret(args.key_id, args.secret, args.token, args.region),
        args.latency_ms / 1000,
        args.max_send_rate,
    )
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    # An instant fake: no collector pass in the latencies measured; it collects when
    # the benchmark resets it between loads.
    gc.disable()
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, ses, tls))
    except ImportError:
        asyncio.run(serve(args.host, args.port, ses, tls))


if __name__ == "__main__":
    main()
