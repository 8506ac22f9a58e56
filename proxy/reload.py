"""SIGHUP and certificate rotation: what a running relay takes from a changed configuration.

Applied, for sessions that start after the reload (a session in progress keeps the
rules and settings it started with): `policy`, `clients`, the `smtp` admission and session
settings, the TLS certificate and key, `logging`, and the rate's `max_send_rate` and
`max_wait_seconds`. What the process was built around needs a restart, and a change
there is logged and not applied: the listen addresses and ports, turning TLS on or
off, `delivery`, `ses` (its credential, its session policy and its client are built
once), `metrics`, and the rate's backend. A file that does not load changes nothing.

The certificate and key are also re-read when their files change, without a signal:
Kubernetes rotates a mounted secret by swapping a symlink, so the files are polled
(stat follows the link to the new file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from proxy.clients import clients_from
from proxy.observability import logs
from proxy.observability.metrics import Metrics
from proxy.pacing import PacedDelivery
from proxy.settings import (
    SES_MAX_MESSAGE_BYTES,
    ConfigError,
    Settings,
    SmtpSettings,
    load_settings,
)
from proxy.smtp.handler import RelayHandler
from proxy.smtp.session import SessionRegistry

log = logging.getLogger("proxy.reload")

CERTIFICATE_POLL_SECONDS = 2.0

# Per section, the keys a running process cannot change (None: the whole section).
_NEEDS_RESTART: dict[str, tuple[str, ...] | None] = {
    "smtp": ("host", "port", "tls_port"),
    "delivery": None,
    "ses": None,
    "metrics": None,
    "rate": ("backend", "redis_url"),
}

_FileStamp = tuple[int, int, int, int] | None


def needs_restart(running: Settings, new: Settings) -> list[str]:
    """The keys whose new values only a restart would apply."""
    keys = []
    for section, names in _NEEDS_RESTART.items():
        old_part: BaseModel = getattr(running, section)
        new_part: BaseModel = getattr(new, section)
        for name in names if names is not None else type(old_part).model_fields:
            if getattr(old_part, name) != getattr(new_part, name):
                keys.append(f"{section}.{name}")
    if _has_tls(running.smtp) != _has_tls(new.smtp):
        keys.append("smtp.tls_cert_file")
    return keys


def _has_tls(smtp: SmtpSettings) -> bool:
    return smtp.tls_cert_file is not None and smtp.tls_key_file is not None


def _stamp(path: Path | None) -> _FileStamp:
    if path is None:
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)


class Reloader:
    def __init__(
        self,
        settings: Settings,
        path: Path | None,
        handler: RelayHandler,
        sessions: SessionRegistry,
        tls_context: ssl.SSLContext | None,
        pacing: PacedDelivery | None,
        metrics: Metrics,
    ) -> None:
        self._started = settings
        self._path = path
        self._handler = handler
        self._sessions = sessions
        self._tls_context = tls_context
        self._pacing = pacing
        self._metrics = metrics
        self._smtp = settings.smtp  # where the certificate is read from now
        self._certificate_stamp = self._stamps()
        self._watcher: asyncio.Task[None] | None = None

    def reload(self) -> None:
        """Read the file again and apply what a running process can (SIGHUP)."""
        if self._path is None:
            log.warning("no config file to reload", extra={"event": "config_reload_failed"})
            self._metrics.config_reloads.labels("failure").inc()
            return
        try:
            new = load_settings(self._path)
        except ConfigError as error:
            log.error(
                "config reload failed: nothing changed",
                extra={"event": "config_reload_failed", "error": str(error)},
            )
            self._metrics.config_reloads.labels("failure").inc()
            return
        restart = needs_restart(self._started, new)
        if restart:
            log.warning(
                "config reload: these keys change only at a restart, not applied",
                extra={"event": "config_reload_needs_restart", "keys": restart},
            )
        limit = SES_MAX_MESSAGE_BYTES[self._started.ses.api]
        if new.max_message_bytes() > limit:
            # ses.api waits for a restart, and the new file's size limit is its API's:
            # until then the API that sends has the last word, or SES refuses the excess.
            log.warning(
                "config reload: policy.max_message_bytes is above what the running ses.api "
                "accepts, capped until a restart",
                extra={
                    "event": "config_reload_size_capped",
                    "requested": new.max_message_bytes(),
                    "applied": limit,
                },
            )
            capped = new.policy.model_copy(update={"max_message_bytes": limit})
            new = new.model_copy(update={"policy": capped})
        self._handler.rules = new.default_rules()
        self._sessions.reconfigure(new.smtp, clients_from(new))
        if self._tls_context is not None and _has_tls(new.smtp):
            self._smtp = new.smtp
            self._load_certificate("reload")
        logs.configure(new.logging)
        if self._pacing is not None:
            self._pacing.reconfigure(new.rate, new.client_rates())
        self._metrics.config_reloads.labels("success").inc()
        log.info("config reloaded", extra={"event": "config_reloaded"})

    def start(self) -> None:
        if self._tls_context is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_certificate())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _watch_certificate(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATE_POLL_SECONDS)
            stamps = self._stamps()
            if stamps != self._certificate_stamp:
                self._load_certificate("files changed")

    def _stamps(self) -> tuple[_FileStamp, _FileStamp]:
        return (_stamp(self._smtp.tls_cert_file), _stamp(self._smtp.tls_key_file))

    def _load_certificate(self, why: str) -> None:
        """Check the pair on a context of its own, then load it into the live one: a pair
        that does not load together leaves the certificate in use as it was."""
        # Stamped before reading: a write that lands while we read is seen next time.
        self._certificate_stamp = self._stamps()
        assert self._tls_context is not None
        fields: dict[str, Any] = {"why": why, "cert_file": str(self._smtp.tls_cert_file)}
        try:
            self._smtp.tls_context()
            self._smtp.load_certificate(self._tls_context)
        except (ssl.SSLError, OSError, ValueError) as error:
            log.error(
                "TLS certificate not reloaded: the one in use stays",
                extra={"event": "tls_reload_failed", "error": type(error).__name__, **fields},
            )
            return
        log.info("TLS certificate loaded", extra={"event": "tls_reloaded", **fields})
