"""SES's answers, sorted into the contract's classes: what the SMTP client is told.

Pure: an error code, its message and the HTTP status in; a DeliveryError out. Every
SES client path (the lean v1 and v2 ones, stock aiobotocore) classifies through here,
so one SES answer always becomes one SMTP reply, whichever API said it.

The rule of the contract: 554 only when SES judged the message itself; everything
an operator or time can fix is 451, so the client keeps the mail and retries. An
error we do not know is 451 too: a retry costs little, a lost mail costs much.
"""

from __future__ import annotations

from proxy.delivery import DeliveryError, PermanentDeliveryError, TransientDeliveryError

_DAILY_QUOTA_MARKER = "daily message quota"
# The rate and the daily quota come with one code, told apart by message: v1 Throttling;
# v2 TooManyRequestsException (HTTP 429, "Maximum sending rate exceeded." seen in the
# wild) and LimitExceededException (the model's other limit error).
_RATE_OR_QUOTA = frozenset({"Throttling", "TooManyRequestsException", "LimitExceededException"})

_TRANSIENT: dict[str, tuple[str, str]] = {
    # code: (metric reason, SMTP reply)
    "Throttling": ("throttled", "451 4.4.5 SES sending rate exceeded, try again later"),
    "ThrottlingException": ("throttled", "451 4.4.5 SES sending rate exceeded, try again later"),
    "TooManyRequestsException": (
        "throttled",
        "451 4.4.5 SES sending rate exceeded, try again later",
    ),
    "LimitExceededException": ("throttled", "451 4.4.5 SES sending rate exceeded, try again later"),
    "InternalFailure": ("unavailable", "451 4.4.1 SES unavailable, try again later"),
    "InternalError": ("unavailable", "451 4.4.1 SES unavailable, try again later"),
    "ServiceUnavailable": ("unavailable", "451 4.4.1 SES unavailable, try again later"),
    "RequestTimeout": ("unavailable", "451 4.4.1 SES unavailable, try again later"),
    "InvalidClientTokenId": ("credentials", "451 4.7.0 relay credentials refused, try again later"),
    "UnrecognizedClientException": (
        "credentials",
        "451 4.7.0 relay credentials refused, try again later",
    ),
    "SignatureDoesNotMatch": (
        "credentials",
        "451 4.7.0 relay credentials refused, try again later",
    ),
    "InvalidSignatureException": (
        "credentials",
        "451 4.7.0 relay credentials refused, try again later",
    ),
    "IncompleteSignature": ("credentials", "451 4.7.0 relay credentials refused, try again later"),
    "MissingAuthenticationToken": (
        "credentials",
        "451 4.7.0 relay credentials refused, try again later",
    ),
    "ExpiredToken": ("credentials", "451 4.7.0 relay credentials refused, try again later"),
    "ExpiredTokenException": (
        "credentials",
        "451 4.7.0 relay credentials refused, try again later",
    ),
    "RequestExpired": ("credentials", "451 4.7.0 relay credentials refused, try again later"),
    "RequestTimeTooSkewed": ("credentials", "451 4.7.0 relay credentials refused, try again later"),
    "AccessDenied": ("denied", "451 4.7.1 relay not authorized to send this, try again later"),
    "AccessDeniedException": (
        "denied",
        "451 4.7.1 relay not authorized to send this, try again later",
    ),
    "AccountSendingPausedException": ("paused", "451 4.3.2 SES sending is paused, try again later"),
    "SendingPausedException": ("paused", "451 4.3.2 SES sending is paused, try again later"),
    "AccountSuspendedException": ("paused", "451 4.3.2 SES sending is paused, try again later"),
    "ConfigurationSetSendingPausedException": (
        "paused",
        "451 4.3.2 SES sending is paused, try again later",
    ),
    "ConfigurationSetDoesNotExist": ("config", "451 4.3.5 relay misconfigured, try again later"),
    "ConfigurationSetDoesNotExistException": (
        "config",
        "451 4.3.5 relay misconfigured, try again later",
    ),
    "MailFromDomainNotVerifiedException": (
        "config",
        "451 4.3.5 relay misconfigured, try again later",
    ),
    "MailFromDomainNotVerified": ("config", "451 4.3.5 relay misconfigured, try again later"),
    # v2 SendEmail: what it names and cannot find is the configuration set.
    "NotFoundException": ("config", "451 4.3.5 relay misconfigured, try again later"),
}

_PERMANENT: dict[str, tuple[str, str]] = {
    "MessageRejected": ("rejected", "554 5.7.1 message rejected by SES"),
    "InvalidParameterValue": ("invalid", "554 5.6.0 message refused by SES as invalid"),
    "InvalidParameterCombination": ("invalid", "554 5.6.0 message refused by SES as invalid"),
    "ValidationError": ("invalid", "554 5.6.0 message refused by SES as invalid"),
    "BadRequestException": ("invalid", "554 5.6.0 message refused by SES as invalid"),
}

QUOTA_REPLY = "451 4.4.5 SES daily sending quota reached, try again later"
UNAVAILABLE_REPLY = "451 4.4.1 SES unavailable, try again later"


def classify(code: str, message: str, http_status: int | None) -> DeliveryError:
    """The DeliveryError for an SES error reply."""
    detail = f"SES {code} (HTTP {http_status}): {message}"
    if code in _RATE_OR_QUOTA and _DAILY_QUOTA_MARKER in message.lower():
        return TransientDeliveryError("quota", QUOTA_REPLY, detail)
    if http_status is not None and http_status >= 500:
        # SES failed, it did not judge the message: a 554 here would lose the mail.
        return TransientDeliveryError("unavailable", UNAVAILABLE_REPLY, detail)
    if code in _PERMANENT:
        reason, reply = _PERMANENT[code]
        return PermanentDeliveryError(reason, reply, detail)
    if code in _TRANSIENT:
        reason, reply = _TRANSIENT[code]
        return TransientDeliveryError(reason, reply, detail)
    return TransientDeliveryError("unavailable", UNAVAILABLE_REPLY, f"unclassified {detail}")


def unreachable(detail: str) -> TransientDeliveryError:
    """No answer from SES at all: connection refused or dropped, timeout."""
    return TransientDeliveryError("unavailable", UNAVAILABLE_REPLY, detail)


def no_credentials(detail: str) -> TransientDeliveryError:
    """The credential could not be obtained or refreshed."""
    return TransientDeliveryError(
        "credentials", "451 4.7.0 relay credentials unavailable, try again later", detail
    )
