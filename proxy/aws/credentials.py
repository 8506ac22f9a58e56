"""Where the proxy's AWS credential comes from, and the refusal of long-lived keys.

botocore's chain finds the credential (env, web identity, container, IMDS, files);
botocore refreshes it 15 minutes before expiry. We add two things on top: we say
which source was found (never the key), and we refuse a long-lived key unless the
operator asked for it, since a key without expiry is exactly what this proxy exists
to keep off application hosts. With `role_arn`, the found credential only serves to
call STS AssumeRole, carrying the session policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiobotocore.credentials import (  # type: ignore[attr-defined]
    AioAssumeRoleCredentialFetcher,
    AioDeferredRefreshableCredentials,
    _get_client_creator,
)
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from proxy.aws.errors import error_reply
from proxy.settings import ConfigError, SesSettings

_ASSUME_ROLE_SESSION_NAME = "ses-proxy"


class CredentialError(ConfigError):
    """No usable credential."""


class CredentialRefused(CredentialError):
    """A credential was found, of a kind the configuration refuses: retrying cannot help."""


class CredentialUnavailable(CredentialError):
    """No credential could be had now (none found, endpoint unreachable, AssumeRole
    refused, already expired): the source may come up later (IMDS, an EKS agent)."""


@dataclass(frozen=True)
class CredentialSource:
    method: str
    temporary: bool
    assumed_role: str | None


async def open_session(
    settings: SesSettings, session_policy: str | None
) -> tuple[AioSession, CredentialSource]:
    """A botocore session whose credentials are the ones the proxy may send with.

    A long-lived key without `allow_static_credentials` is CredentialRefused; any
    other failure to obtain a credential is CredentialUnavailable naming what failed;
    botocore's messages carry no secret.
    """
    try:
        return await _open_session(settings, session_policy)
    except ClientError as error:
        reply = error_reply(error)
        raise CredentialUnavailable(
            f"ses.role_arn: AssumeRole refused: {reply.code}: {reply.message}"
        ) from None
    except BotoCoreError as error:
        raise CredentialUnavailable(f"cannot obtain AWS credentials: {error}") from None
    except RuntimeError as error:
        # botocore's own word for a source that serves a credential already expired.
        raise CredentialUnavailable(f"cannot obtain AWS credentials: {error}") from None


async def _open_session(
    settings: SesSettings, session_policy: str | None
) -> tuple[AioSession, CredentialSource]:
    session = get_session()
    found = await session.get_credentials()
    if found is None:
        raise CredentialUnavailable(
            "no AWS credentials found (looked at the environment, web identity, "
            "container endpoint, instance metadata and the shared files)"
        )
    frozen = await found.get_frozen_credentials()
    temporary = frozen.token is not None
    method = str(getattr(found, "method", "unknown"))
    if not temporary and not settings.allow_static_credentials:
        raise CredentialRefused(
            f"ses.allow_static_credentials: found long-lived access keys (source: {method}); "
            "use a role (instance profile, container or web identity credentials), "
            "or set ses.allow_static_credentials: true to accept them"
        )
    if settings.role_arn is None:
        return session, CredentialSource(method=method, temporary=temporary, assumed_role=None)

    extra_args: dict[str, Any] = {"RoleSessionName": _ASSUME_ROLE_SESSION_NAME}
    if session_policy is not None:
        extra_args["Policy"] = session_policy
    fetcher = AioAssumeRoleCredentialFetcher(
        client_creator=_get_client_creator(session, settings.region),
        source_credentials=found,
        role_arn=settings.role_arn,
        extra_args=extra_args,
    )
    assumed = AioDeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role"
    )
    # Fail now, at start-up, rather than on the first message.
    await assumed.get_frozen_credentials()
    # botocore has no public setter for refreshable credentials on a session; this
    # is the attribute its own profile-based assume-role path fills.
    session._credentials = assumed  # type: ignore[attr-defined]
    return session, CredentialSource(
        method=f"assume-role via {method}", temporary=True, assumed_role=settings.role_arn
    )


def credential_expiry(session: AioSession) -> datetime | None:
    """When the session's current credential expires; None for a credential without expiry."""
    credentials = getattr(session, "_credentials", None)
    expiry = getattr(credentials, "_expiry_time", None)
    return expiry if isinstance(expiry, datetime) else None
