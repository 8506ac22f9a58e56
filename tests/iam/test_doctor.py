"""`ses-proxy doctor`: the pure checks, then the command run for real against FakeAWS."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from proxy.aws.credentials import CredentialSource
from proxy.delivery import DeliveryError
from proxy.delivery.ses_errors import classify
from proxy.iam.doctor import (
    FAIL,
    OK,
    WARN,
    CallFailed,
    Line,
    SenderNeed,
    configuration_set_line,
    credential_line,
    dkim_lines,
    exit_code,
    identities_to_query,
    identity_lines,
    missing_configuration_set_line,
    no_configuration_set_line,
    probe_line,
    probe_message,
    probe_sender,
    quota_lines,
    sender_needs,
    sending_line,
    unreadable_line,
)
from tests.conftest import ALLOWED_SENDERS
from tests.fakes.aws import FakeAWS, IdentityState
from tests.fakes.credentials import FakeContainerCredentials
from tests.harness import deep_merge

if TYPE_CHECKING:
    pass

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 12, 42, tzinfo=UTC)

# ---------------------------------------------------------------------------
# Pure checks
# ---------------------------------------------------------------------------


def test_a_line_renders_status_in_a_column() -> None:
    assert Line(OK, "account sending", "enabled").render() == "ok    account sending: enabled"
    assert Line(WARN, "a", "b").render() == "warn  a: b"
    assert Line(FAIL, "a", "b").render() == "FAIL  a: b"


def test_exit_code_fails_only_on_fail() -> None:
    assert exit_code([]) == 0
    assert exit_code([Line(OK, "a", "b"), Line(WARN, "a", "b")]) == 0
    assert exit_code([Line(OK, "a", "b"), Line(FAIL, "a", "b")]) == 1


def test_credential_line_temporary_with_expiry() -> None:
    source = CredentialSource("container-role", temporary=True, assumed_role=None)
    line = credential_line(source, NOW + timedelta(minutes=58, seconds=10), NOW)
    assert line.render() == (
        "ok    credentials: container-role (temporary), expires 2026-11-27T13:40:10Z (in 58 min)"
    )
    later = credential_line(source, NOW + timedelta(hours=5, minutes=3), NOW)
    assert "(in 5 h 3 min)" in later.text


def test_credential_line_assumed_role_names_the_role() -> None:
    role = "arn:aws:iam::123456789012:role/ses-proxy"
    source = CredentialSource("assume-role via container-role", True, role)
    line = credential_line(source, NOW + timedelta(hours=1), NOW)
    assert line.status == OK
    assert line.text.startswith(f"assume-role via container-role, role {role} (temporary)")


def test_credential_line_warns_on_static_and_unrefreshable_keys() -> None:
    static = credential_line(CredentialSource("env", False, None), None, NOW)
    assert static.status == WARN
    assert "long-lived" in static.text
    token = credential_line(CredentialSource("env", True, None), None, NOW)
    assert token.status == WARN
    assert "expiry unknown" in token.text


def test_sender_needs() -> None:
    needs = sender_needs(
        ["noreply@example.com", "*@example.org", "a?@x.test", "*@*.y.test", "*", "n@a.b.c.test"]
    )
    assert needs == [
        SenderNeed("noreply@example.com", ("noreply@example.com", "example.com")),
        SenderNeed("*@example.org", ("example.org",)),
        SenderNeed("a?@x.test", ("x.test",)),
        SenderNeed("*@*.y.test", ()),
        SenderNeed("*", ()),
        SenderNeed("n@a.b.c.test", ("n@a.b.c.test", "a.b.c.test"), ("b.c.test", "c.test")),
    ]
    assert identities_to_query(needs) == [
        "noreply@example.com",
        "example.com",
        "example.org",
        "x.test",
        "n@a.b.c.test",
        "a.b.c.test",
        "b.c.test",
        "c.test",
    ]


def test_identity_lines_all_verified() -> None:
    needs = sender_needs(["noreply@example.com", "*@example.org", "*@example.com"])
    statuses = {"example.com": "Success", "example.org": "Success"}
    assert [line.render() for line in identity_lines(needs, statuses, "eu-west-3")] == [
        "ok    identity example.com: verified (covers noreply@example.com)",
        "ok    identity example.org: verified",
    ]


def test_identity_lines_an_address_identity_covers_itself() -> None:
    needs = sender_needs(["noreply@example.com"])
    lines = identity_lines(needs, {"noreply@example.com": "Success"}, "eu-west-3")
    assert [line.render() for line in lines] == ["ok    identity noreply@example.com: verified"]


def test_identity_lines_unverified() -> None:
    needs = sender_needs(["noreply@example.com", "*@example.org"])
    lines = identity_lines(needs, {"example.org": "Pending"}, "eu-west-3")
    assert [line.status for line in lines] == [FAIL, FAIL]
    pending = identity_lines(needs[:1], {"example.com": "Failed"}, "eu-west-3")
    assert pending[0].text.startswith(
        "not verified, nor is its domain example.com (noreply@example.com: not an SES "
        "identity in eu-west-3; example.com: Failed)"
    )
    assert lines[0].render() == (
        "FAIL  identity noreply@example.com: neither it nor its domain example.com is an SES "
        "identity in eu-west-3 — verify example.com (or the address) in SES "
        "(or remove noreply@example.com from policy.allowed_senders)"
    )
    assert lines[1].render() == (
        "FAIL  identity example.org: not verified (Pending) — verify it in SES "
        "(or remove *@example.org from policy.allowed_senders)"
    )


def test_identity_lines_a_parent_domain_alone_fails() -> None:
    # SES accepts mail.example.com senders on a verified example.com, but authorizes
    # them against identity/example.com, which the generated policy does not allow.
    needs = sender_needs(["noreply@mail.example.com", "*@mail.example.com"])
    lines = identity_lines(needs, {"example.com": "Success"}, "eu-west-3")
    assert [(line.status, line.subject) for line in lines] == [
        (FAIL, "identity mail.example.com"),
        (FAIL, "identity mail.example.com"),
    ]
    assert "identity/example.com" in lines[0].text
    assert lines[0].text.endswith("verify mail.example.com in SES")
    ok = identity_lines(needs, {"example.com": "Success", "mail.example.com": "Success"}, "x")
    assert [line.render() for line in ok] == [
        "ok    identity mail.example.com: verified (covers noreply@mail.example.com)"
    ]


def test_identity_lines_wildcard_domain_is_a_warning() -> None:
    [line] = identity_lines(sender_needs(["*@*.example.com"]), {}, "eu-west-3")
    assert line.status == WARN
    assert line.subject == "identity for *@*.example.com"


def test_dkim_lines() -> None:
    lines = dkim_lines(
        ["a.test", "b.test", "c.test", "d.test"],
        {"a.test": (True, "Success"), "b.test": (False, "NotStarted"), "c.test": (True, "Pending")},
    )
    assert [line.status for line in lines] == [OK, WARN, WARN, WARN]
    assert lines[0].render() == "ok    identity a.test: DKIM enabled"
    assert lines[1].text.startswith("DKIM not enabled")
    assert "(Pending)" in lines[2].text
    assert "not reported" in lines[3].text


def test_configuration_set_lines() -> None:
    assert configuration_set_line("tls-required", "Require").render() == (
        "ok    configuration set tls-required: exists, TLS policy Require"
    )
    optional = configuration_set_line("loose", "Optional")
    assert optional.render() == (
        "FAIL  configuration set loose: TLS policy Optional — set it to Require so SES "
        "never sends in clear"
    )
    assert configuration_set_line("unset", None).status == FAIL
    assert missing_configuration_set_line("gone", "eu-west-3").status == FAIL
    none = no_configuration_set_line()
    assert none.status == WARN
    assert "opportunistically" in none.text


def test_sending_line() -> None:
    assert sending_line(True).render() == "ok    account sending: enabled"
    assert sending_line(False).status == FAIL


def test_quota_lines() -> None:
    assert [line.render() for line in quota_lines(14, 50000, 1234)] == [
        "ok    quota: 14/s, 1,234 of 50,000 sent in the last 24 h (2 %)"
    ]
    [warned] = quota_lines(14, 50000, 45000)
    assert warned.status == WARN
    assert warned.text.startswith("14/s, 45,000 of 50,000 sent in the last 24 h (90 %) — ")
    [spent] = quota_lines(14, 50000, 50000)
    assert spent.status == FAIL
    [unlimited] = quota_lines(0.5, -1, 10)
    assert unlimited.render() == "ok    quota: 0.5/s, 10 sent in the last 24 h (no daily limit)"
    sandbox = quota_lines(1, 200, 0)
    assert [line.status for line in sandbox] == [OK, WARN]
    assert "sandbox" in sandbox[1].text
    over = quota_lines(14, 50000, 0, configured_rate=20)
    assert [(line.status, line.subject) for line in over] == [(OK, "quota"), (WARN, "rate")]
    assert quota_lines(14, 50000, 0, configured_rate=10) == quota_lines(14, 50000, 0)


def test_access_denied_is_a_warning_naming_the_permission() -> None:
    denied = CallFailed("AccessDenied", "User `arn:…' is not authorized", 403)
    line = unreadable_line("quota", "ses:GetSendQuota", denied)
    assert line.status == WARN
    assert "grant ses:GetSendQuota" in line.text
    assert "AccessDenied" in line.text


def test_other_read_errors_fail_with_the_relay_class() -> None:
    refused = CallFailed("InvalidClientTokenId", "The security token is invalid.", 403)
    line = unreadable_line("quota", "ses:GetSendQuota", refused)
    assert line.status == FAIL
    assert "(credentials)" in line.text
    down = unreadable_line(
        "quota", "ses:GetSendQuota", CallFailed("EndpointConnectionError", "x", None)
    )
    assert down.status == FAIL
    assert "unreachable" in down.text
    assert "(unavailable)" in down.text


def test_probe_sender_is_the_first_literal_address() -> None:
    assert probe_sender(["*@example.org", "noreply@example.com", "b@x.test"]) == (
        "noreply@example.com"
    )
    assert probe_sender(["*@example.org", "*"]) is None


def test_probe_message_is_plain_crlf_mail() -> None:
    raw = probe_message("noreply@example.com", "you@example.net", NOW, "host1")
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    parsed = message_from_bytes(raw)
    assert parsed["From"] == "noreply@example.com"
    assert parsed["To"] == "you@example.net"
    assert parsed["Message-ID"].endswith("@example.com>")
    assert parsed["Bcc"] is None


def test_probe_line() -> None:
    assert probe_line("you@example.net", "0107-abc").render() == (
        "ok    test send to you@example.net: MessageId 0107-abc"
    )
    error: DeliveryError = classify("MessageRejected", "Email address is not verified.", 400)
    line = probe_line("you@example.net", error)
    assert line.status == FAIL
    assert line.text.startswith("not sent (rejected): the relay would answer '554 5.7.1")


# ---------------------------------------------------------------------------
# The command, against FakeAWS with container credentials

Doctor = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def doctor(
    tmp_path: Path, fake_aws: FakeAWS, container_credentials: FakeContainerCredentials
) -> Doctor:
    fake_aws.configuration_sets["tls-required"] = "Require"

    def run(
        overrides: Mapping[str, Any] | None = None,
        *args: str,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        config: dict[str, Any] = {
            "policy": {"allowed_senders": ALLOWED_SENDERS, "allowed_recipients": ["*"]},
            "ses": {
                "region": fake_aws.region,
                "endpoint_url": fake_aws.url,
                "allow_insecure_endpoint": True,
                "configuration_set": "tls-required",
            },
        }
        path = tmp_path / "ses.yaml"
        path.write_text(yaml.safe_dump(deep_merge(config, overrides or {})), encoding="utf-8")
        process_env = container_credentials.env() if env is None else dict(env)
        for name in [k for k in process_env if k.startswith("SES_PROXY_")]:
            del process_env[name]
        return subprocess.run(
            [sys.executable, "-m", "proxy", "doctor", "-c", str(path), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=process_env,
            timeout=120,
            check=False,
        )

    return run


def _lines(stdout: str) -> list[str]:
    return stdout.splitlines()


def _status_of(stdout: str, subject: str) -> list[str]:
    return [line.split()[0] for line in _lines(stdout) if f" {subject}: " in line]


def test_all_green(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.sent_last_24h = 1234
    result = doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert re.fullmatch(
        r"ok    credentials: container-role \(temporary\), "
        r"expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in 5\d min\)",
        lines[0],
    ), lines[0]
    assert lines[1:] == [
        "ok    identity example.com: verified (covers noreply@example.com)",
        "ok    identity example.org: verified",
        "ok    identity example.com: DKIM enabled",
        "ok    identity example.org: DKIM enabled",
        "ok    configuration set tls-required: exists, TLS policy Require",
        "ok    account sending: enabled",
        "ok    quota: 14/s, 1,234 of 50,000 sent in the last 24 h (2 %)",
    ]
    assert fake_aws.sent == []
    assert "SendRawEmail" not in {r.action for r in fake_aws.requests}


def test_no_secret_is_printed(
    doctor: Doctor, container_credentials: FakeContainerCredentials
) -> None:
    result = doctor({}, "--send-test", "you@example.net")
    credential = container_credentials.current
    assert credential.session_token is not None
    for secret in (
        credential.access_key_id,
        credential.secret_access_key,
        credential.session_token,
    ):
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_unverified_identity_fails(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.identities["example.org"] = IdentityState(verified=False)
    result = doctor()
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "FAIL  identity example.org: not verified (Pending) — verify it in SES "
        "(or remove *@example.org from policy.allowed_senders)"
    ) in _lines(result.stdout)
    # The other checks still ran.
    assert _status_of(result.stdout, "quota") == ["ok"]


def test_each_clients_senders_are_checked_naming_the_client(
    doctor: Doctor, fake_aws: FakeAWS
) -> None:
    clients = [
        {"name": "billing", "networks": ["10.0.0.0/24"], "allowed_senders": ["*@billing.example"]}
    ]
    result = doctor({"clients": clients})
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in _lines(result.stdout) if "billing.example" in line]
    assert line.startswith("FAIL")
    assert line.endswith("(or remove *@billing.example from clients[0].allowed_senders)")


def test_address_identity_covers_a_literal_sender(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.identities = {"noreply@example.com": IdentityState(), "example.org": IdentityState()}
    result = doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    identity noreply@example.com: verified" in _lines(result.stdout)


def test_dkim_off_is_a_warning(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.identities["example.com"] = IdentityState(dkim=False)
    result = doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(
        line.startswith("warn  identity example.com: DKIM not enabled")
        for line in _lines(result.stdout)
    )


def test_configuration_set_with_optional_tls_fails(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.configuration_sets["tls-required"] = "Optional"
    result = doctor()
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "FAIL  configuration set tls-required: TLS policy Optional — set it to Require so "
        "SES never sends in clear"
    ) in _lines(result.stdout)


def test_missing_configuration_set_fails(doctor: Doctor) -> None:
    result = doctor({"ses": {"configuration_set": "nope"}})
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(
        line.startswith("FAIL  configuration set nope: does not exist in eu-west-3")
        for line in _lines(result.stdout)
    )


def test_no_configuration_set_is_a_warning(doctor: Doctor) -> None:
    result = doctor({"ses": {"configuration_set": None}})
    assert result.returncode == 0, result.stdout + result.stderr
    assert _status_of(result.stdout, "configuration set") == ["warn"]


def test_sending_disabled_fails(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.sending_enabled = False
    result = doctor()
    assert result.returncode == 1, result.stdout + result.stderr
    assert _status_of(result.stdout, "account sending") == ["FAIL"]


def test_quota_at_ninety_percent_warns(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.sent_last_24h = 45000
    result = doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in _lines(result.stdout) if " quota: " in line]
    assert line.startswith("warn  quota: 14/s, 45,000 of 50,000 sent in the last 24 h (90 %) — ")


def test_send_test_sends_one_message(doctor: Doctor, fake_aws: FakeAWS) -> None:
    result = doctor({}, "--send-test", "You@Example.NET")
    assert result.returncode == 0, result.stdout + result.stderr
    [sent] = fake_aws.sent
    assert sent.source == "noreply@example.com"
    assert sent.configuration_set == "tls-required"
    assert sent.destinations == ["you@example.net"]
    assert sent.configuration_set == "tls-required"
    assert _lines(result.stdout)[-1] == (
        f"ok    test send to you@example.net: MessageId {sent.message_id}"
    )


def test_send_test_failure_names_the_class(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.inject("access_denied")
    result = doctor({}, "--send-test", "you@example.net")
    assert result.returncode == 1, result.stdout + result.stderr
    assert fake_aws.sent == []
    last = _lines(result.stdout)[-1]
    assert last.startswith("FAIL  test send to you@example.net: not sent (denied): ")
    assert "451 4.7.1" in last


def test_send_test_needs_a_literal_sender(doctor: Doctor, fake_aws: FakeAWS) -> None:
    result = doctor({"policy": {"allowed_senders": ["*@example.org"]}}, "--send-test", "a@b.test")
    assert result.returncode == 1
    assert "no literal address" in _lines(result.stdout)[-1]
    assert fake_aws.sent == []


def test_send_test_respects_allowed_recipients(doctor: Doctor, fake_aws: FakeAWS) -> None:
    result = doctor(
        {"policy": {"allowed_recipients": ["*@example.net"]}}, "--send-test", "a@elsewhere.test"
    )
    assert result.returncode == 1
    assert "policy.allowed_recipients" in _lines(result.stdout)[-1]
    assert fake_aws.sent == []


def test_send_test_bad_address_is_a_usage_error(doctor: Doctor) -> None:
    result = doctor({}, "--send-test", "not an address")
    assert result.returncode == 2
    assert "--send-test" in result.stderr


def test_static_keys_are_refused(
    doctor: Doctor, fake_aws: FakeAWS, container_credentials: FakeContainerCredentials
) -> None:
    key = fake_aws.add_static_key()
    env = container_credentials.env()
    del env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    env["AWS_ACCESS_KEY_ID"] = key.access_key_id
    env["AWS_SECRET_ACCESS_KEY"] = key.secret_access_key
    result = doctor(env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ses.allow_static_credentials" in result.stderr
    assert key.secret_access_key not in result.stdout + result.stderr
    assert fake_aws.requests == []

    allowed = doctor({"ses": {"allow_static_credentials": True}}, env=env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert _lines(allowed.stdout)[0].startswith("warn  credentials: env (long-lived access key")


def test_role_arn_is_assumed(
    doctor: Doctor, fake_aws: FakeAWS, container_credentials: FakeContainerCredentials
) -> None:
    role = "arn:aws:iam::123456789012:role/ses-proxy-sender"
    env = container_credentials.env()
    env["AWS_ENDPOINT_URL_STS"] = fake_aws.url
    result = doctor({"ses": {"role_arn": role}}, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    [assumed] = fake_aws.assumed_roles
    assert assumed.role_arn == role
    assert _lines(result.stdout)[0].startswith(
        f"ok    credentials: assume-role via container-role, role {role} (temporary), expires "
    )
    ses_keys = {r.access_key_id for r in fake_aws.requests if r.action != "AssumeRole"}
    assert ses_keys == {assumed.access_key_id}


def test_unreachable_ses_fails(doctor: Doctor, fake_aws: FakeAWS) -> None:
    # A port nothing listens on: every check fails, none passes silently.
    closed = f"http://127.0.0.1:{_closed_port()}"
    result = doctor({"ses": {"endpoint_url": closed, "connect_timeout_seconds": 2}})
    assert result.returncode == 1, result.stdout + result.stderr
    statuses = [line.split()[0] for line in _lines(result.stdout)[1:]]
    assert statuses
    assert set(statuses) == {"FAIL"}


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_least_privilege_role_gets_warnings_not_failures(
    doctor: Doctor, fake_aws: FakeAWS
) -> None:
    # What the relay's own role sees: every read call refused, sending allowed.
    fake_aws.denied_actions = {
        "GetIdentityVerificationAttributes",
        "GetIdentityDkimAttributes",
        "DescribeConfigurationSet",
        "GetAccountSendingEnabled",
        "GetSendQuota",
    }
    result = doctor(None, "--send-test", "you@example.net")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _lines(result.stdout)
    statuses = [(line.split()[0], line.split(maxsplit=1)[1].split(":")[0]) for line in lines[1:]]
    assert statuses == [
        ("warn", "identities"),
        ("warn", "configuration set tls-required"),
        ("warn", "account sending"),
        ("warn", "quota"),
        ("ok", "test send to you@example.net"),
    ]
    for line, action in zip(
        lines[1:],
        [
            "ses:GetIdentityVerificationAttributes",
            "ses:DescribeConfigurationSet",
            "ses:GetAccountSendingEnabled",
            "ses:GetSendQuota",
        ],
        strict=False,
    ):
        assert f"grant {action} " in line
    [sent] = fake_aws.sent
    assert sent.source == "noreply@example.com"
    assert sent.configuration_set == "tls-required"


def test_every_configuration_set_named_is_checked(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.configuration_sets["marketing"] = "Require"
    clients = [
        {
            "name": "billing",
            "networks": ["10.0.0.0/24"],
            "allowed_senders": ["noreply@example.com"],
            "allowed_configuration_sets": ["marketing", "billing-bounces"],
        }
    ]
    result = doctor({"clients": clients})
    lines = _lines(result.stdout)
    assert "ok    configuration set marketing: exists, TLS policy Require" in lines
    [missing] = [line for line in lines if "billing-bounces" in line]
    assert missing.startswith("FAIL  configuration set billing-bounces: does not exist")
    assert "fix clients[0].allowed_configuration_sets" in missing
    assert result.returncode == 1


# ---------------------------------------------------------------- ses.api: v2

V2 = {"ses": {"api": "v2"}}


def test_v2_all_green_reads_the_account_with_get_account(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.sent_last_24h = 1234
    result = doctor(V2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _lines(result.stdout)[1:] == [
        "ok    identity example.com: verified (covers noreply@example.com)",
        "ok    identity example.org: verified",
        "ok    identity example.com: DKIM enabled",
        "ok    identity example.org: DKIM enabled",
        "ok    configuration set tls-required: exists, TLS policy Require",
        "ok    account sending: enabled",
        "ok    quota: 14/s, 1,234 of 50,000 sent in the last 24 h (2 %)",
    ]
    actions = {r.action for r in fake_aws.requests}
    assert "GetAccount" in actions
    assert not actions & {"GetSendQuota", "GetAccountSendingEnabled", "SendRawEmail"}


def test_v2_sending_paused_fails(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.sending_enabled = False
    result = doctor(V2)
    assert result.returncode == 1
    assert _status_of(result.stdout, "account sending") == ["FAIL"]


def test_v2_send_test_goes_out_with_send_email(doctor: Doctor, fake_aws: FakeAWS) -> None:
    result = doctor(V2, "--send-test", "You@Example.NET")
    assert result.returncode == 0, result.stdout + result.stderr
    [sent] = fake_aws.sent
    assert (sent.source, sent.destinations) == ("noreply@example.com", ["you@example.net"])
    assert sent.configuration_set == "tls-required"
    [send] = [r for r in fake_aws.requests if r.action in ("SendEmail", "SendRawEmail")]
    assert send.action == "SendEmail"
    assert _lines(result.stdout)[-1] == (
        f"ok    test send to you@example.net: MessageId {sent.message_id}"
    )


def test_v2_a_credential_denied_send_email_is_told_the_fix(
    doctor: Doctor, fake_aws: FakeAWS
) -> None:
    # A role whose policy was written for v1: SendRawEmail allowed, SendEmail not.
    fake_aws.denied_actions = {"SendEmail", "GetAccount"}
    result = doctor(V2, "--send-test", "you@example.net")
    assert result.returncode == 1, result.stdout + result.stderr
    assert fake_aws.sent == []
    last = _lines(result.stdout)[-1]
    assert last.startswith(
        "FAIL  test send to you@example.net: not sent (denied): the credential may not call "
        "ses:SendEmail, which ses.api: v2 sends with; a policy written for v1 allows only "
        "ses:SendRawEmail — allow ses:SendEmail (and ses:GetAccount)"
    )
    assert "ses-proxy iam-policy" in last
    assert "451 4.7.1" in last
    for subject in ("account sending", "quota"):
        [line] = [line for line in _lines(result.stdout) if f" {subject}: " in line]
        assert line.startswith(f"warn  {subject}: cannot check")
        assert "grant ses:GetAccount " in line
        assert "needs only ses:SendEmail" in line


def test_v1_denied_send_raw_email_keeps_the_plain_line(doctor: Doctor, fake_aws: FakeAWS) -> None:
    fake_aws.denied_actions = {"SendRawEmail"}
    result = doctor({}, "--send-test", "you@example.net")
    assert result.returncode == 1
    last = _lines(result.stdout)[-1]
    assert last.startswith("FAIL  test send to you@example.net: not sent (denied): the relay")
    assert "ses:SendEmail" not in last
