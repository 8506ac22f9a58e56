"""A session set up from the model (RelaySession.__init__) is what aiosmtpd's own
SMTP.__init__ would have made of it: the same attributes with equal values, its
command table binding its own methods, the hook and AUTH tables (which aiosmtpd only
reads) shared, nothing else mutable shared.

(It lives here with the rest of issue #6's tests; its natural home is tests/smtp/.)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from types import MethodType
from typing import Any

import pytest
import trustme

from proxy.observability.metrics import Metrics
from proxy.settings import SmtpSettings
from proxy.smtp.handler import RelayHandler
from proxy.smtp.session import Listeners, RelaySession, _rebinder


def _shape(owner: object, value: Any) -> Any:
    """A comparable picture of an attribute value; `owner` stands for the session."""
    if isinstance(value, MethodType):
        bound_to = "SELF" if value.__self__ is owner else value.__self__
        return ("method", value.__func__, bound_to)
    if isinstance(value, Mapping):
        return {k: _shape(owner, v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_shape(owner, v) for v in value)
    if isinstance(value, asyncio.StreamReader):
        return ("reader", value._limit)  # type: ignore[attr-defined]
    if isinstance(value, asyncio.Future):
        return ("future", value.done())
    if type(value).__name__ == "ReferenceType":
        return ("weakref", _shape(owner, value()))
    return value


def _reference(
    handler: RelayHandler, listeners: Listeners, tls: ssl.SSLContext | None, implicit: bool
) -> RelaySession:
    """A session set up by aiosmtpd's own SMTP.__init__, then our own attributes."""
    session = RelaySession.__new__(RelaySession)
    loop = asyncio.get_running_loop()
    RelaySession._init_smtp(session, handler, listeners.settings, None if implicit else tls, loop)
    session.relay = handler
    session.listeners = listeners
    session.rules = handler.rules
    session.require_tls = listeners.settings.require_tls
    session.auth_mode = listeners.settings.auth
    session.authenticator = listeners.authenticator
    session.client = None
    session.authenticated = False
    session.session_id = "s0"
    session.busy = False
    session._hung_up_while_sending = False
    session._counted = False
    session._held_lines = []
    return session


@pytest.mark.parametrize(("with_tls", "implicit"), [(False, False), (True, False), (True, True)])
async def test_a_session_from_the_model_equals_one_from_smtp_init(
    with_tls: bool, implicit: bool
) -> None:
    context = None
    if with_tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("localhost").configure_cert(context)
    settings = SmtpSettings(hostname="relay.test", timeout_seconds=7)
    metrics = Metrics()
    handler = RelayHandler(None, None, metrics)  # type: ignore[arg-type]
    listeners = Listeners(settings, metrics)
    first = RelaySession(handler, listeners, context, implicit)
    second = RelaySession(handler, listeners, context, implicit)
    reference = _reference(handler, listeners, context, implicit)
    for session in (first, second):
        mine = {k: _shape(session, v) for k, v in vars(session).items() if k != "session_id"}
        theirs = {k: _shape(reference, v) for k, v in vars(reference).items() if k != "session_id"}
        assert mine == theirs
    assert first.tls_context is (None if implicit else context)
    assert first._smtp_methods["DATA"] == first.smtp_DATA
    assert first._smtp_methods.get("DATA") == first.smtp_DATA
    assert second._smtp_methods.get("DATA") == second.smtp_DATA
    assert first._smtp_methods.get("XYZZY") is None
    assert "QUIT" in first._smtp_methods
    assert len(first._smtp_methods) == len(reference._smtp_methods)
    assert first._smtp_methods is not second._smtp_methods
    assert first._auth_methods == {}  # AUTH is never offered
    assert first._strong_reader is not second._strong_reader  # type: ignore[attr-defined]


def test_a_model_value_of_an_unknown_shape_is_refused_not_shared() -> None:
    # A newer aiosmtpd keeping the model's methods in a shape the copy does not know
    # must fail at the first session, not hand one session's methods to another.
    class Model:
        def method(self) -> None: ...

    model = Model()
    with pytest.raises(TypeError, match="_new_table"):
        _rebinder(model, "_new_table", (model.method, 1))
