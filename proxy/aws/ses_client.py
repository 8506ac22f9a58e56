"""The one long-lived aiobotocore SES client of the process, and the session behind it.

Shared by the delivery backend (SendRawEmail) and the quota watcher (GetSendQuota).
The per-message SendRawEmail takes the lean path of `sendraw.py`, built from this
client (endpoint, signing name, timeouts, pool size; its HTTP session only behind a
proxy) and this session's live credentials and CA bundle.
botocore's own retries are off: a retry inside the client would hide throttling
from the pacing box and could send twice after a timeout.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import datetime
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig

from proxy.aws.credentials import (
    CredentialError,
    CredentialSource,
    credential_expiry,
    open_session,
)
from proxy.aws.sendraw import SendRawEmail
from proxy.settings import SesSettings

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from types_aiobotocore_ses import SESClient

log = logging.getLogger("proxy.aws")


class SesClient:
    def __init__(self, settings: SesSettings, session_policy: str | None) -> None:
        self.settings = settings
        self._session_policy = session_policy
        self._stack = AsyncExitStack()
        self._session: AioSession | None = None
        self._client: SESClient | None = None
        self._sendraw: SendRawEmail | None = None
        self.credential_source: CredentialSource | None = None

    async def start(self) -> None:
        session, source = await open_session(self.settings, self._session_policy)
        self._session = session
        self.credential_source = source
        log.info(
            "credentials obtained",
            extra={"event": "credentials", "source": source.method, "temporary": source.temporary},
        )
        config = AioConfig(
            connect_timeout=self.settings.connect_timeout_seconds,
            read_timeout=self.settings.read_timeout_seconds,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=50,
        )
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "ses",
                region_name=self.settings.region,
                endpoint_url=self.settings.endpoint_url,
                config=config,
            )
        )
        # The session's credential object itself (refreshable, or the assumed role's):
        # the lean path asks it for the current keys on every call.
        credentials = await session.get_credentials()
        if credentials is None:  # open_session has found one; this is for the type checker
            raise CredentialError("no AWS credentials found")
        self._sendraw = SendRawEmail.for_client(
            self._client,
            credentials,
            self.settings.allow_insecure_endpoint,
            session.get_config_variable("ca_bundle"),
        )

    async def close(self) -> None:
        if self._sendraw is not None:
            self._sendraw.close()
        self._sendraw = None
        await self._stack.aclose()
        self._client = None

    @property
    def api(self) -> SESClient | None:
        """The aiobotocore client, once started."""
        return self._client

    @property
    def sendraw(self) -> SendRawEmail | None:
        """The lean SendRawEmail path over this client, once started."""
        return self._sendraw

    def credential_expiry(self) -> datetime | None:
        return credential_expiry(self._session) if self._session is not None else None
