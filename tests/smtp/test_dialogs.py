"""Every dialog under dialogs/ against one real proxy process (outbox backend)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import base_config
from tests.harness import RunningProxy, deep_merge, start_proxy
from tests.smtp import dialog

DIALOGS = sorted((Path(__file__).parent / "dialogs").glob("*.dialog"))

DIALOG_CONFIG = {
    "policy": {
        "allowed_recipients": ["*@example.net", "*@example.com"],
        "max_recipients": 3,
        "max_message_bytes": 4096,
    },
}


@pytest.fixture(scope="module")
def dialog_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    workdir = tmp_path_factory.mktemp("dialogs")
    config = deep_merge(base_config("outbox", workdir / "outbox"), DIALOG_CONFIG)
    proxy = start_proxy(workdir, config)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(path: Path, dialog_proxy: RunningProxy) -> None:
    dialog.run(path, "127.0.0.1", dialog_proxy.smtp_port)


def test_parser_reads_escapes_and_repeats() -> None:
    steps = dialog.parse("C: a\\nb\nC*2~ xy\nS: 250\n")
    assert [s.send for s in steps] == [b"a\nb\r\n", b"xyxy", None]
    assert steps[2].expect == "250"


def test_a_wrong_expectation_fails(tmp_path: Path, dialog_proxy: RunningProxy) -> None:
    script = tmp_path / "wrong.dialog"
    script.write_text("S: 554\n")
    with pytest.raises(dialog.DialogFailure, match="expected '554', got '220"):
        dialog.run(script, "127.0.0.1", dialog_proxy.smtp_port)
