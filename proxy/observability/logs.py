"""Structured logs: one JSON object per line for machines, or readable text for a terminal.

Callers pass the fields of an event in `extra` (event, reason, message_id, ...);
the formatter emits those and nothing else of the record, so a log line can only
carry what a caller chose to put in it: never a body, never a credential.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from proxy.settings import LoggingSettings

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# json.dumps with `default=` builds a new encoder on every call; this one is reused.
_ENCODER = json.JSONEncoder(default=str)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _error(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    """The exception of a record: a traceback for our own code; for a library's log
    line only the exception's type and first line, since its internals say nothing
    an operator can act on."""
    if not record.exc_info or record.exc_info[0] is None:
        return {}
    error = {"error": record.exc_info[0].__name__}
    if record.name == "proxy" or record.name.startswith("proxy."):
        error["traceback"] = formatter.formatException(record.exc_info)
    else:
        error["error_message"] = str(record.exc_info[1]).splitlines()[0][:300]
    return error


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The date and time to the second, formatted once per second, not once per
        # line; one tuple, so that a thread never sees a second with another's text.
        self._stamp = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
            )
        entry: dict[str, Any] = {
            "time": f"{stamp[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        entry.update(_error(record, self))
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        error = _error(record, self)
        traceback = error.pop("traceback", None)
        fields = " ".join(f"{k}={v}" for k, v in {**_fields(record), **error}.items())
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
        line += f"{record.levelname.lower():7} {record.getMessage()} {fields}".rstrip()
        if traceback is not None:
            line += "\n" + traceback
        return line


def handler_for(settings: LoggingSettings, stream: TextIO) -> logging.Handler:
    """Each line written at once: a crash or an OOM kill loses none of the lines that
    lead up to it (the ones a post-mortem needs)."""
    handler = logging.StreamHandler(stream)
    use_json = settings.format == "json" or (settings.format == "auto" and not stream.isatty())
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    return handler


def configure(settings: LoggingSettings) -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler_for(settings, sys.stderr)]
    # Our formatters write no caller, thread or process: spare every record the stack
    # walk and the look-ups that find them (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(settings.level.upper())
    # aiosmtpd logs every command line at INFO, and an unrecognised one whole at WARNING
    # (a client out of step in AUTH sends its base64 password as a command): ours say
    # what matters, without the line.
    logging.getLogger("mail.log").setLevel(max(logging.ERROR, root.level))
    for noisy in ("botocore", "aiobotocore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
