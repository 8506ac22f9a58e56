"""The one typed settings tree: a YAML file, overridden key by key by SES_PROXY_* env.

Every box of the data flow reads its part of this tree and nothing else. Validation
happens here, once, so that a bad value fails `check-config` and `serve` with a
message that names the key, instead of failing later in the middle of a session.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from proxy import policy

# SES limits: DESIGN.md, "Facts the code must respect". The recipient limit is the
# same for both APIs; the message size is v1 SendRawEmail's 10 MB, v2 SendEmail's 40 MB.
SES_MAX_RECIPIENTS = 50
SES_MAX_MESSAGE_BYTES: dict[str, int] = {"v1": 10 * 1024 * 1024, "v2": 40 * 1024 * 1024}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A configuration problem, phrased for the operator: `key: why`."""


def _parse_networks(value: Any) -> tuple[IPNetwork, ...]:
    if isinstance(value, str):
        value = [value]
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    tls_port: int | None = Field(default=None, ge=0, le=65535)
    hostname: str = "ses-proxy"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    require_tls: bool = False
    allowed_networks: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    max_connections: int = Field(default=200, ge=1)
    # A gateway: one host cannot take every slot (a sidecar's clients are all loopback).
    max_connections_per_address: int | None = Field(default=None, ge=1)
    timeout_seconds: float = Field(default=60.0, gt=0)
    # Not in DESIGN.md's key list: how long SIGTERM waits for transactions in flight.
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> tuple[IPNetwork, ...]:
        return _parse_networks(value)

    @field_validator("hostname")
    @classmethod
    def _hostname_is_one_token(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or not value.isascii():
            raise ValueError("must be one ASCII word, it is sent in the banner and EHLO reply")
        return value

    @model_validator(mode="after")
    def _tls_is_consistent(self) -> SmtpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_cert_file is None and self.require_tls:
            raise ValueError("require_tls needs tls_cert_file and tls_key_file")
        if self.tls_cert_file is None and self.tls_port is not None:
            raise ValueError("tls_port needs tls_cert_file and tls_key_file")
        if self.tls_port is not None and self.tls_port == self.port and self.port != 0:
            raise ValueError("tls_port must differ from port")
        return self

    def tls_context(self) -> ssl.SSLContext | None:
        """The server TLS context, or None when no certificate is configured."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.load_certificate(context)
        return context

    def load_certificate(self, context: ssl.SSLContext) -> None:
        """Load the certificate and key into `context`: handshakes from now on use them."""
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)


class PolicySettings(_Section):
    allowed_senders: tuple[str, ...] = Field(min_length=1)
    allowed_recipients: tuple[str, ...] = ("*",)
    max_recipients: int = Field(default=SES_MAX_RECIPIENTS, ge=1, le=SES_MAX_RECIPIENTS)
    # None: the limit of `ses.api`, filled in by Settings (which knows the API).
    max_message_bytes: int | None = Field(default=None, ge=1)

    def rules(self) -> policy.Rules:
        """The values the pure policy judges with."""
        if self.max_message_bytes is None:
            raise ValueError("max_message_bytes is unset: build PolicySettings inside Settings")
        return policy.Rules(
            allowed_senders=self.allowed_senders,
            allowed_recipients=self.allowed_recipients,
            max_recipients=self.max_recipients,
            max_message_bytes=self.max_message_bytes,
        )

    @field_validator("allowed_senders", "allowed_recipients", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        patterns = []
        for item in value:
            pattern = str(item).strip().lower()
            if not pattern or not pattern.isascii() or any(c.isspace() for c in pattern):
                raise ValueError(f"{item!r} is not an address pattern (ASCII, no spaces)")
            if "${" in pattern:
                raise ValueError(f"{item!r}: IAM policy variables are not supported here")
            patterns.append(pattern)
        return tuple(patterns)


class DeliverySettings(_Section):
    backend: Literal["ses", "outbox"] = "ses"
    outbox_dir: Path = Path("./outbox")


class SesSettings(_Section):
    region: str = "eu-west-3"
    endpoint_url: str | None = None
    allow_insecure_endpoint: bool = False
    configuration_set: str | None = None
    role_arn: str | None = None
    allow_static_credentials: bool = False
    source_ips: tuple[IPNetwork, ...] = ()
    account_id: str | None = None
    api: Literal["v1", "v2"] = "v1"
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("source_ips", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> tuple[IPNetwork, ...]:
        return _parse_networks(value)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("arn:aws") and ":role/" in value):
            raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return value

    @field_validator("account_id")
    @classmethod
    def _account_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not (len(value) == 12 and value.isdigit()):
            raise ValueError("must be the 12-digit AWS account id")
        return value

    @model_validator(mode="after")
    def _https_only(self) -> SesSettings:
        if (
            self.endpoint_url is not None
            and urlsplit(self.endpoint_url).scheme != "https"
            and not self.allow_insecure_endpoint
        ):
            raise ValueError(
                "endpoint_url must be https; plain http sends signed requests and message "
                "bodies in clear (set allow_insecure_endpoint: true only for tests)"
            )
        return self


class MetricsSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9101, ge=0, le=65535)


class LoggingSettings(_Section):
    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class RateSettings(_Section):
    max_send_rate: Literal["auto"] | float = "auto"
    max_wait_seconds: float = Field(default=30.0, ge=0)
    backend: Literal["local", "redis"] = "local"
    redis_url: str | None = None

    @field_validator("max_send_rate")
    @classmethod
    def _positive_rate(cls, value: str | float) -> str | float:
        if not isinstance(value, str) and value <= 0:
            raise ValueError("must be 'auto' or a positive number of recipients per second")
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> RateSettings:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("backend redis needs redis_url (redis://host:6379/0)")
        if self.redis_url and urlsplit(self.redis_url).scheme not in ("redis", "rediss"):
            raise ValueError("redis_url must start with redis:// or rediss://")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SES_PROXY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    smtp: SmtpSettings = SmtpSettings()
    policy: PolicySettings
    delivery: DeliverySettings = DeliverySettings()
    ses: SesSettings = SesSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    rate: RateSettings = RateSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; env comes first so that it wins,
        # key by key (sources are deep-merged).
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _message_size_fits_the_api(self) -> Settings:
        limit = SES_MAX_MESSAGE_BYTES[self.ses.api]
        size = self.policy.max_message_bytes
        if size is None:
            # Frozen: the one place the effective value is set, before anyone reads it.
            object.__setattr__(
                self, "policy", self.policy.model_copy(update={"max_message_bytes": limit})
            )
        elif size > limit:
            raise ValueError(
                f"policy.max_message_bytes: {size} is above the {limit} bytes SES accepts "
                f"with ses.api {self.ses.api} (leave it unset for that limit"
                + (", or use ses.api: v2 for 40 MB)" if self.ses.api == "v1" else ")")
            )
        return self

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data, with secrets replaced."""
        data: dict[str, Any] = self.model_dump(mode="json")
        url = data["rate"].get("redis_url")
        if url:
            data["rate"]["redis_url"] = _redact_url(url)
        return data


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def load_settings(path: Path) -> Settings:
    """Read the YAML at `path`, apply env overrides, validate; ConfigError if anything is off."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (smtp:, policy:…)")
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    _check_files(settings)
    return settings


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:
            # A check across sections: its message begins with the key it is about.
            lines.append(message)
            continue
        key = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif problem["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{key}: {message}")
    return "\n".join(lines)


def _check_files(settings: Settings) -> None:
    smtp = settings.smtp
    for key, file in (
        ("smtp.tls_cert_file", smtp.tls_cert_file),
        ("smtp.tls_key_file", smtp.tls_key_file),
    ):
        if file is None:
            continue
        try:
            file.read_bytes()
        except OSError as error:
            raise ConfigError(f"{key}: cannot read {file} ({error.strerror})") from None
    try:
        smtp.tls_context()
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(
            f"smtp.tls_cert_file: the certificate and key do not load together ({error})"
        ) from None
