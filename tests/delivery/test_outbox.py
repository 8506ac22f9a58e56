"""The outbox backend on its own: atomic files, the envelope beside the message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.delivery import Envelope, TransientDeliveryError
from proxy.delivery.outbox import OutboxDelivery


async def test_writes_the_message_and_its_envelope(tmp_path: Path) -> None:
    outbox = OutboxDelivery(tmp_path / "out")
    await outbox.start()
    raw = b"From: a@example.com\r\n\r\n" + bytes(range(256)) * 10
    message_id = await outbox.send(
        Envelope("a@example.com", ("b@example.net", "c@example.net")), raw
    )
    assert (tmp_path / "out" / f"{message_id}.eml").read_bytes() == raw
    envelope = json.loads((tmp_path / "out" / f"{message_id}.json").read_text())
    assert envelope == {
        "message_id": message_id,
        "mail_from": "a@example.com",
        "recipients": ["b@example.net", "c@example.net"],
        "configuration_set": None,
        "tags": {},
        "size": len(raw),
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{message_id}.eml", f"{message_id}.json"]
    ), "no temporary file is left behind"


async def test_ids_are_unique(tmp_path: Path) -> None:
    outbox = OutboxDelivery(tmp_path)
    await outbox.start()
    ids = {
        await outbox.send(Envelope("a@example.com", ("b@example.net",)), b"x") for _ in range(50)
    }
    assert len(ids) == 50


async def test_an_outbox_that_is_a_file_is_a_transient_error(tmp_path: Path) -> None:
    target = tmp_path / "out"
    outbox = OutboxDelivery(target)
    await outbox.start()
    target.rmdir()
    target.write_text("not a directory")
    with pytest.raises(TransientDeliveryError) as caught:
        await outbox.send(Envelope("a@example.com", ("b@example.net",)), b"x")
    assert caught.value.reply.startswith("451 4.3.0")
