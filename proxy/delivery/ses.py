"""The SES backend: SendRawEmail through the process's one SES client (aws/ses_client.py).

One attempt per message: the SMTP client hears 451 (nothing sent), 554 (SES refused
the message itself) or 250 with SES's MessageId.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from proxy.aws.ses_client import SesClient
from proxy.delivery import DeliveryError, Envelope
from proxy.delivery.ses_errors import classify, no_credentials, unreachable
from proxy.observability.metrics import Metrics

_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)


class SesDelivery:
    def __init__(self, client: SesClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def start(self) -> None:
        await self._client.start()
        self._observe_expiry()

    async def close(self) -> None:
        await self._client.close()

    def ready(self) -> bool:
        return self._client.api is not None

    async def send(self, envelope: Envelope, raw: bytes) -> str:
        api = self._client.api
        if api is None:
            raise unreachable("the SES client is not started")
        params: dict[str, Any] = {
            "Source": envelope.mail_from,
            "Destinations": list(envelope.recipients),
            "RawMessage": {"Data": raw},
        }
        if self._client.settings.configuration_set is not None:
            params["ConfigurationSetName"] = self._client.settings.configuration_set
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await api.send_raw_email(**params)
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
        expiry = self._client.credential_expiry()
        self._metrics.credentials_expiry.set(expiry.timestamp() if expiry is not None else 0)


def _from_client_error(error: ClientError) -> DeliveryError:
    details = error.response.get("Error", {})
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return classify(str(details.get("Code", "")), str(details.get("Message", "")), status)
