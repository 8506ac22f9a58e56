"""The benchmark's floor: what the latency load measures for a relay that does nothing.

An asyncio SMTP responder that checks nothing and logs nothing: it answers every
command at once and, at the end of DATA, posts the message to the fake SES (with the
relay's own form encoding, signer and HTTP transport, so that the fake counts it) and
answers 250 when SES answers. The latencies the load generator measures against it
are the share of the machine and of the harness: the client, the kernel, the fake SES
and the hops between the three processes. `make bench --only floor` prints them in the
relay's table.

Run: python -m tests.bench.floor --ses-url URL (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
and AWS_SESSION_TOKEN in the environment)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from dataclasses import dataclass

from proxy import eventloop
from proxy.aws.lean import SendOptions
from proxy.aws.payload import encode_body
from proxy.aws.sendraw import CONTENT_TYPE, form_parts
from proxy.aws.sigv4 import Signer
from proxy.aws.transport import Transport, tls_context


@dataclass
class Keys:
    access_key: str
    secret_key: str
    token: str | None


class Ses:
    def __init__(self, url: str, region: str) -> None:
        # SES over TLS (bench --tls): the test CA the benchmark made, as the relay trusts it.
        tls = tls_context(os.environ["AWS_CA_BUNDLE"]) if url.startswith("https:") else None
        self.transport = Transport(url, tls=tls, connect_timeout=5, read_timeout=30, pool_size=50)
        self.signer = Signer(url, region, "ses", CONTENT_TYPE)
        self.keys = Keys(
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
            os.environ.get("AWS_SESSION_TOKEN"),
        )

    async def send(self, recipients: list[str], raw: bytes) -> int:
        head, tail = form_parts("noreply@example.com", recipients, SendOptions())
        body, digest = encode_body(head, raw, tail)
        headers = self.signer.headers(self.keys, digest, time.time())
        status, _, _ = await self.transport.post(headers, body)
        return status


class Responder(asyncio.Protocol):
    def __init__(self, ses: Ses) -> None:
        self.ses = ses
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.in_data = False
        self.recipients: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.write(b"220 floor\r\n")

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                raw, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
                self.in_data = False
                recipients, self.recipients = self.recipients, []
                asyncio.get_running_loop().create_task(self.deliver(recipients, raw))
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            verb = line[:4].upper()
            if verb == b"RCPT":  # the fake SES counts messages by their recipients
                self.recipients.append(line.partition(b"<")[2].partition(b">")[0].decode())
            if verb == b"DATA":
                self.in_data = True
                self.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                self.write(b"221 bye\r\n")
                assert self.transport is not None
                self.transport.close()
                return
            else:
                self.write(b"250 ok\r\n")

    async def deliver(self, recipients: list[str], raw: bytes) -> None:
        status = await self.ses.send(recipients, raw)
        self.write(b"250 sent\r\n" if status == 200 else b"451 not sent\r\n")


async def serve(port: int, ses: Ses) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Responder(ses), "127.0.0.1", port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ses-url", required=True)
    parser.add_argument("--region", default="eu-west-3")
    args = parser.parse_args()
    gc.disable()  # a floor: no collector pauses either
    # The relay's own loop (proxy/eventloop.py), so that the two differ only in the work.
    with asyncio.Runner(loop_factory=eventloop.new_event_loop) as runner:
        runner.run(serve(args.port, Ses(args.ses_url, args.region)))


if __name__ == "__main__":
    main()
