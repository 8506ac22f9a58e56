"""SESv2 SendEmail with raw content on the lean path of `lean.py` (`ses.api: v2`).

`POST /v2/email/outbound-emails`, a JSON body (field names from botocore's `sesv2`
model, 2019-09-27), signed like v1 (signing name `ses`) and sent on the same
transport. The body is what botocore's rest-json serializer writes for the same
parameters in the same order: `json.dumps` with its default separators and ASCII
escapes, the raw message as one base64 string. Base64 needs no escaping inside a
JSON string, so the body is the small JSON around it plus the base64 itself, built
off the event loop in slices for a big message, as v1's form is.

Answers: a success is `{"MessageId": "..."}`; an error carries its type in the
`x-amzn-ErrorType` header (maybe with a `:...` suffix) or in the body's `code` or
`__type`, read by botocore's own rest-json parser, as the stock client reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from botocore.parsers import ResponseParserError, RestJSONParser

from proxy.aws.lean import LeanSend, MalformedAnswer, SendOptions, SesErrorReply

OPERATION_PATH: Final = "/v2/email/outbound-emails"
CONTENT_TYPE: Final = "application/json"


def _json(value: object) -> bytes:
    return json.dumps(value).encode("ascii")


def json_parts(
    source: str, destinations: Sequence[str], options: SendOptions
) -> tuple[bytes, bytes]:
    """The JSON before and after the base64 of the raw message (SendEmailRequest), its
    members in the model's order. v2 sends on behalf of another account's identity with
    one ARN, FromEmailAddressIdentityArn (from_arn, else source_arn); it has no
    ReturnPathArn."""
    head = [b'{"FromEmailAddress": ', _json(source)]
    identity_arn = options.from_arn or options.source_arn
    if identity_arn is not None:
        head += [b', "FromEmailAddressIdentityArn": ', _json(identity_arn)]
    head += [
        b', "Destination": {"ToAddresses": ',
        _json(list(destinations)),
        b'}, "Content": {"Raw": {"Data": "',
    ]
    tail = b'"}}'
    if options.tags:
        tags = [{"Name": name, "Value": value} for name, value in options.tags]
        tail += b', "EmailTags": ' + _json(tags)
    if options.configuration_set is not None:
        tail += b', "ConfigurationSetName": ' + _json(options.configuration_set)
    return b"".join(head), tail + b"}"


def parse_message_id(body: bytes) -> str:
    """The MessageId of a 2xx SendEmail answer; MalformedAnswer unless it is a non-empty
    string in a JSON object."""
    try:
        answer = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise MalformedAnswer("SES answered success with a body that is not JSON") from None
    value = answer.get("MessageId") if isinstance(answer, dict) else None
    if not isinstance(value, str):
        raise MalformedAnswer("SES answered success without a MessageId")
    value = value.strip()
    if not value:
        raise MalformedAnswer("SES answered success with an empty MessageId")
    return value


def parse_error(status: int, headers: dict[str, str], body: bytes) -> SesErrorReply:
    """An error answer, read by botocore's own rest-json parser (errors are rare);
    ResponseParserError for one that cannot be read."""
    # The parser looks up `x-amzn-errortype`: header names may arrive in any case.
    lowered = {name.lower(): value for name, value in headers.items()}
    answer = {"status_code": status, "headers": lowered, "body": body}
    try:
        # No shape: botocore reads the code and message of rest-json errors without one.
        parsed = RestJSONParser().parse(answer, None)  # type: ignore[arg-type]
    except (AttributeError, TypeError, ValueError):
        # botocore trips on JSON that is not an object of strings and on bytes that are
        # not UTF-8: an answer no client could read, like v1's body that is not XML.
        raise ResponseParserError(f"SES error answer (HTTP {status}) unreadable") from None
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        error = {}
    return SesErrorReply(str(error.get("Code") or ""), str(error.get("Message") or ""), status)


class SendEmail(LeanSend):
    """SESv2 SendEmail, raw content: JSON, its JSON answers."""

    operation_path = OPERATION_PATH
    content_type = CONTENT_TYPE

    def parts(
        self, source: str, destinations: Sequence[str], options: SendOptions
    ) -> tuple[bytes, bytes]:
        return json_parts(source, destinations, options)

    def escape(self, encoded: bytes) -> bytes:
        return encoded

    def message_id(self, body: bytes) -> str:
        return parse_message_id(body)

    def error(self, status: int, headers: dict[str, str], body: bytes) -> SesErrorReply:
        return parse_error(status, headers, body)
