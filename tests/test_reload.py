"""SIGHUP reloads the configuration file; the certificate is re-read when its files change.

Real relay processes, real signals, real clients: a session opened before a reload keeps
the rules it started with, the next one gets the new rules; an invalid file changes
nothing; a key only a restart can change is logged and left alone; a Kubernetes-style
secret rotation (a symlink swapped) changes the certificate new handshakes see.
"""

from __future__ import annotations

import os
import signal
import smtplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.conftest import StartProxy
from tests.harness import RunningProxy, deep_merge, free_port

MESSAGE = b"From: noreply@example.com\r\nTo: a@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
NEWCOMER = "newcomer@example.com"


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def _rewrite(proxy: RunningProxy, changes: dict[str, Any]) -> None:
    path = proxy.log_path.parent / "ses-proxy.yaml"
    path.write_text(yaml.safe_dump(deep_merge(proxy.config, changes)))


def _hup(proxy: RunningProxy, result: str) -> None:
    before = proxy.metric("sesproxy_config_reloads_total", result=result)
    proxy.process.send_signal(signal.SIGHUP)
    _until(
        lambda: proxy.metric("sesproxy_config_reloads_total", result=result) == before + 1,
        10,
        f"a reload counted as {result}",
    )
    assert proxy.process.poll() is None, proxy.log_text()


def _mail_code(client: smtplib.SMTP, sender: str) -> int:
    code, _ = client.mail(sender)
    client.rset()
    return code


def test_sighup_applies_a_new_policy_to_new_sessions_only(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = start_outbox_proxy()
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as before:
        before.ehlo("client.test")
        assert _mail_code(before, NEWCOMER) == 550

        _rewrite(proxy, {"policy": {"allowed_senders": ["noreply@example.com", NEWCOMER]}})
        _hup(proxy, "success")

        with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as after:
            after.ehlo("client.test")
            assert _mail_code(after, NEWCOMER) == 250
        # The session that began under the old policy finishes under it.
        assert _mail_code(before, NEWCOMER) == 550
    assert proxy.events("config_reloaded")
    assert not proxy.events("config_reload_needs_restart")


def test_an_invalid_file_changes_nothing_and_names_the_key(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = start_outbox_proxy()
    _rewrite(proxy, {"policy": {"allowed_senders": [NEWCOMER], "max_recipients": 5000}})
    _hup(proxy, "failure")
    assert "policy.max_recipients" in proxy.events("config_reload_failed")[0]["error"]
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        assert _mail_code(client, NEWCOMER) == 550
        assert _mail_code(client, "noreply@example.com") == 250
    assert "Traceback" not in proxy.log_text()

    (proxy.log_path.parent / "ses-proxy.yaml").write_text("smtp: [unclosed\n")
    _hup(proxy, "failure")
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        assert client.noop()[0] == 250


def test_a_key_that_needs_a_restart_is_logged_and_not_applied(
    start_outbox_proxy: StartProxy, tmp_path: Path
) -> None:
    proxy = start_outbox_proxy()
    moved = free_port()
    _rewrite(
        proxy,
        {
            "smtp": {"port": moved},
            "delivery": {"outbox_dir": str(tmp_path / "elsewhere")},
            "policy": {"allowed_senders": ["noreply@example.com", NEWCOMER]},
        },
    )
    _hup(proxy, "success")
    said = proxy.events("config_reload_needs_restart")[0]
    assert set(said["keys"]) == {"smtp.port", "delivery.outbox_dir"}
    # Still on the port it started with; the policy change was applied all the same.
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        assert _mail_code(client, NEWCOMER) == 250
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", moved, timeout=2)


def _ehlo_size(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        return client.esmtp_features["size"]


def test_ses_api_waits_for_a_restart_and_so_does_its_size_limit(
    start_outbox_proxy: StartProxy,
) -> None:
    proxy = start_outbox_proxy()
    _rewrite(proxy, {"ses": {"api": "v2"}})
    _hup(proxy, "success")
    assert proxy.events("config_reload_needs_restart")[0]["keys"] == ["ses.api"]
    # The new file's default (v2's 40 MB) would let through what v1 refuses.
    [capped] = proxy.events("config_reload_size_capped")
    assert (capped["requested"], capped["applied"]) == (41943040, 10485760)
    assert _ehlo_size(proxy.smtp_port) == "10485760"
    _rewrite(proxy, {"ses": {"api": "v2"}, "policy": {"max_message_bytes": 5000000}})
    _hup(proxy, "success")
    assert _ehlo_size(proxy.smtp_port) == "5000000"
    assert len(proxy.events("config_reload_size_capped")) == 1


def test_sighup_applies_the_logging_level(start_outbox_proxy: StartProxy) -> None:
    proxy = start_outbox_proxy()
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.sendmail("noreply@example.com", ["a@example.net"], MESSAGE)
    _until(lambda: len(proxy.events("sent")) == 1, 5, "the first sent line")
    _rewrite(proxy, {"logging": {"level": "warning"}})
    _hup(proxy, "success")
    with smtplib.SMTP("127.0.0.1", proxy.smtp_port, timeout=10) as client:
        client.sendmail("noreply@example.com", ["a@example.net"], MESSAGE)
    assert proxy.metric("sesproxy_messages_sent_total") == 2
    assert len(proxy.events("sent")) == 1


# ---------------------------------------------------------------- certificate rotation


class _MountedSecret:
    """A directory laid out as the kubelet mounts a secret: tls.crt -> ..data/tls.crt,
    ..data -> a timestamped directory; a rotation swaps ..data in one rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._version = 0
        root.mkdir()
        for name in ("tls.crt", "tls.key"):
            (root / name).symlink_to(Path("..data") / name)

    @property
    def cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls.key"

    def publish(self, cert: bytes, key: bytes) -> None:
        self._version += 1
        version = self.root / f"..2026_12_03_{self._version}"
        version.mkdir()
        (version / "tls.crt").write_bytes(cert)
        (version / "tls.key").write_bytes(key)
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, self.root / "..data")


def _issued(authority: trustme.CA) -> tuple[bytes, bytes]:
    """A certificate chain and its key, as PEM."""
    issued = authority.issue_cert("localhost", "127.0.0.1")
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    return chain, issued.private_key_pem.bytes()


def _leaf(chain: bytes) -> bytes:
    end = b"-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(chain[: chain.index(end) + len(end)].decode())


def _served_certificate(port: int, authority: trustme.CA) -> bytes:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=context)
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        served = sock.getpeercert(binary_form=True)
        assert served is not None
        return served


def test_a_rotated_secret_is_served_without_a_signal(
    start_outbox_proxy: StartProxy, tmp_path: Path
) -> None:
    authority = trustme.CA()
    secret = _MountedSecret(tmp_path / "secret")
    first = _issued(authority)
    secret.publish(*first)
    proxy = start_outbox_proxy(
        {"smtp": {"tls_cert_file": str(secret.cert), "tls_key_file": str(secret.key)}}
    )
    served_first = _served_certificate(proxy.smtp_port, authority)
    assert served_first == _leaf(first[0])

    # A broken pair (the key of another certificate) leaves the one in use.
    other = _issued(authority)
    secret.publish(_issued(authority)[0], other[1])
    _until(lambda: bool(proxy.events("tls_reload_failed")), 15, "the broken pair refused")
    assert _served_certificate(proxy.smtp_port, authority) == served_first

    second = _issued(authority)
    secret.publish(*second)
    _until(
        lambda: _served_certificate(proxy.smtp_port, authority) == _leaf(second[0]),
        15,
        "the new certificate served",
    )
    assert proxy.events("tls_reloaded")[-1]["why"] == "files changed"
    assert proxy.metric("sesproxy_config_reloads_total", result="success") == 0


def test_sighup_applies_the_sending_rate(start_ses_proxy: StartProxy) -> None:
    proxy = start_ses_proxy({"rate": {"max_send_rate": 5}})
    _until(lambda: proxy.metric("sesproxy_rate_limit_recipients_per_second") == 5, 10, "5/s")
    _rewrite(proxy, {"rate": {"max_send_rate": 3}})
    _hup(proxy, "success")
    assert proxy.metric("sesproxy_rate_limit_recipients_per_second") == 3
