"""Every dialog under dialogs/ against one real proxy process (outbox backend)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.smtp.auth import HASHER
from tests.conftest import base_config
from tests.harness import RunningProxy, deep_merge, start_proxy
from tests.smtp import dialog

DIALOGS = sorted((Path(__file__).parent / "dialogs").glob("*.dialog"))
# Against a relay with `auth: required` and one client, billing (password "secret"),
# each on a relay of its own: a lockout must not carry over to the next dialog.
AUTH_DIALOGS = sorted((Path(__file__).parent / "dialogs" / "auth").glob("*.dialog"))

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


def play(script: Path, proxy: RunningProxy, timeout: float = 10.0) -> None:
    outbox = Path(proxy.config["delivery"]["outbox_dir"])
    # The outbox writes a message's .eml last (atomically), before the 250.
    dialog.run(
        script,
        "127.0.0.1",
        proxy.smtp_port,
        lambda: len(list(outbox.glob("*.eml"))),
        timeout=timeout,
    )


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(path: Path, dialog_proxy: RunningProxy) -> None:
    play(path, dialog_proxy)


@pytest.mark.parametrize("path", AUTH_DIALOGS, ids=[p.stem for p in AUTH_DIALOGS])
def test_auth_dialog(path: Path, tmp_path: Path) -> None:
    billing = {
        "name": "billing",
        "username": "billing",
        "password_hash": HASHER.hash("secret"),
        "allowed_senders": ["billing@example.com"],
    }
    auth = {"smtp": {"auth": "required", "auth_max_failures": 3}, "clients": [billing]}
    config = deep_merge(base_config("outbox", tmp_path / "outbox"), DIALOG_CONFIG)
    proxy = start_proxy(tmp_path, deep_merge(config, auth))
    try:
        play(path, proxy)
    finally:
        proxy.stop()


def test_parser_reads_escapes_repeats_patterns_and_counts() -> None:
    steps = dialog.parse("C: a\\nb\nC*2~ xy\nS: 250 OK\nS=~ 250 \\d+\nD: 3\n")
    assert [s.send for s in steps] == [b"a\nb\r\n", b"xyxy", None, None, None]
    assert steps[2].expect == "250 OK"
    assert steps[3].pattern is not None
    assert steps[3].pattern.pattern == "250 \\d+"
    assert steps[4].delivered == 3


def test_nothing_may_follow_the_close() -> None:
    with pytest.raises(ValueError, match="line 2: a step after <closed>"):
        dialog.parse("S: <closed>\nC: NOOP\n")


def test_a_count_needs_a_counter(tmp_path: Path) -> None:
    script = tmp_path / "count.dialog"
    script.write_text("D: 0\n")
    with pytest.raises(ValueError, match="run it with a counter"):
        dialog.run(script, "127.0.0.1", 1)


# Each script below must fail against the real relay: the checks a dialog relies on.
@pytest.mark.parametrize(
    ("script", "failure"),
    [
        ("S: 554\n", "expected '554', got '220 relay.test ESMTP'"),
        # A prefix of the line is not the line.
        ("S: 220\n", "expected '220', got '220 relay.test ESMTP'"),
        ("S: 220 relay.test ESMTP \n", "expected '220 relay.test ESMTP ', got"),
        # A pattern must match the whole line.
        ("S=~ 220 relay\n", "expected a match of '220 relay', got '220 relay.test ESMTP'"),
        # A reply the dialog does not expect, even after its last line.
        (
            "S: 220 relay.test ESMTP\nC: NOOP\n",
            "unexpected after the last step: b'250 2.0.0 OK\\r\\n'",
        ),
        # A close the dialog does not write down.
        ("S: 220 relay.test ESMTP\nC: QUIT\nS: 221 2.0.0 Bye\n", "says no <closed>"),
        ("S: 220 relay.test ESMTP\nC: QUIT\nS: 221 2.0.0 Bye\nS: 250 2.0.0 OK\n", "got the close"),
        ("S: 220 relay.test ESMTP\nC: NOOP\nS: <closed>\n", "expected close, got '250 2.0.0 OK'"),
        ("S: 220 relay.test ESMTP\nD: 1\n", "expected 1 delivered, got 0"),
    ],
)
def test_a_wrong_dialog_fails(
    script: str, failure: str, tmp_path: Path, dialog_proxy: RunningProxy
) -> None:
    path = tmp_path / "wrong.dialog"
    path.write_text(script)
    with pytest.raises(dialog.DialogFailure, match=re.escape(failure)):
        play(path, dialog_proxy)


def test_a_pattern_matches_a_varying_value(tmp_path: Path, dialog_proxy: RunningProxy) -> None:
    path = tmp_path / "pattern.dialog"
    path.write_text("S=~ 220 relay\\.test [A-Z]+\nC: QUIT\nS: 221 2.0.0 Bye\nS: <closed>\n")
    play(path, dialog_proxy)


def test_a_reply_that_never_comes_fails(tmp_path: Path, dialog_proxy: RunningProxy) -> None:
    path = tmp_path / "silent.dialog"
    path.write_text("S: 220 relay.test ESMTP\nS: 250 2.0.0 OK\n")
    with pytest.raises(
        dialog.DialogFailure, match=re.escape("silent.dialog:2: nothing came within 1.0 s")
    ):
        play(path, dialog_proxy, timeout=1.0)
