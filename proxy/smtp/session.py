"""One SMTP connection: aiosmtpd's protocol, with what aiosmtpd leaves to us.

DESIGN.md lists aiosmtpd 1.4.6's gaps; each is closed here:
- clients are admitted by network and counted before the banner (`admission.py`);
- EHLO lists exactly SIZE, 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES, STARTTLS;
- DATA is read by our own reader (`data.py`): memory stays bounded by the size limit
  and max_inflight_bytes, and the bytes go to the message scan that rejects bare CR
  and LF and lines over 998 octets;
- a client that hangs up (EOF, reset) during a send does not cut it: aiosmtpd's
  cancelling of the session waits until SES has answered (a client that only closed
  its sending side still reads the reply), and the idle timer is off meanwhile;
- AUTH (PLAIN, LOGIN) is ours, not aiosmtpd's: offered only with `smtp.auth` set and
  over TLS or loopback, its state per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MethodType
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, syntax

from proxy.clients import Client, aws_access_key_tail, by_network, is_loopback
from proxy.observability.metrics import NO_CLIENT, Metrics
from proxy.settings import SmtpSettings
from proxy.smtp import replies
from proxy.smtp.admission import Admission
from proxy.smtp.auth import Authenticator, as_text, decode_plain, from_base64
from proxy.smtp.data import DataReader
from proxy.smtp.handler import RelayHandler
from proxy.smtp.inflight import InflightBytes

# aiosmtpd's own error replies carry no enhanced status code; having advertised
# ENHANCEDSTATUSCODES, we owe one on every 4xx/5xx reply (RFC 2034).
_ENHANCED_DEFAULTS = {
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "555": "5.5.4",
}
_HAS_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}( |$)")
# aiosmtpd echoes an unknown command back in its reply; a CR inside it must not
# reach the client as part of a reply line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# `<local@domain>` in its plain dot-atom form, then the parameters: the form nearly
# every client sends, parsed here at C speed. Anything else goes to aiosmtpd's own
# parser (pure Python, costly: docs/performance.md); policy judges either way.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"[ \t]*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    # aiosmtpd's parser drops the blanks after ">"; a comment there goes to it.
    r"[ \t]*((?:[^(\s].*)?)",
    re.DOTALL,
)


def plain_path(arg: str) -> tuple[str, str] | None:
    """(address, parameters) of a MAIL/RCPT argument in the plain form, else None."""
    match = _PLAIN_PATH.fullmatch(arg)
    return (match.group(1), match.group(2)) if match is not None else None


# RFC 5321 4.5.3.1.6: 998 octets plus CRLF, plus one for a dot added by stuffing.
_MAX_LINE = 1001
# The reader's limit while DATA is read. The command loop's 1001 would also stop the
# socket's reading whenever 2 KB are buffered (asyncio pauses a stream over twice its
# limit): two epoll calls for every message over 2 KB, and a 10 MB one read in small
# steps. The reader's buffer stays below twice this.
_DATA_READ_LIMIT = 64 * 1024
_session_ids = itertools.count(1)


class SessionRegistry:
    """The open sessions of every listener, and what they share."""

    def __init__(
        self,
        settings: SmtpSettings,
        metrics: Metrics,
        clients: Sequence[Client] = (),
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clients = tuple(clients)
        self.admission = Admission(settings, self.clients)
        self.authenticator = self._authenticator()
        self.inflight = InflightBytes(settings.max_inflight_bytes, metrics.inflight_bytes)
        self.open: set[RelaySession] = set()
        # Sessions waiting for a send, their client there or not (a hang-up does not
        # cut a send: RelaySession.connection_lost): shutdown waits for them.
        self.sending: set[RelaySession] = set()
        self.shutting_down = False
        # Per kind of session: the plain attributes aiosmtpd's SMTP.__init__ set on a
        # model session, and how to make each of the others (see RelaySession.__init__).
        self.models: dict[
            tuple[Any, ...], tuple[dict[str, Any], dict[str, Callable[[object], Any]]]
        ] = {}

    def reconfigure(self, settings: SmtpSettings, clients: Sequence[Client]) -> None:
        """New admission, session and client settings, for sessions that start from now on."""
        self.settings = settings
        self.clients = tuple(clients)
        self.admission.reconfigure(settings, self.clients)
        self.authenticator = self._authenticator()
        self.inflight.limit = settings.max_inflight_bytes
        self.models.clear()

    def _authenticator(self) -> Authenticator | None:
        if self.settings.auth == "none":
            return None
        return Authenticator(
            self.clients,
            accept_unknown=self.settings.auth == "any",
            max_failures=self.settings.auth_max_failures,
        )

    def enter(self, session: RelaySession, host: str) -> None:
        self.open.add(session)
        self.admission.take_slot(host)
        self.metrics.smtp_sessions_active.inc()

    def leave(self, session: RelaySession, host: str) -> None:
        self.open.discard(session)
        self.admission.free_slot(host)
        self.metrics.smtp_sessions_active.dec()


class _BoundMethods(Mapping[str, Any]):
    """A table of a session's methods (aiosmtpd's command table), each bound to the
    session when looked up: a session looks up a handful, and binding all of them for
    every connection is a cost a new connection per message pays each time."""

    __slots__ = ("_functions", "_session")

    def __init__(self, functions: dict[str, Callable[..., Any]], session: object) -> None:
        self._functions = functions
        self._session = session

    def __getitem__(self, name: str) -> Any:
        return MethodType(self._functions[name], self._session)

    def get(self, name: str, default: Any = None) -> Any:
        function = self._functions.get(name)
        return default if function is None else MethodType(function, self._session)

    def __iter__(self) -> Iterator[str]:
        return iter(self._functions)

    def __len__(self) -> int:
        return len(self._functions)


def _holds_model(model: object, value: Any) -> bool:
    """Whether a value holds a method bound to the model, itself or in a table."""
    if isinstance(value, MethodType):
        return value.__self__ is model
    if isinstance(value, dict):
        return any(_holds_model(model, item) for item in value.values())
    if isinstance(value, tuple):
        return any(_holds_model(model, item) for item in value)
    return False


def _rebinder(model: object, name: str, value: Any) -> Callable[[object], Any]:
    """How a value of the model session that holds the model's methods is made for
    another session, worked out once per model."""
    if isinstance(value, MethodType):
        function = value.__func__
        return lambda session: MethodType(function, session)
    if isinstance(value, dict) and all(
        isinstance(item, MethodType) and item.__self__ is model for item in value.values()
    ):
        functions = {key: item.__func__ for key, item in value.items()}
        return lambda session: _BoundMethods(functions, session)
    # A shape this copy does not know (a newer aiosmtpd): fail at the first
    # connection, in the tests, rather than share the model's methods.
    raise TypeError(f"cannot copy aiosmtpd's {name} for a new session: {value!r}")


class RelaySession(SMTP):
    line_length_limit = _MAX_LINE
    _idle_deadline = 0.0  # loop time at which the session times out (_reset_timeout)

    def __init__(
        self,
        handler: RelayHandler,
        registry: SessionRegistry,
        tls_context: ssl.SSLContext | None,
        implicit_tls: bool,
    ) -> None:
        # aiosmtpd's SMTP.__init__ builds its command, hook and AUTH tables with
        # inspect.getmembers() and dir() over this object and the handler, the biggest
        # cost of a new connection (docs/performance.md). What it sets depends
        # only on the arguments, so it runs once per kind of session, on a model that
        # never connects; each session runs the stream protocol's own set-up and
        # copies the rest from the model, the model's methods bound to itself (those
        # of the command table when a command looks one up: _BoundMethods).
        loop = asyncio.get_running_loop()
        starttls_context = None if implicit_tls else tls_context
        key = (type(self), handler, starttls_context, loop)
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        if key not in registry.models:
            new_model = type(self).__new__(type(self))
            self._init_smtp(new_model, handler, registry.settings, starttls_context, loop)
            own = vars(self)  # what the stream protocol set up: never copied
            attributes = {k: v for k, v in vars(new_model).items() if k not in own}
            # Tables without methods of the model (the handler's hooks) are shared:
            # aiosmtpd reads them and never changes them after its __init__.
            plain = {k: v for k, v in attributes.items() if not _holds_model(new_model, v)}
            others = {
                k: _rebinder(new_model, k, v) for k, v in attributes.items() if k not in plain
            }
            registry.models[key] = (plain, others)
        plain, others = registry.models[key]
        # SMTP.__init__ clears these class-wide limits on every connection.
        self.command_size_limits.clear()
        vars(self).update(plain)
        for name, rebind in others.items():
            setattr(self, name, rebind(self))
        self.handler = handler
        self.registry = registry
        # A reload (SIGHUP) changes these for sessions that start after it, not this one.
        self.rules = handler.rules
        self.require_tls = registry.settings.require_tls
        self.auth_mode = registry.settings.auth
        self.authenticator = registry.authenticator
        # Who this session is: a client by network (at admission) or by AUTH.
        self.client: Client | None = None
        self.authenticated = False
        self.session_id = f"s{next(_session_ids)}"
        self.in_data = False
        self._hangup_pending = False
        self._holds_slot = False
        self._held_lines: list[str] = []

    @staticmethod
    def _init_smtp(
        model: SMTP,
        handler: RelayHandler,
        settings: SmtpSettings,
        tls_context: ssl.SSLContext | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        SMTP.__init__(
            model,
            handler,
            # Size is ours to check and advertise: aiosmtpd's own replies lack the
            # enhanced status code and its reader buffers overlong lines.
            data_size_limit=None,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=settings.hostname,
            ident="ESMTP",
            tls_context=tls_context,
            require_starttls=False,
            timeout=settings.timeout_seconds,
            auth_required=False,
            auth_require_tls=True,
            # aiosmtpd's AUTH goes unused (smtp_AUTH is ours): no mechanism in its table.
            auth_exclude_mechanism=("LOGIN", "PLAIN"),
            loop=loop,
        )

    @property
    def shutting_down(self) -> bool:
        return self.registry.shutting_down

    @property
    def encrypted(self) -> bool:
        return (
            self.transport is not None and self.transport.get_extra_info("ssl_object") is not None
        )

    def has_room_for(self, size: int) -> bool:
        return self.registry.inflight.fits(size)

    def peer_host(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    @property
    def client_name(self) -> str:
        return self.client.name if self.client is not None else NO_CLIENT

    def log_context(self) -> dict[str, Any]:
        return {
            "session": self.session_id,
            "client": self.client_name,
            "peer": self.peer_host(),
            "tls": self.encrypted,
        }

    def may_authenticate(self) -> bool:
        """AUTH is offered only where a password does not cross the network in clear."""
        return self.authenticator is not None and (self.encrypted or is_loopback(self.peer_host()))

    def become(self, client: Client | None) -> None:
        self.client = client
        self.rules = client.rules if client is not None else self.handler.rules

    def ehlo_lines(self) -> list[str]:
        keywords = [
            f"SIZE {self.rules.max_message_bytes}",
            "8BITMIME",
            "PIPELINING",
            "ENHANCEDSTATUSCODES",
        ]
        if self.tls_context is not None and not self.encrypted:
            keywords.append("STARTTLS")
        if self.may_authenticate() and not self.authenticated:
            keywords.append("AUTH PLAIN LOGIN")
        lines = [f"250-{self.hostname}"]
        lines += [f"250-{word}" for word in keywords[:-1]]
        lines.append(f"250 {keywords[-1]}")
        return lines

    async def _handle_client(self) -> None:
        # Overrides aiosmtpd's session loop to admit the client before the banner.
        registry = self.registry
        assert self.session is not None
        assert self.transport is not None
        refusal = None
        if not registry.admission.admits(self.session.peer):
            refusal = replies.NETWORK_DENIED
            registry.metrics.messages_rejected.labels(NO_CLIENT, "network").inc()
        elif registry.shutting_down:
            refusal = replies.SHUTTING_DOWN
        elif registry.admission.full_for(self.peer_host()):
            refusal = replies.TOO_MANY_CONNECTIONS
        if refusal is not None:
            self.handler.log_refusal(self, refusal)
            await self.push(refusal.text)
            self.transport.close()
            return
        registry.enter(self, self.peer_host())
        self._holds_slot = True
        client = by_network(registry.clients, self.peer_host())
        if client is not None:
            self.become(client)
        try:
            await super()._handle_client()
        finally:
            self._release()

    def _release(self) -> None:
        """Give the slot and the gauge back: once, however the session ends."""
        if self._holds_slot:
            self._holds_slot = False
            self.registry.leave(self, self.peer_host())

    # aiosmtpd cancels the session's task when the client hangs up (EOF or a lost
    # connection). During a send that would cut a request SES may already be
    # processing, so the cancelling waits until the send is over (smtp_DATA).

    def eof_received(self) -> bool | None:
        if self not in self.registry.sending:
            return super().eof_received()
        self._hangup_pending = True
        assert self.session is not None
        if self.session.ssl is not None:
            return False
        return asyncio.StreamReaderProtocol.eof_received(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._release()
        if self not in self.registry.sending:
            super().connection_lost(error)
            return
        self._hangup_pending = True
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        if self._original_transport is not None:
            self._original_transport.close()
        asyncio.StreamReaderProtocol.connection_lost(self, error)
        self.transport = None

    def close_if_idle(self) -> None:
        """Say goodbye to a session between transactions (its slot is free at once)."""
        if self.in_data or (self.envelope is not None and self.envelope.mail_from):
            return
        if self.transport is not None:
            self._writer.write(replies.SHUTTING_DOWN.text.encode("ascii") + b"\r\n")
            self.transport.close()
        self._release()

    def abort(self) -> asyncio.Task[None] | None:
        """Cut the session now, a send in flight included; its task, to wait for."""
        # abort(), not close(): close() waits for replies the client never reads, and a
        # TLS layer mid-handshake never tells the session its connection is gone.
        for transport in (self.transport, self._original_transport):
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
        task = self._handler_coroutine
        if task is not None:
            task.cancel()
        self._release()
        return task

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd cancels its timer and schedules a new one on every command. One
        # timer is kept instead: a command only moves the
        # deadline, and the timer, when it fires early, waits for the rest.
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_timer_fired)

    def _idle_timer_fired(self) -> None:
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_timer_fired)
        else:
            self.abort()

    async def push(self, status: AnyStr) -> None:
        if not isinstance(status, str):
            await super().push(status)
            return
        reply = _CONTROL.sub("?", status)
        enhanced = _ENHANCED_DEFAULTS.get(reply[:3]) if reply[3:4] == " " else None
        if enhanced is not None and not _HAS_ENHANCED.match(reply, 4):
            reply = f"{reply[:3]} {enhanced} {reply[4:]}"
        if reply[3:4] == "-":
            # A line of a multi-line reply (EHLO's) waits for the last line, so that
            # the reply goes out in one write: one send, not five.
            self._held_lines.append(reply)
            return
        if self._held_lines:
            reply = "\r\n".join([*self._held_lines, reply])
            self._held_lines.clear()
        # aiosmtpd's push without its debug line (mail.log logs nothing below WARNING
        # here) and its second coroutine: several per message.
        self._writer.write(f"{reply}\r\n".encode("ascii"))
        await self._writer.drain()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = plain_path(arg)
        if plain is not None:
            return plain
        return super()._getaddr(arg)

    @syntax("AUTH <mechanism> [initial-response]")
    async def smtp_AUTH(self, arg: str) -> None:
        metrics = self.registry.metrics
        authenticator = self.authenticator
        if authenticator is None:
            metrics.messages_rejected.labels(self.client_name, "auth").inc()
            await self.push(replies.AUTH_NOT_OFFERED.text)
            return
        if await self.check_helo_needed("EHLO"):
            return
        if not self.may_authenticate():
            metrics.auth_attempts.labels("not_encrypted").inc()
            await self.push(replies.AUTH_NEEDS_ENCRYPTION.text)
            return
        if self.authenticated:
            await self.push(replies.AUTH_ALREADY.text)
            return
        if self.envelope is not None and self.envelope.mail_from:
            await self.push(replies.AUTH_IN_TRANSACTION.text)
            return
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() not in ("PLAIN", "LOGIN"):
            await self.push(replies.AUTH_MECHANISM_UNKNOWN.text)
            return
        host = self.peer_host()
        if authenticator.locked_out(host):
            metrics.auth_attempts.labels("locked_out").inc()
            self.handler.log_auth(self, "locked_out", None)
            await self.push(replies.AUTH_LOCKED_OUT.text)
            return
        credentials = await self._credentials(mechanism.upper(), initial.strip())
        if credentials is None:
            return
        username, password = credentials
        tail = aws_access_key_tail(username)
        if tail is not None:
            self.handler.aws_key_as_username(self, tail)
        verified = await authenticator.verify(username, password)
        if verified is None:
            authenticator.failed(host)
            metrics.auth_attempts.labels("bad_credentials").inc()
            self.handler.log_auth(self, "bad_credentials", username)
            await self.push(replies.AUTH_INVALID.text)
            return
        self.authenticated = True
        self.become(verified.client)
        metrics.auth_attempts.labels("success").inc()
        if not verified.remembered:
            # Once per verification, not per login: an app that logs in for every
            # message would otherwise double the relay's log lines.
            self.handler.log_auth(self, "success", username)
        await self.push(replies.AUTH_OK.text)

    async def _credentials(self, mechanism: str, initial: str) -> tuple[str, str] | None:
        """(username, password) from the client, or None once a 501 has been sent."""
        if mechanism == "PLAIN":
            if initial:
                blob = b"" if initial == "=" else from_base64(initial)
            else:
                answer = await self.challenge_auth("", encode_to_b64=False)
                blob = answer if isinstance(answer, bytes) else None
                if blob is None:
                    return None  # aiosmtpd has said why (aborted, not base64)
            credentials = decode_plain(blob) if blob is not None else None
        else:
            decoded = from_base64(initial) if initial else None
            username = as_text(decoded) if decoded is not None else None
            if username is None and not initial:
                answer = await self.challenge_auth("Username:")
                if not isinstance(answer, bytes):
                    return None
                username = as_text(answer)
            password = None
            if username is not None:
                answer = await self.challenge_auth("Password:")
                if not isinstance(answer, bytes):
                    return None
                password = as_text(answer)
            credentials = (
                (username, password) if username is not None and password is not None else None
            )
        if credentials is None:
            await self.push(replies.AUTH_UNREADABLE.text)
        return credentials

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos or envelope.mail_from is None:
            await self.push(replies.NEED_RCPT.text)
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        self.in_data = True
        hold = self.registry.inflight.hold()
        try:
            await self.push(replies.START_DATA.text)
            self._reader._limit = _DATA_READ_LIMIT  # type: ignore[attr-defined]
            try:
                reader = DataReader(self._reader, self.rules, hold, self._reset_timeout)
                data = await reader.read()
            finally:
                self._reader._limit = self.line_length_limit  # type: ignore[attr-defined]
            # The idle timeout must not cut a session that waits for SES: the
            # client would retry a message that may have been sent.
            if self._timeout_handle is not None:
                self._timeout_handle.cancel()
            sending = self.registry.sending
            sending.add(self)  # sending: a hang-up now waits for the send (connection_lost)
            try:
                reply = await self.handler.transaction(
                    self, envelope.mail_from, tuple(envelope.rcpt_tos), data, hold
                )
            finally:
                sending.discard(self)
                del data  # the message's bytes go with the hold, not after the reply
                hold.release()
                # Whatever the outcome, the transaction is over: a new MAIL may follow.
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                if self.transport is not None:
                    self._reset_timeout()
            if self._hangup_pending:
                # The send is over: now what aiosmtpd does on a hang-up. A client that
                # only closed its sending side may still read the reply.
                if self.transport is not None:
                    with contextlib.suppress(ConnectionError):
                        await self.push(reply.text)
                raise asyncio.CancelledError
            await self.push(reply.text)
        finally:
            hold.release()
            self.in_data = False
