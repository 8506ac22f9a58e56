"""The wiring: build every box from the settings, run them, drain on SIGTERM.

    app ──SMTP──▶ smtp/session.py ──▶ smtp/handler.py ──▶ policy.py, message.py
                                              │
                                              ▼
                   pacing/ (local | Redis budget) ──▶ delivery/ (ses.py | outbox.py) ──▶ SES
    aws/: credentials.py (chain, AssumeRole + session policy from iam/), ses_client.py,
          quota.py (GetSendQuota, or v2's GetAccount → gauges)
    observability/: metrics.py + http.py (/metrics /healthz /readyz), logs.py
    reload.py: SIGHUP and certificate rotation (what may change while running)
    eventloop.py: the loop this runs on (cli.py starts it), which polls before it sleeps

Nothing registers itself: each box is built here, from its part of the settings,
and handed what it needs.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from prometheus_client import disable_created_metrics

from proxy.aws.quota import QuotaWatcher
from proxy.aws.ses_client import SesClient
from proxy.clients import clients_from
from proxy.delivery import Delivery
from proxy.delivery.outbox import OutboxDelivery
from proxy.delivery.ses import SesDelivery
from proxy.iam.generate import session_policy
from proxy.observability import logs
from proxy.observability.http import HealthServer
from proxy.observability.metrics import Metrics
from proxy.pacing import PacedDelivery, build_budget
from proxy.reload import Reloader
from proxy.settings import ConfigError, Settings
from proxy.smtp.handler import RelayHandler
from proxy.smtp.session import RelaySession, SessionRegistry

log = logging.getLogger("proxy.server")

_DRAIN_POLL_SECONDS = 0.05


def _tune_runtime() -> None:
    """What pays under `make bench` (figures: docs/performance.md)."""
    # Objects as old as the process (botocore's models) skip full passes that stalled the loop.
    gc.freeze()
    # The youngest generation at 20,000 allocations, not several collections per message.
    gc.set_threshold(20000, 50, 100)
    # A worker thread checking a big message gives the GIL back to the loop 10x sooner.
    sys.setswitchinterval(0.0005)


def build_ses_client(settings: Settings) -> SesClient | None:
    if settings.delivery.backend != "ses":
        return None
    return SesClient(settings.ses, session_policy=session_policy(settings))


def build_delivery(
    settings: Settings, ses: SesClient | None, metrics: Metrics, quota: QuotaWatcher | None
) -> Delivery:
    if ses is None:
        return OutboxDelivery(settings.delivery.outbox_dir)
    # Pacing wraps SES only: the outbox has no rate to respect.
    budget = build_budget(settings.rate, settings.ses, metrics)
    return PacedDelivery(
        SesDelivery(ses, metrics),
        settings.rate,
        budget,
        metrics,
        quota,
        client_rates=settings.client_rates(),
        client_budget=partial(build_budget, settings.rate, settings.ses, metrics),
    )


@contextmanager
def _naming_the_key(key: str, host: str, port: int) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ConfigError(f"{key}: {host}:{port} is already in use") from None
        raise ConfigError(f"{key}: cannot listen on {host}:{port} ({error.strerror})") from None


async def serve(settings: Settings, config_path: Path | None = None) -> int:
    logs.configure(settings.logging)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    clients = clients_from(settings)
    metrics = Metrics(
        shared_budget=settings.delivery.backend == "ses" and settings.rate.backend == "redis",
        clients=tuple(client.name for client in clients),
    )
    ses = build_ses_client(settings)
    quota = QuotaWatcher(ses, metrics) if ses is not None else None
    delivery = build_delivery(settings, ses, metrics, quota)
    handler = RelayHandler(settings.default_rules(), delivery, metrics)
    sessions = SessionRegistry(settings.smtp, metrics, clients)
    tls_context = settings.smtp.tls_context()
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    reloader = Reloader(
        settings,
        config_path,
        handler,
        sessions,
        tls_context,
        delivery if isinstance(delivery, PacedDelivery) else None,
        metrics,
    )
    # From now on: SIGHUP's default action would end the relay without draining.
    loop.add_signal_handler(signal.SIGHUP, reloader.reload)

    def ready() -> bool:
        return bool(servers) and all(s.is_serving() for s in servers) and delivery.ready()

    health = HealthServer(metrics, ready)
    await delivery.start()
    _tune_runtime()
    if quota is not None:
        quota.start()
    reloader.start()
    try:
        smtp = settings.smtp
        with _naming_the_key("metrics.port", settings.metrics.host, settings.metrics.port):
            await health.start(settings.metrics.host, settings.metrics.port)
        # The plain port (STARTTLS when a certificate is set) and the implicit-TLS port.
        ports = [("smtp.port", smtp.port, False)]
        if smtp.tls_port is not None:
            ports.append(("smtp.tls_port", smtp.tls_port, True))
        for key, port, implicit_tls in ports:
            session = partial(RelaySession, handler, sessions, tls_context, implicit_tls)
            with _naming_the_key(key, smtp.host, port):
                server = await loop.create_server(
                    session, smtp.host, port, ssl=tls_context if implicit_tls else None
                )
            servers.append(server)
        log.info(
            "listening",
            extra={
                "event": "listening",
                "smtp": [_address(s) for s in servers],
                "metrics": f"{settings.metrics.host}:{settings.metrics.port}",
                "backend": settings.delivery.backend,
            },
        )
        await _until_signalled()
        await _drain(servers, sessions, settings.smtp.shutdown_grace_seconds)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await reloader.close()
        for server in servers:
            server.close()
        if quota is not None:
            await quota.close()
        await health.close()
        await delivery.close()
    log.info("stopped", extra={"event": "stopped"})
    return 0


def _address(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


async def _drain(servers: list[asyncio.Server], sessions: SessionRegistry, grace: float) -> None:
    """Stop accepting; let transactions in flight end within `grace` seconds; close the rest.

    A session between transactions is told 421 at once. A session inside one keeps
    going until its reply is sent. Whatever is still open at the deadline is cut:
    its client has no 250, so it still holds the mail and will retry.
    """
    sessions.shutting_down = True
    for server in servers:
        server.close()
    deadline = time.monotonic() + grace
    log.info(
        "draining",
        extra={"event": "draining", "sessions": len(sessions.open), "grace_seconds": grace},
    )
    while time.monotonic() < deadline:
        for session in list(sessions.open):
            session.close_if_idle()
        if not sessions.open and not sessions.sending:
            return
        await asyncio.sleep(_DRAIN_POLL_SECONDS)
    stragglers = sessions.open | sessions.sending
    log.warning("grace period over", extra={"event": "drain_timeout", "cut": len(stragglers)})
    tasks = [task for session in stragglers if (task := session.abort()) is not None]
    await asyncio.gather(*tasks, return_exceptions=True)
