"""Every SES error code the contract names lands in exactly one class."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.delivery import PermanentDeliveryError, TransientDeliveryError
from proxy.delivery.ses_errors import classify


@pytest.mark.parametrize(
    ("code", "message", "status", "permanent", "reason", "reply"),
    [
        ("Throttling", "Maximum sending rate exceeded.", 400, False, "throttled", "451 4.4.5"),
        ("Throttling", "Daily message quota exceeded.", 400, False, "quota", "451 4.4.5"),
        ("MessageRejected", "Email address is not verified.", 400, True, "rejected", "554 5.7.1"),
        ("InvalidParameterValue", "Missing final '@domain'", 400, True, "invalid", "554 5.6.0"),
        ("AccessDenied", "User is not authorized", 403, False, "denied", "451 4.7.1"),
        (
            "ConfigurationSetDoesNotExist",
            "Configuration set x does not exist.",
            400,
            False,
            "config",
            "451 4.3.5",
        ),
        ("MailFromDomainNotVerifiedException", "not verified", 400, False, "config", "451 4.3.5"),
        ("AccountSendingPausedException", "paused", 400, False, "paused", "451 4.3.2"),
        ("ConfigurationSetSendingPausedException", "paused", 400, False, "paused", "451 4.3.2"),
        (
            "InvalidClientTokenId",
            "The security token is invalid.",
            403,
            False,
            "credentials",
            "451 4.7.0",
        ),
        ("SignatureDoesNotMatch", "signature", 403, False, "credentials", "451 4.7.0"),
        (
            "ExpiredToken",
            "The security token included in the request is expired",
            403,
            False,
            "credentials",
            "451 4.7.0",
        ),
        ("InternalFailure", "", 500, False, "unavailable", "451 4.4.1"),
        ("ServiceUnavailable", "", 503, False, "unavailable", "451 4.4.1"),
        # SES v2 (SendEmail): the codes of botocore's sesv2 model (MessageRejected and
        # MailFromDomainNotVerifiedException are above: v1 has them too).
        (
            "TooManyRequestsException",
            "Maximum sending rate exceeded.",
            429,
            False,
            "throttled",
            "451 4.4.5",
        ),
        (
            "TooManyRequestsException",
            "Daily message quota exceeded.",
            429,
            False,
            "quota",
            "451 4.4.5",
        ),
        ("InvalidSignatureException", "signature", 403, False, "credentials", "451 4.7.0"),
        ("UnrecognizedClientException", "token", 403, False, "credentials", "451 4.7.0"),
        (
            "LimitExceededException",
            "Maximum sending rate exceeded.",
            400,
            False,
            "throttled",
            "451 4.4.5",
        ),
        (
            "LimitExceededException",
            "Daily message quota exceeded.",
            400,
            False,
            "quota",
            "451 4.4.5",
        ),
        ("SendingPausedException", "sending paused", 400, False, "paused", "451 4.3.2"),
        ("AccountSuspendedException", "suspended", 400, False, "paused", "451 4.3.2"),
        (
            "NotFoundException",
            "Configuration set x does not exist.",
            404,
            False,
            "config",
            "451 4.3.5",
        ),
        ("BadRequestException", "Missing required field", 400, True, "invalid", "554 5.6.0"),
        ("AccessDeniedException", "User is not authorized", 403, False, "denied", "451 4.7.1"),
        # A 5xx is SES's own failure, whatever code it carries, or none.
        ("500", "Internal Server Error", 500, False, "unavailable", "451 4.4.1"),
        ("BadRequestException", "Service Unavailable", 503, False, "unavailable", "451 4.4.1"),
        ("MessageRejected", "internal error", 500, False, "unavailable", "451 4.4.1"),
    ],
)
def test_contract_classes(
    code: str, message: str, status: int, permanent: bool, reason: str, reply: str
) -> None:
    error = classify(code, message, status)
    assert isinstance(error, PermanentDeliveryError if permanent else TransientDeliveryError)
    assert error.reason == reason
    assert error.reply.startswith(reply + " ")
    assert code not in error.reply
    if len(message) > 10:
        assert message not in error.reply


@given(st.text(max_size=40), st.text(max_size=80), st.one_of(st.none(), st.integers(100, 599)))
def test_anything_unknown_is_transient_and_leaks_nothing(
    code: str, message: str, status: int | None
) -> None:
    error = classify(code, message, status)
    if isinstance(error, PermanentDeliveryError):
        assert code in {
            "MessageRejected",
            "InvalidParameterValue",
            "InvalidParameterCombination",
            "ValidationError",
            "BadRequestException",
        }
        assert status is None or status < 500
    else:
        assert error.reply.startswith("451 4.")
    assert error.reply.isascii()
    assert error.reason in {
        "throttled",
        "quota",
        "unavailable",
        "credentials",
        "denied",
        "paused",
        "config",
        "rejected",
        "invalid",
    }
