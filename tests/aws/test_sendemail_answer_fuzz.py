"""Fuzz the readers of SES v2's answers (proxy/aws/sendemail.py), as test_answer_fuzz.py
does v1's: a 2xx body gives a non-empty, stripped MessageId or MalformedAnswer; an
error answer gives a SesErrorReply with its status or ResponseParserError. Nothing
else may escape: delivery/ses.py would take it for a bug and let it rise.
"""

from __future__ import annotations

import json

import pytest
from botocore.parsers import ResponseParserError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.aws.lean import MalformedAnswer, SesErrorReply
from proxy.aws.sendemail import parse_error, parse_message_id
from tests.properties import examples

REAL_ID = "0107018f2b3c4d5e-1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d-000000"

fragments = st.lists(
    st.sampled_from(
        [
            *(b"{", b"}", b"[", b"]", b'"', b":", b",", b"null", b"true", b"1e999", b"-0"),
            *(b'"MessageId"', b'"message"', b'"Message"', b'"__type"', b'"code"'),
            *(b'"LimitExceededException"', b'"aws#x"', b'"\\u0000"', b'"\\ud800"'),
            *(b" ", b"\r\n", b"\x00", b"\xff", b"\xc3\xa9", b"a"),
        ]
    ),
    max_size=24,
).map(b"".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
bodies = (
    st.binary(max_size=200)
    | fragments
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(
        st.sampled_from(["MessageId", "message", "Message", "__type", "code", "Code"]),
        json_values,
    ).map(lambda v: json.dumps(v).encode())
)
error_types = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.sampled_from(["MessageRejected:http://internal.amazon.com/coral/", "x:y:z", ":", "#"]),
)


@given(bodies)
@settings(max_examples=examples(400))
@example(b'{"MessageId": " "}')
@example(b'{"MessageId": 7}')
@example(b"[]")
def test_a_success_body_gives_an_id_or_malformed(body: bytes) -> None:
    try:
        message_id = parse_message_id(body)
    except MalformedAnswer:
        return
    assert message_id
    assert message_id == message_id.strip()


@pytest.mark.parametrize("value", [REAL_ID, f"  {REAL_ID}\n", "é\u2028id"])
def test_a_message_id_round_trips(value: str) -> None:
    assert parse_message_id(json.dumps({"MessageId": value}).encode()) == value.strip()


@given(st.integers(300, 599), error_types, bodies)
@settings(max_examples=examples(400))
@example(400, None, b"[1, 2]")
@example(400, None, b'{"__type": 5}')
@example(400, None, b"\xff\xfe")
def test_an_error_body_gives_a_reply_or_a_parser_error(
    status: int, error_type: str | None, body: bytes
) -> None:
    headers = {} if error_type is None else {"X-Amzn-ErrorType": error_type}
    try:
        reply = parse_error(status, headers, body)
    except ResponseParserError:
        return
    assert isinstance(reply, SesErrorReply)
    assert reply.status == status
    assert isinstance(reply.code, str)
    assert isinstance(reply.message, str)


@pytest.mark.parametrize(
    ("headers", "body", "code", "message"),
    [
        (
            {"x-amzn-ErrorType": "MessageRejected:http://internal.amazon.com/coral/x/"},
            b'{"message": "Email address is not verified."}',
            "MessageRejected",
            "Email address is not verified.",
        ),
        (
            {},
            b'{"__type": "com.amazonaws.sesv2#TooManyRequestsException", "Message": "slow"}',
            "TooManyRequestsException",
            "slow",
        ),
        ({}, b'{"code": "NotFoundException", "message": "no set"}', "NotFoundException", "no set"),
        # The header wins over the body, as in botocore.
        (
            {"X-AMZN-ERRORTYPE": "LimitExceededException"},
            b'{"code": "Other", "message": "Daily message quota exceeded."}',
            "LimitExceededException",
            "Daily message quota exceeded.",
        ),
    ],
)
def test_the_type_comes_from_the_header_or_the_body(
    headers: dict[str, str], body: bytes, code: str, message: str
) -> None:
    reply = parse_error(400, headers, body)
    assert (reply.code, reply.message, reply.status) == (code, message, 400)
