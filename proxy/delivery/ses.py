"""The SES backend: SendRawEmail (v1) or SendEmail (v2) through the process's one SES
client (aws/ses_client.py), on its lean per-message path (aws/lean.py).

One attempt per message: the SMTP client hears 451 (nothing sent), 554 (SES refused
the message itself) or 250 with SES's MessageId.
"""

from __future__ import annotations

import logging
import time

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from proxy.aws.errors import error_reply
from proxy.aws.lean import MalformedAnswer, SendOptions, SesErrorReply
from proxy.aws.ses_client import SesClient
from proxy.aws.transport import TransportError
from proxy.delivery import DeliveryError, Envelope
from proxy.delivery.ses_errors import classify, no_credentials, unreachable
from proxy.message import Octets
from proxy.observability.metrics import Metrics

log = logging.getLogger("proxy.delivery")

_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)


class SesDelivery:
    def __init__(self, client: SesClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def start(self) -> None:
        await self._client.start()
        # Read at each scrape: the credential is refreshed in the background too.
        self._metrics.credentials_expiry.set_function(self._expiry_timestamp)

    async def close(self) -> None:
        await self._client.close()

    def ready(self) -> bool:
        return self._client.ready()

    async def send(self, envelope: Envelope, raw: Octets) -> str:
        sender = self._client.sender
        if sender is None:
            raise no_credentials("no credential obtained yet")
        started = time.perf_counter()
        outcome = "error"
        try:
            message_id = await sender.send(
                envelope.mail_from,
                envelope.recipients,
                raw,
                SendOptions(
                    configuration_set=envelope.configuration_set,
                    tags=envelope.tags,
                    from_arn=self._client.settings.from_arn,
                    source_arn=self._client.settings.source_arn,
                    return_path_arn=self._client.settings.return_path_arn,
                ),
            )
        except MalformedAnswer as error:
            # A 2xx without an id may or may not have sent: the client keeps the mail.
            outcome = "malformed"
            log.warning(
                "SES answered success without a message id: deferred",
                extra={"event": "ses_answer_malformed", "detail": str(error)},
            )
            raise unreachable(f"malformed SES answer: {error}") from None
        except Exception as error:
            failure = failure_of(error)
            if failure is None:
                raise
            outcome = failure.reason
            raise failure from None
        else:
            outcome = "ok"
            return message_id
        finally:
            self._metrics.ses_request_duration.labels(outcome).observe(
                time.perf_counter() - started
            )

    def _expiry_timestamp(self) -> float:
        expiry = self._client.credential_expiry()
        return expiry.timestamp() if expiry is not None else 0.0


def failure_of(error: Exception) -> DeliveryError | None:
    """The DeliveryError for what an SES call raised, on either path (lean or stock
    aiobotocore); None for an exception that is not about SES (a bug: let it rise)."""
    if isinstance(error, SesErrorReply):
        return classify(error.code, error.message, error.status)
    if isinstance(error, ClientError):
        reply = error_reply(error)
        return classify(reply.code, reply.message, reply.status)
    if isinstance(error, _CREDENTIAL_ERRORS):
        return no_credentials(f"{type(error).__name__}: {error}")
    if isinstance(
        error, (TransportError, BotoCoreError, ResponseParserError, OSError, TimeoutError)
    ):
        return unreachable(f"{type(error).__name__}: {error}")
    return None
