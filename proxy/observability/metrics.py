"""Every metric in DESIGN.md's table, on a registry the wiring owns (no globals).

No label ever carries an address, a body or a secret: every label value comes from
a closed set named in this module or in the reply table, so cardinality stays
bounded whatever clients send.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REJECT_REASONS = (
    "network",
    "tls",
    "sender",
    "recipient",
    "size",
    "malformed",
    "auth",
    "configuration_set",
)
AUTH_RESULTS = ("success", "bad_credentials", "locked_out", "not_encrypted")
NO_CLIENT = "-"  # the `client` label of a session that is no configured client
DEFER_REASONS = (
    "throttled",
    "unavailable",
    "credentials",
    "denied",
    "paused",
    "config",
    "rate",
    "quota",
    "inflight",
    "internal",
)
FAIL_REASONS = ("rejected", "invalid")


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        shared_budget: bool = False,
        clients: tuple[str, ...] = (),
    ) -> None:
        """`clients`: the configured clients' names, the `client` label's values besides "-"."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages_received = Counter(
            "sesproxy_messages_received",
            "Messages whose DATA was fully received, by client.",
            ["client"],
            registry=r,
        )
        self.messages_sent = Counter(
            "sesproxy_messages_sent",
            "Messages the backend accepted with a message id, by client.",
            ["client"],
            registry=r,
        )
        self.messages_rejected = Counter(
            "sesproxy_messages_rejected",
            "Connections, commands or messages refused by local policy, by client and reason.",
            ["client", "reason"],
            registry=r,
        )
        self.messages_deferred = Counter(
            "sesproxy_messages_deferred",
            "Messages answered 451 (nothing sent), by client and reason.",
            ["client", "reason"],
            registry=r,
        )
        self.auth_attempts = Counter(
            "sesproxy_auth_attempts",
            "SMTP AUTH attempts, by result (locked_out: refused unchecked after failures).",
            ["result"],
            registry=r,
        )
        self.auth_aws_key_usernames = Counter(
            "sesproxy_auth_aws_key_usernames",
            "AUTH attempts whose username is an AWS access key id (an SES SMTP credential "
            "still configured in an application: delete the key).",
            registry=r,
        )
        self.messages_failed = Counter(
            "sesproxy_messages_failed",
            "Messages the backend refused permanently (554), by reason.",
            ["reason"],
            registry=r,
        )
        self.rate_wait_seconds = Histogram(
            "sesproxy_rate_wait_seconds",
            "Time a message waited for its turn in the sending budget.",
            buckets=(0.0, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
            registry=r,
        )
        self.rate_limit = Gauge(
            "sesproxy_rate_limit_recipients_per_second",
            "The sending rate in force, in recipients per second.",
            registry=r,
        )
        # It speaks of a shared budget: without one (rate.backend local, or no SES)
        # it is not exposed at all, rather than read as a budget that is down.
        self.rate_shared_budget_up = Gauge(
            "sesproxy_rate_shared_budget_up",
            "1 while the shared (Redis) budget is used, 0 on the local fallback.",
            registry=r if shared_budget else None,
        )
        self.ses_request_duration = Histogram(
            "sesproxy_ses_request_duration_seconds",
            "Duration of SES SendRawEmail requests, by outcome.",
            ["outcome"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.message_size = Histogram(
            "sesproxy_message_size_bytes",
            "Size of received messages.",
            buckets=(1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 10485760),
            registry=r,
        )
        self.inflight_bytes = Gauge(
            "sesproxy_inflight_bytes",
            "Message bytes the sessions hold now (against smtp.max_inflight_bytes).",
            registry=r,
        )
        self.smtp_sessions_active = Gauge(
            "sesproxy_smtp_sessions_active", "Open SMTP sessions.", registry=r
        )
        self.credentials_expiry = Gauge(
            "sesproxy_credentials_expiry_timestamp_seconds",
            "Unix time at which the credential in use expires (0: none or no expiry).",
            registry=r,
        )
        self.ses_quota_max_send_rate = Gauge(
            "sesproxy_ses_quota_max_send_rate", "SES MaxSendRate (GetSendQuota).", registry=r
        )
        self.ses_quota_max_24h_send = Gauge(
            "sesproxy_ses_quota_max_24h_send", "SES Max24HourSend (GetSendQuota).", registry=r
        )
        self.ses_quota_sent_last_24h = Gauge(
            "sesproxy_ses_quota_sent_last_24h", "SES SentLast24Hours (GetSendQuota).", registry=r
        )
        self.config_reloads = Counter(
            "sesproxy_config_reloads",
            "Configuration reloads (SIGHUP), by result: a failure changed nothing.",
            ["result"],
            registry=r,
        )
        self.build = Info("sesproxy_build", "Version of the running ses-proxy.", registry=r)
        self.build.info({"version": _version()})
        for client in (NO_CLIENT, *clients):
            self.messages_received.labels(client)
            self.messages_sent.labels(client)
            for reason in REJECT_REASONS:
                self.messages_rejected.labels(client, reason)
            for reason in DEFER_REASONS:
                self.messages_deferred.labels(client, reason)
        for result in AUTH_RESULTS:
            self.auth_attempts.labels(result)
        for reason in FAIL_REASONS:
            self.messages_failed.labels(reason)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)


def _version() -> str:
    try:
        return version("ses-proxy")
    except PackageNotFoundError:
        return "unknown"
