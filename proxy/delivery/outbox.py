"""The outbox backend: each message becomes `<id>.eml` plus `<id>.json` (its envelope).

For local development and tests: no AWS at all. Files are written to a temporary
name, flushed to disk and renamed, so a reader never sees half a message; the
envelope lands first, so whoever sees an `.eml` finds its `.json` beside it.
The writing runs in a thread: a 10 MB fsync must not stall other sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

from proxy.delivery import Envelope, TransientDeliveryError
from proxy.message import Octets
from proxy.settings import ConfigError


class OutboxDelivery:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._directory.mkdir, parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"delivery.outbox_dir: cannot make {self._directory} ({error.strerror})"
            ) from None

    async def close(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    async def send(self, envelope: Envelope, raw: Octets) -> str:
        message_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex}"
        meta = {
            "message_id": message_id,
            "mail_from": envelope.mail_from,
            "recipients": list(envelope.recipients),
            "configuration_set": envelope.configuration_set,
            "tags": dict(envelope.tags),
            "size": len(raw),
        }
        try:
            await asyncio.to_thread(self._write, message_id, raw, json.dumps(meta).encode())
        except OSError as error:
            raise TransientDeliveryError(
                "unavailable", "451 4.3.0 outbox not writable, try again later", str(error)
            ) from None
        return message_id

    def _write(self, message_id: str, raw: Octets, meta: bytes) -> None:
        self._write_atomically(self._directory / f"{message_id}.json", meta)
        self._write_atomically(self._directory / f"{message_id}.eml", raw)

    @staticmethod
    def _write_atomically(path: Path, data: Octets) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
