"""The SES backend: one long-lived aiobotocore client calling SendRawEmail.

botocore's own retries are off: a retry inside the client would hide throttling
from the pacing box and could send twice after a timeout. One attempt, and the
SMTP client hears 451 (nothing sent) or 554 (SES refused the message) or 250 with
SES's MessageId.
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from proxy.aws.credentials import CredentialSource, credential_expiry, open_session
from proxy.delivery import DeliveryError, Envelope
from proxy.delivery.ses_errors import classify, no_credentials, unreachable
from proxy.observability.metrics import Metrics
from proxy.settings import SesSettings

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from types_aiobotocore_ses import SESClient

log = logging.getLogger("proxy.delivery.ses")

_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)


class SesDelivery:
    def __init__(self, settings: SesSettings, metrics: Metrics, session_policy: str | None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._session_policy = session_policy
        self._stack = AsyncExitStack()
        self._session: AioSession | None = None
        self._client: SESClient | None = None
        self.credential_source: CredentialSource | None = None

    async def start(self) -> None:
        session, source = await open_session(self._settings, self._session_policy)
        self._session = session
        self.credential_source = source
        log.info(
            "credentials obtained",
            extra={"event": "credentials", "source": source.method, "temporary": source.temporary},
        )
        config = AioConfig(
            connect_timeout=self._settings.connect_timeout_seconds,
            read_timeout=self._settings.read_timeout_seconds,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=50,
        )
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "ses",
                region_name=self._settings.region,
                endpoint_url=self._settings.endpoint_url,
                config=config,
            )
        )
        self._observe_expiry()

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def ready(self) -> bool:
        return self._client is not None

    async def send(self, envelope: Envelope, raw: bytes) -> str:
        if self._client is None:
            raise unreachable("the SES client is not started")
        params: dict[str, Any] = {
            "Source": envelope.mail_from,
            "Destinations": list(envelope.recipients),
            "RawMessage": {"Data": raw},
        }
        if self._settings.configuration_set is not None:
            params["ConfigurationSetName"] = self._settings.configuration_set
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await self._client.send_raw_email(**params)
            outcome = "ok"
            return response["MessageId"]
        except ClientError as error:
            failure = _from_client_error(error)
            outcome = failure.reason
            raise failure from None
        except _CREDENTIAL_ERRORS as error:
            outcome = "credentials"
            raise no_credentials(f"{type(error).__name__}: {error}") from None
        except (BotoCoreError, OSError, TimeoutError) as error:
            outcome = "unavailable"
            raise unreachable(f"{type(error).__name__}: {error}") from None
        finally:
            self._metrics.ses_request_duration.labels(outcome).observe(
                time.perf_counter() - started
            )
            self._observe_expiry()

    def _observe_expiry(self) -> None:
        expiry = credential_expiry(self._session) if self._session is not None else None
        self._metrics.credentials_expiry.set(expiry.timestamp() if expiry is not None else 0)


def _from_client_error(error: ClientError) -> DeliveryError:
    details = error.response.get("Error", {})
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return classify(str(details.get("Code", "")), str(details.get("Message", "")), status)
