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
from typing import Any, Protocol

from aiosmtpd.smtp import TLSSetupException

from proxy import message, policy
from proxy.clients import Client, aws_access_key_tail
from proxy.delivery import Delivery, DeliveryError, Envelope, PermanentDeliveryError
from proxy.observability.metrics import NO_CLIENT, Metrics
from proxy.smtp import replies
from proxy.smtp.data import ReceivedData
from proxy.smtp.inflight import Hold, needed_for
from proxy.smtp.replies import Reply

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


class Conversation(Protocol):
    """What the handler reads of the SMTP session it answers for (`session.RelaySession`):
    who the client is, the rules it is under, where the conversation stands."""

    @property
    def rules(self) -> policy.Rules: ...

    @property
    def client(self) -> Client | None: ...

    @property
    def require_tls(self) -> bool: ...

    @property
    def auth_mode(self) -> str: ...

    @property
    def authenticated(self) -> bool: ...

    @property
    def shutting_down(self) -> bool: ...

    @property
    def encrypted(self) -> bool: ...

    @property
    def client_name(self) -> str: ...

    def has_room_for(self, size: int) -> bool:
        """Would max_inflight_bytes hold a message of `size` octets now?"""
        ...

    def ehlo_lines(self) -> list[str]: ...

    def log_context(self) -> dict[str, Any]: ...


class RelayHandler:
    def __init__(self, rules: policy.Rules, delivery: Delivery, metrics: Metrics) -> None:
        self.rules = rules  # for sessions that start from now on (a reload replaces them)
        self._delivery = delivery
        self._metrics = metrics
        self._aws_keys_said: set[str] = set()

    async def handle_MAIL(
        self,
        conversation: Conversation,
        session: Any,
        envelope: Any,
        address: str,
        options: list[str],
    ) -> str:
        if conversation.shutting_down:
            return replies.SHUTTING_DOWN.text
        if conversation.require_tls and not conversation.encrypted:
            return self._reject(
                conversation, replies.TLS_REQUIRED, "MAIL before TLS", "mail", {"from": address}
            ).text
        if (
            conversation.auth_mode == "required"
            and not conversation.authenticated
            and conversation.client is None
        ):
            return self._reject(
                conversation, replies.AUTH_REQUIRED, "MAIL before AUTH", "mail", {"from": address}
            ).text
        declared = _declared_size(options)
        decision = policy.check_declared_size(conversation.rules, declared)
        if (
            isinstance(decision, policy.Accepted)
            and declared is not None
            and not conversation.has_room_for(declared)
        ):
            return self._no_room(conversation, {"from": address, "size": declared}).text
        if isinstance(decision, policy.Accepted):
            decision = policy.check_sender(conversation.rules, address)
        if isinstance(decision, policy.Rejected):
            return self._reject(
                conversation,
                replies.VERDICTS[decision.verdict],
                decision.detail,
                "mail",
                {"from": address},
            ).text
        envelope.mail_from = decision.address
        envelope.mail_options.extend(options)
        return replies.SENDER_OK.text

    async def handle_RCPT(
        self,
        conversation: Conversation,
        session: Any,
        envelope: Any,
        address: str,
        options: list[str],
    ) -> str:
        decision = policy.check_recipient(conversation.rules, address, len(envelope.rcpt_tos))
        if isinstance(decision, policy.Rejected):
            return self._reject(
                conversation,
                replies.VERDICTS[decision.verdict],
                decision.detail,
                "rcpt",
                {"from": envelope.mail_from, "to": [address]},
            ).text
        if decision.address not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(decision.address)
        return replies.RECIPIENT_OK.text

    async def handle_EHLO(
        self,
        conversation: Conversation,
        session: Any,
        envelope: Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return conversation.ehlo_lines()

    async def handle_RSET(self, conversation: Conversation, session: Any, envelope: Any) -> str:
        return replies.RESET_OK.text

    async def handle_NOOP(
        self, conversation: Conversation, session: Any, envelope: Any, arg: str
    ) -> str:
        return replies.NOOP_OK.text

    async def handle_VRFY(
        self, conversation: Conversation, session: Any, envelope: Any, address: str
    ) -> str:
        return replies.VRFY_NOT_OFFERED.text

    async def handle_QUIT(self, conversation: Conversation, session: Any, envelope: Any) -> str:
        return replies.GOODBYE.text

    def log_auth(self, conversation: Conversation, result: str, username: str | None) -> None:
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
                **conversation.log_context(),
            },
        )

    def aws_key_as_username(self, conversation: Conversation, tail: str) -> None:
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
                **conversation.log_context(),
            },
        )

    def log_refusal(self, conversation: Conversation, reply: Reply) -> None:
        log.info(
            "refused",
            extra={
                "event": "refused",
                "reason": reply.reason,
                "reply": reply.code,
                **conversation.log_context(),
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
        conversation: Conversation,
        mail_from: str,
        recipients: tuple[str, ...],
        data: ReceivedData,
        hold: Hold,
    ) -> Reply:
        """The reply to a message; `hold` is what it holds of max_inflight_bytes (the
        caller gives it back when the reply is sent)."""
        started = time.perf_counter()
        self._metrics.messages_received.labels(conversation.client_name).inc()
        self._metrics.message_size.observe(data.size)
        # What a log line about this message says of it: enough to answer "did the
        # mail to X go out?", nothing of its content but the client's Message-ID.
        about = {
            "from": mail_from,
            "to": list(recipients),
            "message_id": message.message_id(data.raw),
            "size": data.size,
        }
        if data.refused is not None:
            verdict = replies.VERDICTS[data.refused.verdict]
            return self._reject(conversation, verdict, data.refused.detail, "data", about)
        # The cleaned copy and the encoded request, taken before either is made.
        if data.no_room or not hold.take(needed_for(len(data.raw)) - len(data.raw)):
            return self._no_room(conversation, about)
        if len(data.raw) > _OFF_LOOP_BYTES:
            vetted = await asyncio.to_thread(_vet, conversation.rules, data.raw)
        else:
            vetted = _vet(conversation.rules, data.raw)
        if isinstance(vetted, policy.Rejected):
            verdict = replies.VERDICTS[vetted.verdict]
            return self._reject(conversation, verdict, vetted.detail, "data", about)
        accepted, cleaned = vetted
        about["size"] = len(cleaned)
        envelope = Envelope(
            mail_from=mail_from,
            recipients=recipients,
            configuration_set=accepted.configuration_set,
            tags=accepted.tags,
            client=conversation.client_name,
        )
        try:
            ses_message_id = await self._delivery.send(envelope, cleaned)
        except DeliveryError as error:
            return self._delivery_failed(conversation, error, about, started)
        self._metrics.messages_sent.labels(conversation.client_name).inc()
        log.info(
            "sent",
            extra={
                "event": "sent",
                **conversation.log_context(),
                **about,
                "ses_message_id": ses_message_id,
                "duration_ms": _milliseconds_since(started),
            },
        )
        return replies.sent(ses_message_id)

    def _delivery_failed(
        self,
        conversation: Conversation,
        error: DeliveryError,
        about: dict[str, Any],
        started: float,
    ) -> Reply:
        permanent = isinstance(error, PermanentDeliveryError)
        if permanent:
            self._metrics.messages_failed.labels(error.reason).inc()
        else:
            self._metrics.messages_deferred.labels(conversation.client_name, error.reason).inc()
        log.warning(
            "failed" if permanent else "deferred",
            extra={
                "event": "failed" if permanent else "deferred",
                "reason": error.reason,
                "detail": error.detail,
                **conversation.log_context(),
                **about,
                "duration_ms": _milliseconds_since(started),
            },
        )
        return Reply(error.reply, error.reason)

    def _no_room(self, conversation: Conversation, about: dict[str, Any]) -> Reply:
        self._metrics.messages_deferred.labels(conversation.client_name, "inflight").inc()
        log.warning(
            "deferred",
            extra={
                "event": "deferred",
                "reason": "inflight",
                "detail": "no room left in smtp.max_inflight_bytes",
                **conversation.log_context(),
                **about,
            },
        )
        return replies.NO_ROOM

    def _reject(
        self,
        conversation: Conversation,
        reply: Reply,
        detail: str,
        stage: str,
        about: dict[str, Any],
    ) -> Reply:
        if reply.reason is not None:
            self._metrics.messages_rejected.labels(conversation.client_name, reply.reason).inc()
        log.info(
            "rejected",
            extra={
                "event": "rejected",
                "reason": reply.reason,
                "stage": stage,
                "reply": reply.code,
                "detail": detail,
                **conversation.log_context(),
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
