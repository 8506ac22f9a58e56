"""The log formats: one JSON object per line, fields only from `extra`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading

import pytest

from proxy.observability.logs import JsonFormatter, TextFormatter, handler_for
from proxy.settings import LoggingSettings


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


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def configured() -> tuple[logging.Logger, Writes]:
    """A logger with the handler `configure` installs on the root, on a stream of ours."""
    stream = Writes()
    logger = logging.getLogger(f"proxy.test.{id(stream)}")
    # Ours alone: pytest's own capture (on the root) re-raises logging errors.
    logger.handlers[:] = [handler_for(LoggingSettings(format="json"), stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def events(stream: Writes) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


async def test_a_line_is_written_at_once_on_the_loop_before_the_callback_ends(
    configured: tuple[logging.Logger, Writes],
) -> None:
    # Nothing waits for the end of the loop's turn: a process killed right after a
    # decision still has that decision's line on stderr.
    logger, stream = configured
    logger.info("sent", extra={"event": "one"})
    assert events(stream) == ["one"]
    logger.info("sent", extra={"event": "two"})
    assert stream.writes[-1].endswith("\n")
    assert events(stream) == ["one", "two"]


async def test_a_worker_threads_line_is_written_at_once_in_order(
    configured: tuple[logging.Logger, Writes],
) -> None:
    logger, stream = configured
    logger.info("sent", extra={"event": "loop"})
    await asyncio.to_thread(logger.info, "x", extra={"event": "thread"})
    logger.info("sent", extra={"event": "after"})
    assert events(stream) == ["loop", "thread", "after"]


def test_lines_from_many_threads_are_whole_lines(
    configured: tuple[logging.Logger, Writes], capsys: pytest.CaptureFixture[str]
) -> None:
    logger, stream = configured

    def log_many(tag: str) -> None:
        for number in range(200):
            logger.info("sent", extra={"event": f"{tag}-{number}"})

    threads = [threading.Thread(target=log_many, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    seen = events(stream)  # every line parses as one JSON object
    assert sorted(seen) == sorted(f"t{t}-{n}" for t in range(4) for n in range(200))
    assert capsys.readouterr().err == ""
