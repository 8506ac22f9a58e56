"""The log formats: one JSON object per line, fields only from `extra`."""

from __future__ import annotations

import json
import logging

from proxy.observability.logs import JsonFormatter, TextFormatter


def record(
    name: str, message: str, error: Exception | None = None, **extra: object
) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    entry = logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, exc_info)
    entry.__dict__.update(extra)
    return entry


def raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:
        return caught


def test_json_line_carries_the_event_fields() -> None:
    line = JsonFormatter().format(
        record("proxy.smtp", "sent", event="sent", message_id="m-1", size=12)
    )
    entry = json.loads(line)
    assert entry["msg"] == "sent"
    assert entry["level"] == "warning"
    assert (entry["event"], entry["message_id"], entry["size"]) == ("sent", "m-1", 12)
    assert "\n" not in line


def test_our_errors_have_a_traceback_a_librarys_only_its_first_line() -> None:
    ours = json.loads(JsonFormatter().format(record("proxy.smtp", "x", raised(ValueError("a\nb")))))
    assert ours["error"] == "ValueError"
    assert "Traceback" in ours["traceback"]
    theirs = json.loads(
        JsonFormatter().format(
            record("aiobotocore.credentials", "x", raised(ConnectionError("refused\ndetails")))
        )
    )
    assert theirs["error"] == "ConnectionError"
    assert "traceback" not in theirs
    assert theirs["error_message"] == "refused"


def test_text_format_is_one_readable_line() -> None:
    line = TextFormatter().format(
        record("proxy.smtp", "rejected", event="rejected", reason="sender")
    )
    assert line.endswith("warning rejected event=rejected reason=sender")
