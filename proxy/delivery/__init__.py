"""Delivery: the one small interface every backend (and pacing) implements.

`send(envelope, raw)` returns the message id the peer gave, or raises a
TransientDeliveryError (the SMTP client is told 451 and retries: nothing was sent)
or a PermanentDeliveryError (554: retrying the same message cannot succeed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proxy.message import Octets


@dataclass(frozen=True)
class Envelope:
    """What SES is told besides the raw bytes: Source and Destinations (lowercased), the
    configuration set and the message tags the policy chose."""

    mail_from: str
    recipients: tuple[str, ...]
    configuration_set: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    client: str = "-"  # the session's client: pacing's bucket, never sent to SES


class DeliveryError(Exception):
    """A send that did not happen. `reason` is a metric label; `reply` the SMTP answer."""

    def __init__(self, reason: str, reply: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.reply = reply
        self.detail = detail


class TransientDeliveryError(DeliveryError):
    """Nothing was sent; the same message may succeed later (451)."""


class PermanentDeliveryError(DeliveryError):
    """The peer refused this message itself (554)."""


class Delivery(Protocol):
    async def start(self) -> None:
        """Acquire what sending needs (clients, credentials); raise if it cannot."""

    async def send(self, envelope: Envelope, raw: Octets) -> str:
        """Send `raw` to `envelope.recipients`; return the peer's message id."""

    async def close(self) -> None:
        """Release clients and connections."""

    def ready(self) -> bool:
        """True while a send could be attempted (for /readyz)."""
