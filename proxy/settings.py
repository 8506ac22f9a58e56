"""The one typed settings tree: a YAML file, overridden key by key by SES_PROXY_* env.

Every box of the data flow reads its part of this tree and nothing else. Validation
happens here, once, so that a bad value fails `check-config` and `serve` with a
message that names the key, instead of failing later in the middle of a session.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import argon2
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from proxy.policy import Rules

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


def _parse_patterns(value: Any) -> tuple[str, ...]:
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
    # Message bytes all sessions hold together: the bound on memory (smtp/inflight.py).
    max_inflight_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    auth: Literal["none", "any", "required"] = "none"
    auth_max_failures: int = Field(default=5, ge=1)
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
    allowed_configuration_sets: tuple[str, ...] = ()
    allow_message_tags: bool = False

    @field_validator("allowed_senders", "allowed_recipients", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> tuple[str, ...]:
        return _parse_patterns(value)


_CLIENT_NAME = re.compile(r"[a-z0-9-]{1,32}")
_TAG_PART = re.compile(r"[A-Za-z0-9_-]{1,256}")


class ClientSettings(_Section):
    """One application sharing the relay: who it is (AUTH, networks) and what it may send."""

    name: str
    username: str | None = None
    password_hash: SecretStr | None = None
    password_hash_file: Path | None = None
    networks: tuple[IPNetwork, ...] = ()
    allowed_senders: tuple[str, ...] = Field(min_length=1)
    allowed_recipients: tuple[str, ...] | None = None
    configuration_set: str | None = None
    allowed_configuration_sets: tuple[str, ...] = ()
    allow_message_tags: bool = False
    message_tags: dict[str, str] = Field(default_factory=dict)
    # Recipients/s of the account's rate this client may use: a bucket of its own.
    max_send_rate: float | None = Field(default=None, gt=0)

    @field_validator("message_tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for name, tag_value in value.items():
            if not _TAG_PART.fullmatch(name) or not _TAG_PART.fullmatch(str(tag_value)):
                raise ValueError(
                    f"{name}={tag_value}: a tag's name and value are 1 to 256 of "
                    "A-Z, a-z, 0-9, _ and - (SES's rule)"
                )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CLIENT_NAME.fullmatch(value):
            raise ValueError("must be 1 to 32 of a-z, 0-9 and - (it is a metric label)")
        return value

    @field_validator("networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> tuple[IPNetwork, ...]:
        return _parse_networks(value)

    @field_validator("allowed_senders", mode="before")
    @classmethod
    def _senders(cls, value: Any) -> tuple[str, ...]:
        return _parse_patterns(value)

    @field_validator("allowed_recipients", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> tuple[str, ...] | None:
        return None if value is None else _parse_patterns(value)

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_password_hash(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _identified(self) -> ClientSettings:
        hashes = (self.password_hash is not None) + (self.password_hash_file is not None)
        if self.username is not None and hashes != 1:
            raise ValueError("a client with a username needs password_hash or password_hash_file")
        if self.username is None and hashes:
            raise ValueError("a password hash needs a username")
        if self.username is None and not self.networks:
            raise ValueError("a client needs a username (with its password hash) or networks")
        return self

    def hash(self) -> str | None:
        """The argon2id hash to verify this client's password against."""
        return None if self.password_hash is None else self.password_hash.get_secret_value()


def _check_password_hash(value: str) -> None:
    if not value.startswith("$argon2id$"):
        raise ValueError("must be an argon2id hash ($argon2id$...), from `ses-proxy hash-password`")
    try:
        argon2.extract_parameters(value)
    except argon2.exceptions.InvalidHashError:
        raise ValueError("is not a well-formed argon2id hash") from None


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
    # Sending authorization: an identity of another account (v1: SourceArn, FromArn,
    # ReturnPathArn; v2: FromEmailAddressIdentityArn, from_arn else source_arn).
    source_arn: str | None = None
    from_arn: str | None = None
    return_path_arn: str | None = None
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

    @field_validator("source_arn", "from_arn", "return_path_arn")
    @classmethod
    def _identity_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("arn:aws") and ":identity/" in value):
            raise ValueError(f"{value!r} is not an SES identity ARN (arn:aws:ses:…:identity/…)")
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
    clients: tuple[ClientSettings, ...] = ()

    def client_rates(self) -> dict[str, float]:
        """The max_send_rate of each client that has one."""
        return {c.name: c.max_send_rate for c in self.clients if c.max_send_rate is not None}

    def max_message_bytes(self) -> int:
        """policy.max_message_bytes in force: the one set, else the API's limit."""
        size = self.policy.max_message_bytes
        return SES_MAX_MESSAGE_BYTES[self.ses.api] if size is None else size

    def default_rules(self) -> Rules:
        """What a session that is no client is judged by."""
        return Rules(
            allowed_senders=self.policy.allowed_senders,
            allowed_recipients=self.policy.allowed_recipients,
            max_recipients=self.policy.max_recipients,
            max_message_bytes=self.max_message_bytes(),
            allowed_configuration_sets=self.policy.allowed_configuration_sets,
            allow_message_tags=self.policy.allow_message_tags,
            configuration_set=self.ses.configuration_set,
        )

    @model_validator(mode="after")
    def _clients_are_distinct(self) -> Settings:
        for key in ("name", "username"):
            seen: set[str] = set()
            for index, client in enumerate(self.clients):
                value = getattr(client, key)
                if value is None:
                    continue
                if value in seen:
                    raise ValueError(f"clients[{index}].{key}: {value!r} is used twice")
                seen.add(value)
        return self

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
        for client in data["clients"]:
            if client["password_hash"] is not None:
                client["password_hash"] = _REDACTED
        url = data["rate"].get("redis_url")
        if url:
            data["rate"]["redis_url"] = _redact_url(url)
        return data


_REDACTED = "***"


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(
        (parts.scheme, f"{_REDACTED}@{host}", parts.path, parts.query, parts.fragment)
    )


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
    return _with_hash_files_read(settings)


def _with_hash_files_read(settings: Settings) -> Settings:
    """Each client's password_hash_file read into its password_hash (a mounted secret)."""
    clients = []
    for index, client in enumerate(settings.clients):
        if client.password_hash_file is not None:
            key = f"clients[{index}].password_hash_file"
            try:
                text = client.password_hash_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
                raise ConfigError(
                    f"{key}: cannot read {client.password_hash_file} ({reason})"
                ) from None
            value = text.removesuffix("\n").removesuffix("\r")
            try:
                _check_password_hash(value)
            except ValueError as error:
                raise ConfigError(f"{key}: {error}") from None
            client = client.model_copy(update={"password_hash": SecretStr(value)})
        clients.append(client)
    return settings.model_copy(update={"clients": tuple(clients)})


def _key_of(location: tuple[int | str, ...]) -> str:
    """clients[1].password_hash, as the operator would point at it in the YAML."""
    key = ""
    for part in location:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:
            # A check across sections: its message begins with the key it is about.
            lines.append(message)
            continue
        key = _key_of(problem["loc"])
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
