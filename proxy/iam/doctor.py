"""`ses-proxy doctor`: a preflight checklist against SES, one line per check.

    ok    credentials: container-role (temporary), expires 2026-11-27T13:40:00Z (in 58 min)
    FAIL  identity example.org: not verified (Pending) — verify it in SES (or remove …)
    warn  quota: 14/s, 45,000 of 50,000 sent in the last 24 h (90 %) — …

Exit 0 when nothing FAILed (warnings do not fail), 1 when something did; a credential
that cannot be obtained or is refused (long-lived keys) is a ConfigError, exit 2.

The checks are pure functions from SES's answers to lines; `run_doctor` alone talks
to AWS, with the same session (`open_session`), client settings and error
classification (`classify`) as the relay. The relay's own role is allowed nothing
but sending (and the quota), so every read call may well be AccessDenied: that is a
`warn` naming the permission that would let doctor check it, never a failure. Any
other error (SES unreachable, credential refused) fails the check: the relay would
fail too.

With `ses.api: v2`, identities, DKIM and the configuration set are read with v1's
calls (v2 has no batch of them; both APIs see the same account), sending and the
quota with v2's GetAccount. The test message goes out through the relay's own delivery
(`delivery/ses.py`) whichever API sends: the path, signer and transport the relay uses.
Under v2, a credential denied ses:SendEmail is most often a policy written for v1
(ses:SendRawEmail only): the line says so, with the fix.

Nothing secret is printed: no key, token or signature ever reaches a line.
"""

from __future__ import annotations

import email.utils
import socket
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry

from proxy.addresses import AddressError, matches_any, parse_envelope_address
from proxy.aws.credentials import CredentialSource
from proxy.aws.errors import error_reply
from proxy.aws.ses_client import SesClient
from proxy.delivery import DeliveryError, Envelope
from proxy.delivery.ses import SesDelivery
from proxy.delivery.ses_errors import classify, unreachable
from proxy.iam.generate import configuration_set_keys, sender_keys
from proxy.observability.metrics import Metrics
from proxy.settings import ConfigError, Settings

if TYPE_CHECKING:
    from types_aiobotocore_ses import SESClient

Status = Literal["ok", "warn", "FAIL"]
OK: Status = "ok"
WARN: Status = "warn"
FAIL: Status = "FAIL"

EXIT_OK = 0
EXIT_FAILED = 1

QUOTA_WARN_RATIO = 0.8
# What SES gives an account in the sandbox (AWS docs: 200 messages per 24 h, 1/s).
SANDBOX_QUOTA = (200.0, 1.0)
# GetIdentityVerificationAttributes / GetIdentityDkimAttributes take 100 identities a call.
_IDENTITIES_PER_CALL = 100
_WILDCARDS = ("*", "?")
_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})
_SHOWN_MESSAGE_CHARS = 200

T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    """One checklist line: `status  subject: text`."""

    status: Status
    subject: str
    text: str

    def render(self) -> str:
        return f"{self.status:<6}{self.subject}: {self.text}"


@dataclass(frozen=True)
class CallFailed:
    """An SES call that did not answer: the error code (or exception type), its
    message and the HTTP status (None when there was no HTTP answer at all)."""

    code: str
    message: str
    http_status: int | None

    @property
    def denied(self) -> bool:
        return self.code in _ACCESS_DENIED

    def as_delivery_error(self) -> DeliveryError:
        """The relay's class for this failure (what an SMTP client would be told)."""
        if self.http_status is None:
            return unreachable(f"{self.code}: {self.message}")
        return classify(self.code, self.message, self.http_status)


@dataclass(frozen=True)
class SenderNeed:
    """What one allowed-sender pattern needs verified.

    `named`: the identities `ses-proxy iam-policy` allows for it, most specific first
    (the address for a literal sender, then its domain); `parents`: the parent
    domains, which SES also accepts (a verified domain covers its subdomains) but
    the policy does not name. Both empty when the domain is a pattern, so no
    particular identity can be named."""

    pattern: str
    named: tuple[str, ...]
    parents: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        """In the order SES prefers them: the most specific verified one is used."""
        return self.named + self.parents

    @property
    def literal(self) -> bool:
        return not any(w in self.pattern for w in _WILDCARDS)


def exit_code(lines: Iterable[Line]) -> int:
    return EXIT_FAILED if any(line.status == FAIL for line in lines) else EXIT_OK


def _shown(text: str) -> str:
    """An SES message made safe for one line: no control characters, bounded."""
    flat = "".join(c if c.isprintable() else " " for c in text).strip()
    if len(flat) > _SHOWN_MESSAGE_CHARS:
        return flat[:_SHOWN_MESSAGE_CHARS] + "…"
    return flat


def _number(value: float) -> str:
    """14.0 -> '14', 0.5 -> '0.5', 50000 -> '50,000'."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _duration(seconds: float) -> str:
    minutes = int(abs(seconds) // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


# ---------------------------------------------------------------------------
# Pure checks: SES's answers in, lines out
# ---------------------------------------------------------------------------


def unreadable_line(
    subject: str, action: str, failed: CallFailed, send_action: str = "ses:SendRawEmail"
) -> Line:
    """A read call that failed: a warning if the role may not read it, else a failure."""
    if failed.denied:
        return Line(
            WARN,
            subject,
            f"cannot check, the credential may not call {action} (AccessDenied) — "
            f"grant {action} to let doctor check it (the relay itself needs only "
            f"{send_action})",
        )
    error = failed.as_delivery_error()
    if failed.http_status is None:
        why = f"SES unreachable ({failed.code}: {_shown(failed.message)})"
    else:
        why = f"SES answered {failed.code} (HTTP {failed.http_status}): {_shown(failed.message)}"
    return Line(FAIL, subject, f"cannot check, {why} — the relay would defer mail ({error.reason})")


def credential_line(source: CredentialSource, expiry: datetime | None, now: datetime) -> Line:
    """Where the credential comes from, whether it is temporary, when it expires."""
    what = source.method
    if source.assumed_role is not None:
        what += f", role {source.assumed_role}"
    if not source.temporary:
        return Line(
            WARN,
            "credentials",
            f"{what} (long-lived access key, accepted because ses.allow_static_credentials "
            "is true) — prefer a role: instance profile, container or web identity",
        )
    if expiry is None:
        return Line(
            WARN,
            "credentials",
            f"{what} (temporary), expiry unknown — a session token that botocore cannot "
            "refresh stops working when it expires; prefer a role it can refresh",
        )
    left = (expiry - now).total_seconds()
    stamp = expiry.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if left <= 0:
        return Line(
            WARN,
            "credentials",
            f"{what} (temporary), expired {stamp} ({_duration(left)} ago) — botocore "
            "refreshes it on the next call; if this stays, the source serves stale credentials",
        )
    return Line(OK, "credentials", f"{what} (temporary), expires {stamp} (in {_duration(left)})")


def sender_needs(patterns: Sequence[str]) -> list[SenderNeed]:
    """For each allowed-sender pattern, the identities that would cover it.

    SES accepts a Source when its address identity is verified, else its domain
    identity, else a parent domain's: a literal address needs one of those;
    `*@domain` needs the domain (or a parent)."""
    needs = []
    for pattern in dict.fromkeys(p.lower() for p in patterns):
        local, at, domain = pattern.rpartition("@")
        if not at or not domain or any(w in domain for w in _WILDCARDS):
            needs.append(SenderNeed(pattern, ()))
            continue
        labels = domain.split(".")
        parents = tuple(".".join(labels[i:]) for i in range(1, len(labels) - 1))
        named = (domain,) if any(w in local for w in _WILDCARDS) else (pattern, domain)
        needs.append(SenderNeed(pattern, named, parents))
    return needs


def identities_to_query(needs: Iterable[SenderNeed]) -> list[str]:
    return list(dict.fromkeys(name for need in needs for name in need.candidates))


def covering_identity(need: SenderNeed, statuses: Mapping[str, str]) -> str | None:
    """The first candidate SES reports verified, or None."""
    for name in need.candidates:
        if statuses.get(name) == "Success":
            return name
    return None


def identity_lines(
    needs: Sequence[SenderNeed],
    statuses: Mapping[str, str],
    region: str,
    keys: Mapping[str, str] | None = None,
) -> list[Line]:
    """Verification of the identities the senders need.

    `statuses` maps identity name to SES's VerificationStatus (Success, Pending,
    Failed, TemporaryFailure, NotStarted); an identity SES does not know is absent.
    One ok line per verified identity (naming the literal senders it covers when
    they are not its own name), one FAIL per sender pattern nothing the IAM policy
    allows covers (a verified parent domain alone does not do)."""
    covered: dict[str, list[str]] = {}
    failures: list[Line] = []
    for need in needs:
        if not need.candidates:
            failures.append(
                Line(
                    WARN,
                    f"identity for {need.pattern}",
                    "the domain is a pattern, so doctor cannot tell which identities it "
                    "needs — check in SES that every domain it should match is verified",
                )
            )
            continue
        name = covering_identity(need, statuses)
        if name in need.parents:
            domain = need.named[-1]
            failures.append(
                Line(
                    FAIL,
                    f"identity {domain}",
                    f"not verified itself, only its parent domain {name} is: SES then "
                    f"authorizes {need.pattern} against identity/{name}, which "
                    "`ses-proxy iam-policy` does not allow, so sends would be AccessDenied "
                    f"— verify {domain} in SES",
                )
            )
            continue
        if name is not None:
            covered.setdefault(name, []).append(need.pattern)
            continue
        domain = need.named[-1]
        subject = f"identity {need.named[0]}"
        if len(need.named) == 1:
            text = f"not verified ({_status_phrase(statuses.get(domain), region)})"
            fix = "verify it in SES"
        else:
            address = need.named[0]
            if address not in statuses and domain not in statuses:
                text = f"neither it nor its domain {domain} is an SES identity in {region}"
            else:
                text = (
                    f"not verified, nor is its domain {domain} ({address}: "
                    f"{_status_phrase(statuses.get(address), region)}; {domain}: "
                    f"{_status_phrase(statuses.get(domain), region)})"
                )
            fix = f"verify {domain} (or the address) in SES"
        failures.append(
            Line(
                FAIL,
                subject,
                f"{text} — {fix} (or remove {need.pattern} from "
                f"{(keys or {}).get(need.pattern, 'policy.allowed_senders')})",
            )
        )
    lines = []
    for name, patterns in covered.items():
        others = [p for p in patterns if p not in (name, f"*@{name}")]
        suffix = f" (covers {', '.join(others)})" if others else ""
        lines.append(Line(OK, f"identity {name}", f"verified{suffix}"))
    return lines + failures


def _status_phrase(status: str | None, region: str) -> str:
    if status is None:
        return f"not an SES identity in {region}"
    return status


def dkim_lines(identities: Sequence[str], dkim: Mapping[str, tuple[bool, str]]) -> list[Line]:
    """DKIM of the identities the senders use. `dkim` maps identity name to
    (DkimEnabled, DkimVerificationStatus). Problems are warnings: mail still goes
    out, signed only by amazonses.com, and fails DMARC alignment."""
    lines = []
    for name in identities:
        domain = name.rpartition("@")[2]
        answer = dkim.get(name)
        if answer is None:
            lines.append(Line(WARN, f"identity {name}", "DKIM status not reported by SES"))
            continue
        enabled, status = answer
        if not enabled:
            lines.append(
                Line(
                    WARN,
                    f"identity {name}",
                    "DKIM not enabled — mail is signed only by amazonses.com and fails "
                    f"DMARC alignment; enable Easy DKIM for {domain} in SES",
                )
            )
        elif status != "Success":
            lines.append(
                Line(
                    WARN,
                    f"identity {name}",
                    f"DKIM enabled but not verified ({status}) — publish the CNAME records "
                    f"SES lists for {domain}",
                )
            )
        else:
            lines.append(Line(OK, f"identity {name}", "DKIM enabled"))
    return lines


def no_configuration_set_line() -> Line:
    return Line(
        WARN,
        "configuration set",
        "none configured — without one SES uses TLS opportunistically and may deliver in "
        "clear; set ses.configuration_set to a set whose TLS policy is Require",
    )


def configuration_set_line(name: str, tls_policy: str | None) -> Line:
    """`tls_policy` is DeliveryOptions.TlsPolicy; None when SES sent no DeliveryOptions,
    which means the default, Optional."""
    subject = f"configuration set {name}"
    if tls_policy == "Require":
        return Line(OK, subject, "exists, TLS policy Require")
    shown = tls_policy or "Optional (not set)"
    return Line(
        FAIL, subject, f"TLS policy {shown} — set it to Require so SES never sends in clear"
    )


def missing_configuration_set_line(
    name: str, region: str, key: str = "ses.configuration_set"
) -> Line:
    return Line(
        FAIL,
        f"configuration set {name}",
        f"does not exist in {region} — create it (TLS policy Require) or fix "
        f"{key}; the relay would defer every message sent with it (451 4.3.5)",
    )


def sending_line(enabled: bool) -> Line:
    if enabled:
        return Line(OK, "account sending", "enabled")
    return Line(
        FAIL,
        "account sending",
        "disabled — SES has paused sending for this account in this region, the relay "
        "would defer every message (451 4.3.2); see the SES console's reputation page",
    )


def quota_lines(
    max_send_rate: float,
    max_24h_send: float,
    sent_last_24h: float,
    configured_rate: float | None = None,
) -> list[Line]:
    """GetSendQuota's answer, and the configured pacing rate against it."""
    rate = f"{_number(max_send_rate)}/s"
    lines = []
    if max_24h_send < 0:
        lines.append(
            Line(
                OK,
                "quota",
                f"{rate}, {_number(sent_last_24h)} sent in the last 24 h (no daily limit)",
            )
        )
    else:
        used = sent_last_24h / max_24h_send if max_24h_send > 0 else 1.0
        text = (
            f"{rate}, {_number(sent_last_24h)} of {_number(max_24h_send)} sent in the last "
            f"24 h ({round(used * 100)} %)"
        )
        if used >= 1:
            lines.append(
                Line(
                    FAIL,
                    "quota",
                    f"{text} — the daily quota is spent, SES refuses every send until the "
                    "rolling window frees some (451 4.4.5); request a higher quota",
                )
            )
        elif used > QUOTA_WARN_RATIO:
            lines.append(
                Line(
                    WARN,
                    "quota",
                    f"{text} — above {round(QUOTA_WARN_RATIO * 100)} %; request a higher "
                    "quota before the relay starts deferring mail (451 4.4.5)",
                )
            )
        else:
            lines.append(Line(OK, "quota", text))
        if (max_24h_send, max_send_rate) == SANDBOX_QUOTA:
            lines.append(
                Line(
                    WARN,
                    "quota",
                    "200 a day at 1/s is the SES sandbox: only verified recipients get mail; "
                    "request production access",
                )
            )
    if configured_rate is not None and configured_rate > max_send_rate:
        lines.append(
            Line(
                WARN,
                "rate",
                f"rate.max_send_rate {_number(configured_rate)}/s is above SES's "
                f"MaxSendRate {rate}, which SES throttles beyond — lower it, or request a "
                "higher sending rate",
            )
        )
    return lines


def probe_sender(patterns: Sequence[str]) -> str | None:
    """The first literal allowed sender (no wildcard), the test message's Source."""
    for need in sender_needs(patterns):
        if need.literal and need.named:
            return need.pattern
    return None


def probe_message(sender: str, to: str, now: datetime, hostname: str) -> bytes:
    """A small plain-text message, with CRLF line ends as SMTP would carry it."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "ses-proxy doctor test message"
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = email.utils.make_msgid("ses-proxy-doctor", sender.rpartition("@")[2])
    message.set_content(
        f"This message was sent by `ses-proxy doctor --send-test` on {hostname}\n"
        "to check that this relay's credential can send through Amazon SES.\n"
        "No action is needed.\n",
        charset="us-ascii",
    )
    return message.as_bytes()


def probe_line(to: str, result: str | DeliveryError, api: str = "v1") -> Line:
    """The outcome of the test send: SES's MessageId, or the relay's class."""
    subject = f"test send to {to}"
    if isinstance(result, str):
        return Line(OK, subject, f"MessageId {result}")
    if api == "v2" and result.reason == "denied":
        return Line(
            FAIL,
            subject,
            f"not sent (denied): the credential may not call ses:SendEmail, which ses.api: v2 "
            "sends with; a policy written for v1 allows only ses:SendRawEmail — allow "
            "ses:SendEmail (and ses:GetAccount) on the same resources: `ses-proxy iam-policy "
            f"-c FILE` prints the policy for this config; the relay would answer "
            f"{result.reply!r} — {result.detail}",
        )
    return Line(
        FAIL,
        subject,
        f"not sent ({result.reason}): the relay would answer {result.reply!r} — {result.detail}",
    )


# ---------------------------------------------------------------------------
# I/O: the only place that talks to AWS
# ---------------------------------------------------------------------------


async def _ask(call: Awaitable[T]) -> T | CallFailed:
    try:
        return await call
    except ClientError as error:
        reply = error_reply(error)
        return CallFailed(reply.code, _shown(reply.message), reply.status)
    except (BotoCoreError, OSError, TimeoutError) as error:
        return CallFailed(type(error).__name__, _shown(str(error)), None)


async def _check_identities(client: SESClient, settings: Settings) -> list[Line]:
    region = settings.ses.region
    keys = sender_keys(settings)
    needs = sender_needs(list(keys))
    names = identities_to_query(needs)
    statuses: dict[str, str] = {}
    for start in range(0, len(names), _IDENTITIES_PER_CALL):
        answer = await _ask(
            client.get_identity_verification_attributes(
                Identities=names[start : start + _IDENTITIES_PER_CALL]
            )
        )
        if isinstance(answer, CallFailed):
            return [unreadable_line("identities", "ses:GetIdentityVerificationAttributes", answer)]
        for name, attributes in answer["VerificationAttributes"].items():
            statuses[name.lower()] = attributes["VerificationStatus"]
    lines = identity_lines(needs, statuses, region, keys)
    used = list(dict.fromkeys(c for n in needs if (c := covering_identity(n, statuses))))
    if not used:
        return lines
    dkim: dict[str, tuple[bool, str]] = {}
    for start in range(0, len(used), _IDENTITIES_PER_CALL):
        dkim_answer = await _ask(
            client.get_identity_dkim_attributes(
                Identities=used[start : start + _IDENTITIES_PER_CALL]
            )
        )
        if isinstance(dkim_answer, CallFailed):
            return [*lines, unreadable_line("DKIM", "ses:GetIdentityDkimAttributes", dkim_answer)]
        for name, attrs in dkim_answer["DkimAttributes"].items():
            dkim[name.lower()] = (attrs["DkimEnabled"], attrs["DkimVerificationStatus"])
    return lines + dkim_lines(used, dkim)


async def _check_configuration_sets(client: SESClient, settings: Settings) -> list[Line]:
    named = configuration_set_keys(settings)
    if settings.ses.configuration_set is None and not any(
        c.configuration_set for c in settings.clients
    ):
        lines = [no_configuration_set_line()]
    else:
        lines = []
    for name, key in named.items():
        lines.append(await _check_configuration_set(client, settings, name, key))
    return lines


async def _check_configuration_set(
    client: SESClient, settings: Settings, name: str, key: str
) -> Line:
    answer = await _ask(
        client.describe_configuration_set(
            ConfigurationSetName=name, ConfigurationSetAttributeNames=["deliveryOptions"]
        )
    )
    if isinstance(answer, CallFailed):
        if answer.code in ("ConfigurationSetDoesNotExist", "ConfigurationSetDoesNotExistException"):
            return missing_configuration_set_line(name, settings.ses.region, key)
        return unreadable_line(f"configuration set {name}", "ses:DescribeConfigurationSet", answer)
    return configuration_set_line(name, answer.get("DeliveryOptions", {}).get("TlsPolicy"))


async def _check_sending(client: SESClient) -> Line:
    answer = await _ask(client.get_account_sending_enabled())
    if isinstance(answer, CallFailed):
        return unreadable_line("account sending", "ses:GetAccountSendingEnabled", answer)
    return sending_line(bool(answer["Enabled"]))


async def _check_account_v2(client: Any, settings: Settings) -> list[Line]:
    """Sending and the quota from one v2 GetAccount."""
    answer = await _ask(client.get_account())
    if isinstance(answer, CallFailed):
        return [
            unreadable_line(subject, "ses:GetAccount", answer, "ses:SendEmail")
            for subject in ("account sending", "quota")
        ]
    quota = answer.get("SendQuota", {})
    configured = settings.rate.max_send_rate
    return [
        sending_line(bool(answer.get("SendingEnabled"))),
        *quota_lines(
            quota.get("MaxSendRate", 0.0),
            quota.get("Max24HourSend", 0.0),
            quota.get("SentLast24Hours", 0.0),
            None if isinstance(configured, str) else configured,
        ),
    ]


async def _check_quota(client: SESClient, settings: Settings) -> list[Line]:
    answer = await _ask(client.get_send_quota())
    if isinstance(answer, CallFailed):
        return [unreadable_line("quota", "ses:GetSendQuota", answer)]
    configured = settings.rate.max_send_rate
    return quota_lines(
        answer["MaxSendRate"],
        answer["Max24HourSend"],
        answer["SentLast24Hours"],
        None if isinstance(configured, str) else configured,
    )


def _probe(settings: Settings, to: str) -> tuple[str, bytes] | Line:
    """The test message's sender and bytes, or the line saying why there is none."""
    subject = f"test send to {to}"
    sender = probe_sender(settings.policy.allowed_senders)
    if sender is None:
        return Line(
            FAIL,
            subject,
            "policy.allowed_senders has no literal address to send from (only patterns); "
            "add one, e.g. noreply@your-domain",
        )
    if not matches_any(settings.policy.allowed_recipients, to):
        return Line(
            FAIL,
            subject,
            "not in policy.allowed_recipients, so the relay would refuse it: not sent; "
            "pick an allowed recipient",
        )
    return sender, probe_message(sender, to, datetime.now(UTC), socket.gethostname())


async def _test_send(delivery: SesDelivery, settings: Settings, to: str) -> Line:
    """The test message through the relay's own delivery: the lean path, its signer,
    transport and CA bundle, and its classification of what SES answered."""
    probe = _probe(settings, to)
    if isinstance(probe, Line):
        return probe
    source, raw = probe
    envelope = Envelope(source, (to,), configuration_set=settings.ses.configuration_set)
    try:
        message_id = await delivery.send(envelope, raw)
    except DeliveryError as failure:
        return probe_line(to, failure, settings.ses.api)
    return probe_line(to, message_id, settings.ses.api)


async def checks(
    client: SESClient, delivery: SesDelivery, settings: Settings, to: str | None
) -> AsyncIterator[Line]:
    """Every SES check in order, each line as soon as it is known; `to` adds the test send."""
    for line in await _check_identities(client, settings):
        yield line
    for line in await _check_configuration_sets(client, settings):
        yield line
    yield await _check_sending(client)
    for line in await _check_quota(client, settings):
        yield line
    if to is not None:
        yield await _test_send(delivery, settings, to)


async def checks_v2(
    reads: SESClient, account: Any, delivery: SesDelivery, settings: Settings, to: str | None
) -> AsyncIterator[Line]:
    """The same checklist for `ses.api: v2` (see the module docstring)."""
    for line in await _check_identities(reads, settings):
        yield line
    for line in await _check_configuration_sets(reads, settings):
        yield line
    for line in await _check_account_v2(account, settings):
        yield line
    if to is not None:
        yield await _test_send(delivery, settings, to)


def _recipient(send_test_to: str) -> str:
    try:
        return parse_envelope_address(send_test_to)
    except AddressError as error:
        raise ConfigError(f"--send-test: {error}") from None


async def run_doctor(
    settings: Settings,
    out: TextIO,
    *,
    send_test_to: str | None = None,
    session_policy: str | None = None,
) -> int:
    """Run the checklist, writing each line as it is known; the exit code.

    `session_policy` is what AssumeRole carries when ses.role_arn is set: pass the
    relay's own, so doctor sees exactly what the relay would be allowed."""
    to = _recipient(send_test_to) if send_test_to is not None else None
    lines: list[Line] = []

    def emit(*new: Line) -> None:
        for line in new:
            lines.append(line)
            out.write(line.render() + "\n")
        out.flush()

    # The relay's own client: same credential chain, session policy, timeouts, one attempt.
    # Credentials that cannot be had raise CredentialError (exit 2): nothing can be checked.
    ses = SesClient(settings.ses, session_policy)
    await ses.connect()
    delivery = SesDelivery(ses, Metrics(CollectorRegistry()))
    try:
        assert ses.credential_source is not None
        assert ses.api is not None
        emit(credential_line(ses.credential_source, ses.credential_expiry(), datetime.now(UTC)))
        if settings.ses.api == "v2":
            lines_v2 = checks_v2(await ses.v1_api(), ses.api, delivery, settings, to)
            async for line in lines_v2:
                emit(line)
        else:
            async for line in checks(ses.api, delivery, settings, to):
                emit(line)
    finally:
        await ses.close()
    return exit_code(lines)
