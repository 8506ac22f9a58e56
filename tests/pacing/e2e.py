"""SMTP clients for the pacing tests: many at once, each message unique and traceable."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.fakes.aws import FakeAWS


@dataclass(frozen=True)
class Outcome:
    tag: str
    code: int
    text: str
    started: float  # time.monotonic() at DATA's end (the message is handed over)
    finished: float  # time.monotonic() at the reply

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}"


def raw_message(tag: str) -> bytes:
    return (
        f"From: noreply@example.com\r\nTo: friend@example.net\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@example.com>\r\n\r\nmessage {tag}\r\n"
    ).encode()


def send(port: int, tag: str, recipients: Sequence[str] = ("friend@example.net",)) -> Outcome:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        client.mail("noreply@example.com")
        for recipient in recipients:
            client.rcpt(recipient)
        started = time.monotonic()
        code, text = client.data(raw_message(tag))
        return Outcome(tag, code, text.decode(), started, time.monotonic())


def burst(ports: Sequence[int], count: int, clients: int, prefix: str) -> list[Outcome]:
    """`count` one-recipient messages from `clients` concurrent clients, spread over
    `ports` in turn; the outcomes in message order."""
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [
            pool.submit(send, ports[i % len(ports)], f"{prefix}-{i:03d}") for i in range(count)
        ]
        return [future.result() for future in futures]


def subjects_sent(fake_aws: FakeAWS) -> list[str]:
    """The tag of every message SES accepted, once per acceptance."""
    tags = []
    for message in fake_aws.sent:
        for line in message.raw.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                tags.append(line.removeprefix(b"Subject: ").decode())
    return tags


def throttles(fake_aws: FakeAWS) -> int:
    return sum(
        1 for r in fake_aws.requests if r.action == "SendRawEmail" and r.error_code == "Throttling"
    )


def send_calls(fake_aws: FakeAWS) -> int:
    return sum(1 for r in fake_aws.requests if r.action == "SendRawEmail")


def wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")
