"""Translation between SMTP and the boxes behind it: policy, hygiene, delivery.

The handler decides nothing itself. It asks `policy` for a decision, `message` for
the header scan and the cleaned bytes, the delivery box for a message id, and
answers with the reply the table in `replies.py` gives for the outcome. It also
counts and logs every decision, one line each, never with a body or a secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import TLSSetupException

from proxy import message, policy
from proxy.clients import aws_access_key_tail
from proxy.delivery import Delivery, DeliveryError, Envelope, PermanentDeliveryError
from proxy.observability.metrics import NO_CLIENT, Metrics
from proxy.smtp import replies
from proxy.smtp.inflight import Hold, needed_for
from proxy.smtp.replies import Reply

if TYPE_CHECKING:
    from proxy.smtp.session import RelaySession

log = logging.getLogger("proxy.smtp")

# Above this size a message is checked and cleaned in a worker thread: the work is
# pure and C-speed, yet on a 10 MB message it would hold the event loop (and every
# other session) for tens of milliseconds.
_OFF_LOOP_BYTES = 256 * 1024
# Access key ids already reported (their last four characters): a bounded memory.
_AWS_KEYS_REMEMBERED = 1000


def _vet(
    rules: policy.Rules, raw: message.Octets
) -> policy.Rejected | tuple[policy.Accepted, message.Octets]:
    """The policy's verdict on a message; if it passes, with the message cleaned for sending."""
    decision = policy.check_raw_message(rules, raw)
    if isinstance(decision, policy.Rejected):
        return decision
    return decision, message.strip_private_headers(raw)


@dataclass(frozen=True)
class ReceivedData:
    """What DATA produced: the unstuffed message (the bytearray the reader grew), or why
    it was discarded while reading (over the size limit, a line over 998 octets, no room
    left in max_inflight_bytes)."""

    raw: message.Octets
    size: int
    too_big: bool = False
    line_too_long: bool = False
    no_room: bool = False


class RelayHandler:
    def __init__(self, rules: policy.Rules, delivery: Delivery, metrics: Metrics) -> None:
        self.rules = rules  # for sessions that start from now on (a reload replaces them)
        self._delivery = delivery
        self._metrics = metrics
        # Sessions waiting for a send, their client there or not (a hang-up does not
        # cut a send: RelaySession.connection_lost): shutdown waits for them.
        self.in_flight: set[RelaySession] = set()
        self._aws_keys_said: set[str] = set()

    async def handle_MAIL(
        self, server: RelaySession, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if server.shutting_down:
            return replies.SHUTTING_DOWN.text
        if server.require_tls and not server.encrypted:
            return self._reject(
                server, replies.TLS_REQUIRED, "MAIL before TLS", "mail", {"from": address}
            ).text
        if server.auth_mode == "required" and not server.authenticated and server.client is None:
            return self._reject(
                server, replies.AUTH_REQUIRED, "MAIL before AUTH", "mail", {"from": address}
            ).text
        declared = _declared_size(options)
        decision = policy.check_declared_size(server.rules, declared)
        if (
            isinstance(decision, policy.Accepted)
            and declared is not None
            and not server.listeners.inflight.fits(declared)
        ):
            return self._no_room(server, {"from": address, "size": declared}).text
        if isinstance(decision, policy.Accepted):
            decision = policy.check_sender(server.rules, address)
        if isinstance(decision, policy.Rejected):
            return self._reject(
                server,
                replies.VERDICTS[decision.verdict],
                decision.detail,
                "mail",
                {"from": address},
            ).text
        envelope.mail_from = decision.address
        envelope.mail_options.extend(options)
        return replies.SENDER_OK.text

    async def handle_RCPT(
        self, server: RelaySession, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        decision = policy.check_recipient(server.rules, address, len(envelope.rcpt_tos))
        if isinstance(decision, policy.Rejected):
            return self._reject(
                server,
                replies.VERDICTS[decision.verdict],
                decision.detail,
                "rcpt",
                {"from": envelope.mail_from, "to": [address]},
            ).text
        if decision.address not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(decision.address)
        return replies.RECIPIENT_OK.text

    async def handle_EHLO(
        self, server: RelaySession, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return server.ehlo_lines()

    async def handle_RSET(self, server: RelaySession, session: Any, envelope: Any) -> str:
        return replies.RESET_OK.text

    async def handle_NOOP(self, server: RelaySession, session: Any, envelope: Any, arg: str) -> str:
        return replies.NOOP_OK.text

    async def handle_VRFY(
        self, server: RelaySession, session: Any, envelope: Any, address: str
    ) -> str:
        return replies.VRFY_NOT_OFFERED.text

    async def handle_QUIT(self, server: RelaySession, session: Any, envelope: Any) -> str:
        return replies.GOODBYE.text

    def log_auth(self, server: RelaySession, result: str, username: str | None) -> None:
        """One line per AUTH decision; the username, never the password (and of a username
        that is an AWS access key id, only its last four characters)."""
        tail = aws_access_key_tail(username) if username is not None else None
        if tail is not None:
            username = f"…{tail}"
        log.info(
            "auth",
            extra={
                "event": "auth",
                "result": result,
                "username": username,
                **server.log_context(),
            },
        )

    def aws_key_as_username(self, server: RelaySession, tail: str) -> None:
        """An SES SMTP credential still in an application: say it once per key."""
        self._metrics.auth_aws_key_usernames.inc()
        if tail in self._aws_keys_said:
            return
        if len(self._aws_keys_said) < _AWS_KEYS_REMEMBERED:
            self._aws_keys_said.add(tail)
        log.warning(
            "an AWS access key id is used as SMTP username: delete that SES SMTP credential",
            extra={
                "event": "aws_key_as_smtp_username",
                "key_id_ends_with": tail,
                **server.log_context(),
            },
        )

    def log_refusal(self, server: RelaySession, reply: Reply) -> None:
        log.info(
            "refused",
            extra={
                "event": "refused",
                "reason": reply.reason,
                "reply": reply.code,
                **server.log_context(),
            },
        )

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client's failed handshake (a scanner, a wrong protocol, a dropped line):
            # aiosmtpd closes the connection after this; nothing of ours went wrong.
            cause = error.__cause__
            log.info(
                "TLS handshake failed",
                extra={
                    "event": "tls_handshake_failed",
                    "error": type(cause).__name__ if cause is not None else "unknown",
                },
            )
            return replies.INTERNAL_ERROR.text
        log.error(
            "internal error in an SMTP session",
            exc_info=error,
            extra={"event": "internal_error"},
        )
        self._metrics.messages_deferred.labels(NO_CLIENT, "internal").inc()
        return replies.INTERNAL_ERROR.text

    async def transaction(
        self,
        server: RelaySession,
        mail_from: str,
        recipients: tuple[str, ...],
        data: ReceivedData,
        hold: Hold,
    ) -> Reply:
        """The reply to a message; `hold` is what it holds of max_inflight_bytes (the
        caller gives it back when the reply is sent)."""
        started = time.perf_counter()
        self._metrics.messages_received.labels(server.client_name).inc()
        self._metrics.message_size.observe(data.size)
        # What a log line about this message says of it: enough to answer "did the
        # mail to X go out?", nothing of its content but the client's Message-ID.
        about = {
            "from": mail_from,
            "to": list(recipients),
            "message_id": message.message_id(data.raw),
            "size": data.size,
        }
        if data.too_big:
            verdict = replies.VERDICTS[policy.Verdict.SIZE_EXCEEDED]
            detail = f"DATA exceeded {server.rules.max_message_bytes} octets"
            return self._reject(server, verdict, detail, "data", about)
        if data.line_too_long:
            verdict = replies.VERDICTS[policy.Verdict.MALFORMED]
            return self._reject(server, verdict, "a line is over 998 octets", "data", about)
        # The cleaned copy and the encoded request, taken before either is made.
        if data.no_room or not hold.take(needed_for(len(data.raw)) - len(data.raw)):
            return self._no_room(server, about)
        if len(data.raw) > _OFF_LOOP_BYTES:
            vetted = await asyncio.to_thread(_vet, server.rules, data.raw)
        else:
            vetted = _vet(server.rules, data.raw)
        if isinstance(vetted, policy.Rejected):
            verdict = replies.VERDICTS[vetted.verdict]
            return self._reject(server, verdict, vetted.detail, "data", about)
        accepted, cleaned = vetted
        about["size"] = len(cleaned)
        envelope = Envelope(
            mail_from=mail_from,
            recipients=recipients,
            configuration_set=accepted.configuration_set,
            tags=accepted.tags,
            client=server.client_name,
        )
        try:
            ses_message_id = await self._delivery.send(envelope, cleaned)
        except DeliveryError as error:
            return self._delivery_failed(server, error, about, started)
        self._metrics.messages_sent.labels(server.client_name).inc()
        log.info(
            "sent",
            extra={
                "event": "sent",
                **server.log_context(),
                **about,
                "ses_message_id": ses_message_id,
                "duration_ms": _milliseconds_since(started),
            },
        )
        return replies.sent(ses_message_id)

    def _delivery_failed(
        self, server: RelaySession, error: DeliveryError, about: dict[str, Any], started: float
    ) -> Reply:
        permanent = isinstance(error, PermanentDeliveryError)
        if permanent:
            self._metrics.messages_failed.labels(error.reason).inc()
        else:
            self._metrics.messages_deferred.labels(server.client_name, error.reason).inc()
        log.warning(
            "failed" if permanent else "deferred",
            extra={
                "event": "failed" if permanent else "deferred",
                "reason": error.reason,
                "detail": error.detail,
                **server.log_context(),
                **about,
                "duration_ms": _milliseconds_since(started),
            },
        )
        return Reply(error.reply, error.reason)

    def _no_room(self, server: RelaySession, about: dict[str, Any]) -> Reply:
        self._metrics.messages_deferred.labels(server.client_name, "inflight").inc()
        log.warning(
            "deferred",
            extra={
                "event": "deferred",
                "reason": "inflight",
                "detail": "no room left in smtp.max_inflight_bytes",
                **server.log_context(),
                **about,
            },
        )
        return replies.NO_ROOM

    def _reject(
        self,
        server: RelaySession,
        reply: Reply,
        detail: str,
        stage: str,
        about: dict[str, Any],
    ) -> Reply:
        if reply.reason is not None:
            self._metrics.messages_rejected.labels(server.client_name, reply.reason).inc()
        log.info(
            "rejected",
            extra={
                "event": "rejected",
                "reason": reply.reason,
                "stage": stage,
                "reply": reply.code,
                "detail": detail,
                **server.log_context(),
                **about,
            },
        )
        return reply


def _milliseconds_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _declared_size(options: list[str]) -> int | None:
    """The SIZE= value of MAIL's parameters (aiosmtpd has checked it is digits), or None."""
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None
