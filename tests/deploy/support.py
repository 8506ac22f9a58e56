"""Shared helpers for the deploy tests: paths, external tools, SMTP and HTTP on loopback."""

from __future__ import annotations

import json
import smtplib
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from tests import harness
from tests.harness import REPO

DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULES = PROMETHEUS_DIR / "ses-proxy.rules.yml"

ALLOWED_SENDER = "noreply@example.com"
DENIED_SENDER = "mallory@attacker.test"


# The Debian package of each tool the deploy tests drive.
_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "systemd-analyze": "systemd",
}


def require_tool(name: str) -> str:
    return harness.require_tool(name, _PACKAGES.get(name, name))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def message(sender: str, recipient: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg.set_content(f"{subject}\n")
    return msg


def send(port: int, sender: str, recipient: str, subject: str = "hello") -> None:
    """One message through the relay on 127.0.0.1:port; smtplib raises on any refusal."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.send_message(message(sender, recipient, subject))


def send_refused(port: int, sender: str, recipient: str) -> int:
    """Try a message that the relay must refuse at MAIL FROM; the reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        try:
            client.send_message(message(sender, recipient, "should be refused"))
        except smtplib.SMTPSenderRefused as refused:
            return refused.smtp_code
    raise AssertionError(f"{sender} was accepted")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return json.load(response)


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        body: bytes = response.read()
        return body.decode()
