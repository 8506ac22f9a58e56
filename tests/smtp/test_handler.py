"""The handler's last line of defence: an unexpected error becomes a 451, never its text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from proxy import policy
from proxy.delivery.outbox import OutboxDelivery
from proxy.observability.metrics import Metrics
from proxy.smtp import replies
from proxy.smtp.handler import RelayHandler

RULES = policy.Rules(("noreply@example.com",), ("*",), 50, 1024)


async def test_an_internal_error_is_451_without_its_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    handler = RelayHandler(RULES, OutboxDelivery(tmp_path), metrics)
    with caplog.at_level(logging.ERROR, logger="proxy.smtp"):
        reply = await handler.handle_exception(RuntimeError("db password is hunter2"))
    assert reply == replies.INTERNAL_ERROR.text
    assert reply.startswith("451 4.3.0")
    assert "hunter2" not in reply
    deferred = metrics.registry.get_sample_value(
        "sesproxy_messages_deferred_total", {"client": "-", "reason": "internal"}
    )
    assert deferred == 1
    [record] = caplog.records
    assert record.exc_info is not None
