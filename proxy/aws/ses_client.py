"""The one long-lived aiobotocore SES client of the process, and the session behind it.

Shared by the delivery backend and the quota watcher. `ses.api` picks the service:
v1 `ses` (SendRawEmail, GetSendQuota) or v2 `sesv2` (SendEmail, GetAccount). The
per-message send takes the lean path (`lean.py`; `sendraw.py` for v1, `sendemail.py`
for v2), built from this client (endpoint, signing name, timeouts, pool size; its HTTP
session only behind a proxy) and this session's live credentials and CA bundle.
botocore's own retries are off: a retry inside the client would hide throttling
from the pacing box and could send twice after a timeout.

The credential is a state, not a start-up condition: a source that cannot serve one yet
(IMDS or an EKS agent still coming up, an endpoint down, a credential already expired)
is retried with back-off while the relay runs not ready. Once held, it is looked at
every `CHECK_SECONDS`, which is what makes botocore refresh it ahead of expiry on an
idle relay too (botocore refreshes only when asked for the keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aiobotocore.config import AioConfig

from proxy.aws.credentials import (
    CredentialError,
    CredentialSource,
    CredentialUnavailable,
    credential_expiry,
    open_session,
)
from proxy.aws.lean import SendOptions
from proxy.aws.sendemail import SendEmail
from proxy.aws.sendraw import SendRawEmail
from proxy.message import Octets
from proxy.settings import SesSettings

if TYPE_CHECKING:
    from aiobotocore.credentials import AioCredentials
    from aiobotocore.session import AioSession

log = logging.getLogger("proxy.aws")

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
CHECK_SECONDS = 30.0


class Sender(Protocol):
    """The per-message send of either API: SES's MessageId, or it raises SesErrorReply
    (an error answer), MalformedAnswer (a success without an id) or botocore's errors."""

    async def send(
        self,
        source: str,
        destinations: Sequence[str],
        raw: Octets,
        options: SendOptions,
    ) -> str: ...

    def close(self) -> None: ...


class SesClient:
    def __init__(self, settings: SesSettings, session_policy: str | None) -> None:
        self.settings = settings
        self._session_policy = session_policy
        self._stack = AsyncExitStack()
        self._session: AioSession | None = None
        self._client: Any = None
        self._sender: Sender | None = None
        self._credentials: AioCredentials | None = None
        self._options: dict[str, Any] = {}
        self._keeper: asyncio.Task[None] | None = None
        self.credential_source: CredentialSource | None = None

    async def start(self) -> None:
        """Connect now if a credential can be had; else keep trying in the background.
        A refused kind of credential (long-lived keys not allowed) raises CredentialRefused."""
        try:
            await self.connect()
        except CredentialUnavailable as error:
            self._say_unavailable(error, RETRY_FIRST_SECONDS)
            first_look = RETRY_FIRST_SECONDS
        else:
            first_look = self._pause_while_healthy()
        self._keeper = asyncio.get_running_loop().create_task(self._keep(first_look))

    async def connect(self) -> None:
        """Obtain the credential and build the client; raise CredentialError if it cannot."""
        session, source = await open_session(self.settings, self._session_policy)
        # The session's credential object itself (refreshable, or the assumed role's):
        # the lean path asks it for the current keys on every call.
        credentials = await session.get_credentials()
        if credentials is None:  # open_session has found one; this is for the type checker
            raise CredentialUnavailable("no AWS credentials found")
        config = AioConfig(
            connect_timeout=self.settings.connect_timeout_seconds,
            read_timeout=self.settings.read_timeout_seconds,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=50,
        )
        options: dict[str, Any] = {
            "region_name": self.settings.region,
            "endpoint_url": self.settings.endpoint_url,
            "config": config,
        }
        client = await self._stack.enter_async_context(
            session.create_client("sesv2", **options)
            if self.settings.api == "v2"
            else session.create_client("ses", **options)
        )
        self._session = session
        self._options = options
        self._credentials = credentials
        self.credential_source = source
        self._client = client
        lean = SendEmail if self.settings.api == "v2" else SendRawEmail
        self._sender = lean.for_client(
            client,
            credentials,
            self.settings.allow_insecure_endpoint,
            session.get_config_variable("ca_bundle"),
        )
        log.info(
            "credentials obtained",
            extra={"event": "credentials", "source": source.method, "temporary": source.temporary},
        )

    async def _keep(self, first_look: float) -> None:
        """Connect when not connected; else ask for the keys, which refreshes them when due."""
        await asyncio.sleep(first_look)
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                if self._credentials is None:
                    await self.connect()
                else:
                    await self._credentials.get_frozen_credentials()
            except CredentialError as error:
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                self._say_unavailable(error, delay)
            # botocore raises whatever its fetcher raised when a due refresh fails.
            except Exception as error:
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                log.warning(
                    "credential refresh failed, retrying",
                    extra={
                        "event": "credentials_refresh_failed",
                        "error": type(error).__name__,
                        "expired": self.credential_expired(),
                        "retry_in_seconds": delay,
                    },
                )
            else:
                delay = RETRY_FIRST_SECONDS
                if self.ready():
                    await asyncio.sleep(self._pause_while_healthy())
                    continue
            await asyncio.sleep(delay)

    def _pause_while_healthy(self) -> float:
        """Until the next look: at most CHECK_SECONDS, and not past the expiry."""
        expiry = self.credential_expiry()
        if expiry is None:
            return CHECK_SECONDS
        left = (expiry - datetime.now(UTC)).total_seconds()
        return max(RETRY_FIRST_SECONDS, min(CHECK_SECONDS, left))

    @staticmethod
    def _say_unavailable(error: CredentialError, retry_in: float) -> None:
        log.warning(
            "no credential yet: not ready, retrying",
            extra={
                "event": "credentials_unavailable",
                "detail": str(error),
                "retry_in_seconds": retry_in,
            },
        )

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._sender is not None:
            self._sender.close()
        self._sender = None
        await self._stack.aclose()
        self._client = None

    @property
    def api(self) -> Any:
        """The aiobotocore client (`ses` or `sesv2`, as `ses.api` says), once started."""
        return self._client

    async def v1_api(self) -> Any:
        """A v1 `ses` client of this same session, endpoint and timeouts, closed with
        this one: for the reads only v1 has (doctor's identity, DKIM and configuration
        set checks), whichever API sends."""
        if self._session is None:
            raise CredentialUnavailable("not connected")
        return await self._stack.enter_async_context(
            self._session.create_client("ses", **self._options)
        )

    @property
    def sender(self) -> Sender | None:
        """The lean per-message send over this client, once started."""
        return self._sender

    def credential_expiry(self) -> datetime | None:
        return credential_expiry(self._session) if self._session is not None else None

    def credential_expired(self) -> bool:
        """True once the credential held has passed its expiry without a refresh."""
        expiry = self.credential_expiry()
        return expiry is not None and expiry <= datetime.now(UTC)

    def ready(self) -> bool:
        """A credential is held and has not expired."""
        return self._sender is not None and not self.credential_expired()
