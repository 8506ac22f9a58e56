"""Both send paths of one started SesClient, driven from synchronous tests.

`stock` is aiobotocore's `send_raw_email` (v1) or `send_email` (v2); `lean` is
proxy/aws/sendraw.py or sendemail.py, as `ses.api` says. Each call
returns ("ok", MessageId) or ("error", reason, SMTP reply) as SesDelivery would
classify what was raised (delivery/ses.failure_of), so both can be compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from proxy.aws.lean import SendOptions
from proxy.aws.ses_client import SesClient
from proxy.delivery.ses import failure_of
from proxy.settings import SesSettings

Outcome = tuple[str, ...]


class Paths:
    def __init__(
        self, endpoint_url: str, region: str = "eu-west-3", api: Literal["v1", "v2"] = "v1"
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.api = api
        self.client = SesClient(
            SesSettings(
                region=region, endpoint_url=endpoint_url, allow_insecure_endpoint=True, api=api
            ),
            session_policy=None,
        )
        self.loop.run_until_complete(self.client.start())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()

    def _outcome(self, call: Any) -> Outcome:
        try:
            message_id = self.loop.run_until_complete(call)
        except Exception as error:
            failure = failure_of(error)
            if failure is None:
                raise
            return ("error", failure.reason, failure.reply)
        return ("ok", str(message_id))

    def stock(
        self, source: str, destinations: Sequence[str], raw: bytes, config_set: str | None
    ) -> Outcome:
        api = self.client.api
        assert api is not None
        params: dict[str, Any]
        if self.api == "v2":
            params = {
                "FromEmailAddress": source,
                "Destination": {"ToAddresses": list(destinations)},
                "Content": {"Raw": {"Data": raw}},
            }
        else:
            params = {
                "Source": source,
                "Destinations": list(destinations),
                "RawMessage": {"Data": raw},
            }
        if config_set is not None:
            params["ConfigurationSetName"] = config_set

        async def call() -> str:
            send = api.send_email if self.api == "v2" else api.send_raw_email
            response = await send(**params)
            return str(response["MessageId"])

        return self._outcome(call())

    def lean(
        self, source: str, destinations: Sequence[str], raw: bytes, config_set: str | None
    ) -> Outcome:
        sender = self.client.sender
        assert sender is not None
        return self._outcome(
            sender.send(source, destinations, raw, SendOptions(configuration_set=config_set))
        )
