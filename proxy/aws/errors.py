"""What an AWS error reply said, as botocore parsed it into a ClientError."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class ErrorReply:
    code: str
    message: str
    status: int | None


def error_reply(error: ClientError) -> ErrorReply:
    details = error.response.get("Error", {})
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return ErrorReply(str(details.get("Code", "")), str(details.get("Message", "")), status)
