"""The one long-lived aiobotocore SES client of the process, and the session behind it.

Shared by the delivery backend (SendRawEmail) and the quota watcher (GetSendQuota).
botocore's own retries are off: a retry inside the client would hide throttling
from the pacing box and could send twice after a timeout.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import datetime
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig

from proxy.aws.credentials import CredentialSource, credential_expiry, open_session
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

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    @property
    def api(self) -> SESClient | None:
        """The aiobotocore client, once started."""
        return self._client

    def credential_expiry(self) -> datetime | None:
        return credential_expiry(self._session) if self._session is not None else None
