"""The log formats: one JSON object per line, fields only from `extra`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading

import pytest

from proxy.observability.logs import JsonFormatter, TextFormatter, TurnBatchingHandler


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


def batching() -> tuple[logging.Logger, Writes]:
    stream = Writes()
    handler = TurnBatchingHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"proxy.test.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def events(stream: Writes) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


async def test_lines_of_one_loop_turn_are_written_after_it_in_one_write() -> None:
    logger, stream = batching()
    logger.info("sent", extra={"event": "one"})
    logger.info("sent", extra={"event": "two"})
    # Still inside the callback that logged: nothing is written yet.
    assert stream.writes == []
    await asyncio.sleep(0)
    assert len(stream.writes) == 1
    assert events(stream) == ["one", "two"]
    logger.info("sent", extra={"event": "three"})
    await asyncio.sleep(0)
    assert len(stream.writes) == 2
    assert events(stream) == ["one", "two", "three"]


def test_with_no_loop_running_a_line_is_written_at_once() -> None:
    logger, stream = batching()
    logger.info("listening", extra={"event": "listening"})
    assert events(stream) == ["listening"]


async def test_another_threads_line_is_written_at_once_after_the_waiting_ones() -> None:
    logger, stream = batching()
    logger.info("sent", extra={"event": "loop"})
    await asyncio.to_thread(logger.info, "x", extra={"event": "thread"})
    assert events(stream) == ["loop", "thread"]


def test_a_line_from_another_threads_loop_is_not_left_to_this_loops_turn() -> None:
    logger, stream = batching()
    seen: list[list[str]] = []

    async def log_there() -> None:
        logger.info("sent", extra={"event": "there"})

    async def log_here() -> None:
        logger.info("sent", extra={"event": "here"})
        # Another loop in another thread logs while this loop's turn goes on.
        there = threading.Thread(target=asyncio.run, args=(log_there(),))
        there.start()
        there.join(10)
        seen.append(events(stream))

    asyncio.run(log_here())
    # Both were written when the other loop's record came, in order.
    assert seen == [["here", "there"]]


def test_flush_writes_lines_whose_loop_turn_never_ended() -> None:
    logger, stream = batching()
    loop = asyncio.new_event_loop()

    def log_and_stop() -> None:
        logger.info("sent", extra={"event": "last"})
        loop.stop()  # the loop ends with this turn: the write it scheduled never runs

    loop.call_soon(log_and_stop)
    try:
        loop.run_forever()
    finally:
        loop.close()
    assert events(stream) == []
    for handler in logger.handlers:
        handler.flush()  # what logging.shutdown does at exit
    assert events(stream) == ["last"]


def test_a_line_that_cannot_be_formatted_does_not_lose_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger, stream = batching()

    async def log() -> None:
        logger.info("bad %d", "not a number", extra={"event": "bad"})
        logger.info("sent", extra={"event": "good"})
        await asyncio.sleep(0)

    asyncio.run(log())
    assert events(stream) == ["good"]
    assert "Logging error" in capsys.readouterr().err
