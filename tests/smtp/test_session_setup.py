"""A session set up from the model (RelaySession.__init__) is what aiosmtpd's own
SMTP.__init__ would have made of it: the same attributes with equal values, its
command table binding its own methods; and two sessions share no mutable object but
the few that are shared by design (SHARED_BY_DESIGN), whatever aiosmtpd or we add.

(It lives here with the rest of issue #6's tests; its natural home is tests/smtp/.)
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import re
import ssl
import weakref
from collections import deque
from collections.abc import Mapping
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope

from proxy.observability.metrics import Metrics
from proxy.settings import SmtpSettings
from proxy.smtp.handler import RelayHandler
from proxy.smtp.session import RelaySession, SessionRegistry, _rebinder

# The mutable objects two sessions may share, by where a session reaches them, and
# why that is safe. Anything else reachable from both is per-connection state leaking
# between connections.
SHARED_BY_DESIGN = frozenset(
    {
        # The handler's hooks (bound to the handler, which is shared by design): aiosmtpd
        # builds the table in SMTP.__init__ and only looks hooks up in it afterwards.
        "_handle_hooks",
        # Mechanism -> method, filled in SMTP.__init__ and only looked up afterwards;
        # empty while AUTH is not offered (asserted below: a table holding the session's
        # own auth_ methods could not be shared, so AUTH must revisit this entry).
        "_auth_methods",
        # The command table's plain functions; each look-up binds one to its session.
        "_smtp_methods._functions",
        # aiosmtpd keeps this table on the class; its EHLO adds to it only when SIZE is
        # aiosmtpd's to check or SMTPUTF8 is on, both off here (asserted below), so it
        # only ever holds the default limit.
        "command_size_limits",
    }
)


def _immutable(value: Any) -> bool:
    if isinstance(value, (type(None), bool, int, float, complex, str, bytes, range, enum.Enum)):
        return True
    # A weak reference keeps nothing alive and is followed nowhere.
    leaves = (type, FunctionType, BuiltinFunctionType, ModuleType, re.Pattern, weakref.ref)
    if isinstance(value, leaves):
        return True
    # A frozen dataclass (the policy's Rules) cannot change under a session.
    params = getattr(type(value), "__dataclass_params__", None)
    return params is not None and bool(params.frozen)


def _children(value: Any) -> list[tuple[str, Any]]:
    """What a value holds, each with the step that reaches it."""
    if isinstance(value, MethodType):
        return [(".__self__", value.__self__)]
    steps: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        steps += [(f"[{key!r}]", item) for key, item in value.items()]
    elif isinstance(value, (list, tuple, set, frozenset, deque)):
        steps += [(f"[{i}]", item) for i, item in enumerate(value)]
    # A container of our own (the command table) may keep more than it yields.
    fields = dict(getattr(value, "__dict__", {}))
    for slot in getattr(type(value), "__slots__", ()):
        if hasattr(value, slot):
            fields[slot] = getattr(value, slot)
    return steps + [(f".{name}", item) for name, item in fields.items()]


def _class_data(session: RelaySession) -> dict[str, Any]:
    """Data kept on the session's classes: every session reaches it."""
    found: dict[str, Any] = {}
    for name, value in inspect.getmembers_static(type(session)):
        if name in vars(session) or name.startswith("__") or callable(value):
            continue
        if isinstance(value, (property, staticmethod, classmethod)):
            continue
        found.setdefault(name, value)
    return found


def _mutable_reach(session: RelaySession, stops: list[object]) -> dict[int, str]:
    """id -> path of every mutable object the session reaches, not through `stops`."""
    found: dict[int, str] = {}
    seen = {id(session)} | {id(stop) for stop in stops}
    queue = [(name, value) for name, value in {**_class_data(session), **vars(session)}.items()]
    while queue:
        path, value = queue.pop(0)
        if id(value) in seen or _immutable(value):
            continue
        seen.add(id(value))
        if not isinstance(value, (tuple, frozenset, MethodType)):
            found[id(value)] = path
        queue += [(path + step, item) for step, item in _children(value)]
    return found


def shared_state(first: RelaySession, second: RelaySession) -> list[str]:
    """The mutable objects both sessions reach, other than those shared by design."""
    # Shared by design, whole: the handler, the session registry, the event loop
    # and the TLS context every session of a listener is given.
    stops = [first.handler, first.registry, first.loop, first.tls_context]
    mine = _mutable_reach(first, stops)
    theirs = _mutable_reach(second, stops)
    return sorted(
        mine[key] for key in mine.keys() & theirs.keys() if mine[key] not in SHARED_BY_DESIGN
    )


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
    handler: RelayHandler, registry: SessionRegistry, tls: ssl.SSLContext | None, implicit: bool
) -> RelaySession:
    """A session set up by aiosmtpd's own SMTP.__init__, then our own attributes."""
    session = RelaySession.__new__(RelaySession)
    loop = asyncio.get_running_loop()
    RelaySession._init_smtp(session, handler, registry.settings, None if implicit else tls, loop)
    session.handler = handler
    session.registry = registry
    session.rules = handler.rules
    session.require_tls = registry.settings.require_tls
    session.auth_mode = registry.settings.auth
    session.authenticator = registry.authenticator
    session.client = None
    session.authenticated = False
    session.session_id = "s0"
    session.in_data = False
    session._hangup_pending = False
    session._holds_slot = False
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
    registry = SessionRegistry(settings, metrics)
    first = RelaySession(handler, registry, context, implicit)
    second = RelaySession(handler, registry, context, implicit)
    reference = _reference(handler, registry, context, implicit)
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


def _two_sessions(with_tls: bool, implicit: bool) -> tuple[RelaySession, RelaySession]:
    """Two sessions of one listener, made as the listener makes them."""
    context = None
    if with_tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("localhost").configure_cert(context)
    settings = SmtpSettings(hostname="relay.test")
    metrics = Metrics()
    handler = RelayHandler(None, None, metrics)  # type: ignore[arg-type]
    registry = SessionRegistry(settings, metrics)
    return (
        RelaySession(handler, registry, context, implicit),
        RelaySession(handler, registry, context, implicit),
    )


@pytest.mark.parametrize(("with_tls", "implicit"), [(False, False), (True, False), (True, True)])
async def test_two_sessions_share_no_mutable_state(with_tls: bool, implicit: bool) -> None:
    first, second = _two_sessions(with_tls, implicit)
    assert shared_state(first, second) == []
    # What the allow-list's reasons rest on.
    assert first._auth_methods == {}
    assert first.data_size_limit is None
    assert not first.enable_SMTPUTF8


async def test_the_check_finds_a_dict_added_by_smtp_init(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue #14's patch: every test here stayed green while two sessions shared it.
    original = SMTP.__init__

    def patched(self: SMTP, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._per_session_counts = {}  # type: ignore[attr-defined]

    monkeypatch.setattr(SMTP, "__init__", patched)
    assert shared_state(*_two_sessions(False, False)) == ["_per_session_counts"]


async def test_the_check_follows_state_into_what_a_session_holds() -> None:
    first, second = _two_sessions(False, False)
    inner: list[str] = []
    first._held_lines = second._held_lines = inner
    first.envelope = Envelope()
    second.envelope = Envelope()
    first.envelope.rcpt_tos = second.envelope.rcpt_tos = []
    assert shared_state(first, second) == ["_held_lines", "envelope.rcpt_tos"]
