"""SES's sending quota, read about once a minute, for metrics (and pacing): v1
GetSendQuota, or v2 GetAccount's SendQuota (the same three numbers).

GetSendQuota may be called once a second at most; we stay far below. A role that
may only send is refused the call: that is said once in the log, and the quota
gauges stay unset rather than wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from proxy.aws.errors import error_reply
from proxy.aws.ses_client import SesClient
from proxy.observability.metrics import Metrics

log = logging.getLogger("proxy.aws.quota")

_MIN_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class SendQuota:
    max_send_rate: float
    max_24h_send: float
    sent_last_24h: float


class QuotaWatcher:
    def __init__(self, client: SesClient, metrics: Metrics, interval: float = 60.0) -> None:
        self._client = client
        self._metrics = metrics
        self._interval = max(interval, _MIN_INTERVAL_SECONDS)
        self._last_call = -_MIN_INTERVAL_SECONDS
        self._task: asyncio.Task[None] | None = None
        self._denied_said = False
        self.latest: SendQuota | None = None
        self.failures = 0  # unexpected errors the watching survived

    async def refresh(self) -> SendQuota | None:
        """Ask SES now (unless asked less than a second ago); the latest known quota."""
        api = self._client.api
        if api is None or time.monotonic() - self._last_call < _MIN_INTERVAL_SECONDS:
            return self.latest
        self._last_call = time.monotonic()
        v2 = self._client.settings.api == "v2"
        operation = "GetAccount" if v2 else "GetSendQuota"
        try:
            if v2:
                answer = (await api.get_account()).get("SendQuota", {})
            else:
                answer = await api.get_send_quota()
        except ClientError as error:
            code = error_reply(error).code
            if code in ("AccessDenied", "AccessDeniedException"):
                if not self._denied_said:
                    self._denied_said = True
                    log.warning(
                        f"{operation} denied: quota metrics stay unset (grant ses:{operation})",
                        extra={"event": "quota_denied"},
                    )
            else:
                log.warning(f"{operation} failed", extra={"event": "quota_error", "code": code})
            return self.latest
        # ValueError: botocore could not read the answer's numbers.
        except (BotoCoreError, OSError, TimeoutError, ValueError) as error:
            log.warning(
                f"{operation} failed",
                extra={"event": "quota_error", "code": type(error).__name__},
            )
            return self.latest
        quota = SendQuota(
            max_send_rate=float(answer.get("MaxSendRate", 0.0)),
            max_24h_send=float(answer.get("Max24HourSend", 0.0)),
            sent_last_24h=float(answer.get("SentLast24Hours", 0.0)),
        )
        self.latest = quota
        self._metrics.ses_quota_max_send_rate.set(quota.max_send_rate)
        self._metrics.ses_quota_max_24h_send.set(quota.max_24h_send)
        self._metrics.ses_quota_sent_last_24h.set(quota.sent_last_24h)
        return quota

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                # Pacing would go on with a stale rate if this task died: say it, go on.
                self.failures += 1
                log.exception(
                    "quota watcher: unexpected error, still watching",
                    extra={"event": "quota_watcher_error", "failures": self.failures},
                )
            await asyncio.sleep(self._interval)
