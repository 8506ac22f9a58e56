"""SES v1 SendRawEmail on the lean path (`lean.py`): the query form and its XML answers.

- body: the query form botocore's serializer and `urlencode` produce, with
  `RawMessage.Data` = base64, then the three base64 characters that need escaping
  (`+ / =`) replaced with `bytes.replace`; the small fields go through `quote_plus`,
  exactly as `urlencode` does;
- answers: the MessageId of a success is found with `bytes.find`; an error answer
  goes through botocore's own query parser, so the code, message and status handed
  to `delivery/ses_errors.classify` are the ones the stock client would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import quote_plus
from xml.sax.saxutils import unescape

from botocore.parsers import QueryParser

from proxy.aws.lean import LeanSend, MalformedAnswer, SendOptions, SesErrorReply
from proxy.aws.payload import escape_base64

API_VERSION: Final = "2010-12-01"


CONTENT_TYPE: Final = "application/x-www-form-urlencoded; charset=utf-8"


def _field(value: str) -> bytes:
    return quote_plus(value).encode("ascii")


def form_parts(
    source: str, destinations: Sequence[str], options: SendOptions
) -> tuple[bytes, bytes]:
    """The form before and after the RawMessage.Data value, in botocore's field order
    (the members' order in the SES model's SendRawEmailRequest)."""
    head = [b"Action=SendRawEmail&Version=", API_VERSION.encode(), b"&Source=", _field(source)]
    if destinations:
        for index, destination in enumerate(destinations, 1):
            head.append(b"&Destinations.member.%d=%s" % (index, _field(destination)))
    else:
        head.append(b"&Destinations=")  # botocore's query serializer sends empty lists so
    head.append(b"&RawMessage.Data=")
    tail = []
    for key, arn in (
        (b"FromArn", options.from_arn),
        (b"SourceArn", options.source_arn),
        (b"ReturnPathArn", options.return_path_arn),
    ):
        if arn is not None:
            tail.append(b"&%s=%s" % (key, _field(arn)))
    for index, (name, value) in enumerate(options.tags, 1):
        tail.append(b"&Tags.member.%d.Name=%s" % (index, _field(name)))
        tail.append(b"&Tags.member.%d.Value=%s" % (index, _field(value)))
    if options.configuration_set is not None:
        tail.append(b"&ConfigurationSetName=" + _field(options.configuration_set))
    return b"".join(head), b"".join(tail)


def parse_message_id(body: bytes) -> str:
    """The MessageId of a 2xx answer; MalformedAnswer unless it is there and not empty."""
    start = body.find(b"<MessageId>")
    end = body.find(b"</MessageId>", start)
    if start < 0 or end < 0:
        raise MalformedAnswer("SES answered success without a MessageId")
    value = body[start + len(b"<MessageId>") : end].decode("utf-8", "replace").strip()
    value = unescape(value) if "&" in value else value
    if not value:
        raise MalformedAnswer("SES answered success with an empty MessageId")
    return value


def parse_error(status: int, headers: dict[str, str], body: bytes) -> SesErrorReply:
    """An error answer, read by botocore's own query parser (errors are rare: cost is moot).

    Raises ResponseParserError, like the stock client, for a body that is not XML.
    """
    answer = {"status_code": status, "headers": headers, "body": body}
    # No shape: botocore parses query errors without one.
    parsed = QueryParser().parse(answer, None)  # type: ignore[arg-type]
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):  # e.g. an empty <Error/>: botocore itself trips on it
        error = {}
    code = error.get("QueryErrorCode") or error.get("Code") or ""
    return SesErrorReply(str(code), str(error.get("Message") or ""), status)


class SendRawEmail(LeanSend):
    """SES v1 SendRawEmail: the query form, its XML answers."""

    operation_path = "/"
    content_type = CONTENT_TYPE

    def parts(
        self, source: str, destinations: Sequence[str], options: SendOptions
    ) -> tuple[bytes, bytes]:
        return form_parts(source, destinations, options)

    def escape(self, encoded: bytes) -> bytes:
        return escape_base64(encoded)

    def message_id(self, body: bytes) -> str:
        return parse_message_id(body)

    def error(self, status: int, headers: dict[str, str], body: bytes) -> SesErrorReply:
        return parse_error(status, headers, body)
