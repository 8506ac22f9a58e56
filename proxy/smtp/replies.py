"""Every reply the relay gives, as data: one situation, one code, one meaning.

The handler never writes a reply string of its own; it looks the situation up here.
`reason` is the metric label the situation counts under (a closed set, see
observability/metrics.py). Texts never carry exception text or message content.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policy import Verdict


@dataclass(frozen=True)
class Reply:
    text: str
    reason: str | None = None

    @property
    def code(self) -> int:
        return int(self.text[:3])


NETWORK_DENIED = Reply("554 5.7.1 Your address is not allowed to use this relay", "network")
TOO_MANY_CONNECTIONS = Reply("421 4.7.0 Too many connections, try again later")
SHUTTING_DOWN = Reply("421 4.3.2 Service shutting down, try again later")
TLS_REQUIRED = Reply("530 5.7.0 Must issue a STARTTLS command first", "tls")
AUTH_NOT_OFFERED = Reply("502 5.5.1 AUTH not offered: this relay admits clients by network", "auth")
AUTH_REQUIRED = Reply("530 5.7.0 Authentication required", "auth")
AUTH_NEEDS_ENCRYPTION = Reply("538 5.7.11 Encryption required for AUTH: use STARTTLS first")
AUTH_INVALID = Reply("535 5.7.8 Authentication credentials invalid")
AUTH_LOCKED_OUT = Reply("454 4.7.0 Too many failed authentications, try again later")
AUTH_OK = Reply("235 2.7.0 Authentication successful")
AUTH_ALREADY = Reply("503 5.5.1 Already authenticated")
AUTH_IN_TRANSACTION = Reply("503 5.5.1 AUTH not permitted during a mail transaction")
AUTH_MECHANISM_UNKNOWN = Reply("504 5.5.4 Unrecognized authentication type")
AUTH_UNREADABLE = Reply("501 5.5.2 Cannot decode the credentials")
# Not counted here: a deferral, counted by the handler as deferred{reason="inflight"}.
NO_ROOM = Reply("452 4.3.1 Insufficient system storage, try again later")
NEED_RCPT = Reply("503 5.5.1 Error: need RCPT command")
INTERNAL_ERROR = Reply("451 4.3.0 Internal error, nothing was sent; try again later", "internal")

RESET_OK = Reply("250 2.0.0 Reset OK")
NOOP_OK = Reply("250 2.0.0 OK")
VRFY_NOT_OFFERED = Reply("252 2.1.5 Cannot verify the user, but will try delivery")
GOODBYE = Reply("221 2.0.0 Bye")
SENDER_OK = Reply("250 2.1.0 Sender OK")
RECIPIENT_OK = Reply("250 2.1.5 Recipient OK")
START_DATA = Reply("354 End data with <CR><LF>.<CR><LF>")


def sent(message_id: str) -> Reply:
    return Reply(f"250 2.0.0 Ok {message_id}")


VERDICTS: dict[Verdict, Reply] = {
    Verdict.SENDER_DENIED: Reply("550 5.7.1 Sender address not allowed", "sender"),
    Verdict.SENDER_SYNTAX: Reply("553 5.1.3 Sender address syntax not accepted", "sender"),
    Verdict.SIZE_EXCEEDED: Reply("552 5.3.4 Message size exceeds the limit", "size"),
    Verdict.RECIPIENT_DENIED: Reply("550 5.7.1 Recipient address not allowed", "recipient"),
    Verdict.RECIPIENT_SYNTAX: Reply("553 5.1.3 Recipient address syntax not accepted", "recipient"),
    Verdict.TOO_MANY_RECIPIENTS: Reply("452 4.5.3 Too many recipients", "recipient"),
    Verdict.HEADER_SENDER_DENIED: Reply(
        "550 5.7.1 From: or Sender: header address not allowed", "sender"
    ),
    Verdict.CONFIGURATION_SET_DENIED: Reply(
        "550 5.7.1 Configuration set not allowed", "configuration_set"
    ),
    Verdict.MALFORMED: Reply("550 5.6.0 Malformed message", "malformed"),
}
