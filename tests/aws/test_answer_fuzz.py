"""Fuzz the readers of SES's answers on the lean SendRawEmail path (proxy/aws/sendraw.py).

- `parse_message_id(body)`: the body of a 2xx answer. On any octets it returns a
  non-empty, stripped MessageId or raises MalformedAnswer (the relay then defers with
  451): nothing else may escape, since a 250 must never go out without an id.
- `parse_error(status, headers, body)`: the body of an error answer. It returns a
  SesErrorReply carrying the answer's status, or raises botocore's ResponseParserError
  for a body that is not XML (documented: delivery/ses.py classifies both); an
  AttributeError or KeyError out of botocore's parser would be treated as a bug in the
  relay and rise.

Both run on arbitrary octets and on mutations of the exact answers the fake SES sends
(tests/fakes/aws.py), where the values they carry must round-trip.

The quota and the credentials are read by botocore's own parsers (GetSendQuota through
the aiobotocore client, the container/IMDS JSON through its credential providers):
the project has no reader of its own for them, so there is nothing of ours to fuzz there.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest
from botocore.parsers import ResponseParserError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.aws.lean import MalformedAnswer, SesErrorReply
from proxy.aws.sendraw import parse_error, parse_message_id
from tests.fakes.aws import SES_NS
from tests.properties import examples

REQUEST_ID = "5f1b2c3d-0000-4000-8000-000000000000"
REAL_ID = "0107018f2b3c4d5e-1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d-000000"


# The same text as tests/fakes/aws.py's _ok_xml and _error_xml (private there): the
# shapes real SES sends, which is what the mutations below start from.
def ok_xml(result: str) -> bytes:
    return (
        f'<SendRawEmailResponse xmlns="{SES_NS}">\n'
        f"  <SendRawEmailResult>{result}</SendRawEmailResult>\n"
        f"  <ResponseMetadata><RequestId>{REQUEST_ID}</RequestId></ResponseMetadata>\n"
        "</SendRawEmailResponse>\n"
    ).encode()


def error_xml(code: str, message: str, fault_type: str = "Sender") -> bytes:
    return (
        f'<ErrorResponse xmlns="{SES_NS}">\n'
        f"  <Error>\n    <Type>{fault_type}</Type>\n    <Code>{escape(code)}</Code>\n"
        f"    <Message>{escape(message)}</Message>\n  </Error>\n"
        f"  <RequestId>{REQUEST_ID}</RequestId>\n"
        "</ErrorResponse>\n"
    ).encode()


# Fragments of the answers' own syntax: near-misses are far likelier from these than
# from random octets (an unclosed tag, a second MessageId, an entity, a bad encoding).
fragments = st.lists(
    st.sampled_from(
        [
            *(b"<MessageId>", b"</MessageId>", b"<MessageId/>", b"<Error>", b"</Error>"),
            *(b"<Code>", b"</Code>", b"<Message>", b"</Message>", b"<ErrorResponse>"),
            *(b"</ErrorResponse>", b"<Errors>", b"</Errors>", b"<Type>Sender</Type>"),
            *(b"<?xml version='1.0'?>", b"<?xml version='1.0' encoding='latin-1'?>"),
            *(b"&amp;", b"&lt;", b"&#0;", b"&bogus;", b"<![CDATA[x]]>", b"<!-- c -->"),
            *(b" ", b"\t", b"\r\n", b"\x00", b"\xff", b"\xc3\xa9", b"a", b"Throttling"),
        ]
    ),
    max_size=24,
).map(b"".join)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """`base` with a few octets inserted, deleted or overwritten, or cut short."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "overwrite", "truncate"]))
        noise = draw(st.binary(min_size=1, max_size=8) | fragments)
        if kind == "insert":
            data[position:position] = noise
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif kind == "overwrite":
            data[position : position + len(noise)] = noise
        else:
            del data[position:]
    return bytes(data)


ok_answers = st.sampled_from(
    [
        ok_xml(f"<MessageId>{REAL_ID}</MessageId>"),
        ok_xml("<MessageId/>"),  # the fake's "empty_message_id" fault
        ok_xml(""),  # the fake's "no_message_id" fault
    ]
)
error_answers = st.sampled_from(
    [
        error_xml("Throttling", "Maximum sending rate exceeded."),
        error_xml("MessageRejected", "Email address is not verified: <a@b.example>"),
        error_xml("ServiceUnavailable", "Service Unavailable", "Receiver"),
        b"<ErrorResponse><Error></Error></ErrorResponse>",
    ]
)
any_body = st.binary(max_size=400) | fragments
any_answer_body = any_body | ok_answers.flatmap(mutated) | error_answers.flatmap(mutated)


# ---------------------------------------------------------------------------
# parse_message_id
# ---------------------------------------------------------------------------


@given(body=any_answer_body)
@example(body=b"<MessageId>   </MessageId>")
@example(body=b"</MessageId><MessageId>")
@example(body=b"<MessageId>\xff&amp;</MessageId>")
@settings(max_examples=examples(300))
def test_fuzz_parse_message_id(body: bytes) -> None:
    try:
        message_id = parse_message_id(body)
    except MalformedAnswer:
        return
    # Only an answer that names a MessageId is taken for a success, and what it
    # returns is a usable id: never empty, never padded.
    assert b"<MessageId>" in body
    assert b"</MessageId>" in body[body.index(b"<MessageId>") :]
    assert message_id
    assert message_id == message_id.strip()


# Text as SES or a proxy in front of it could put between the tags (surrogates have no
# UTF-8 form, so no answer can carry one).
id_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


@given(message_id=st.sampled_from([REAL_ID, "a&b", "<x>"]) | id_text)
@settings(max_examples=examples(200))
def test_a_well_formed_answer_round_trips_its_message_id(message_id: str) -> None:
    body = ok_xml(f"<MessageId>{escape(message_id)}</MessageId>")
    if not message_id.strip():
        with pytest.raises(MalformedAnswer, match="empty"):
            parse_message_id(body)
    else:
        assert parse_message_id(body) == message_id.strip()


@given(data=st.data(), noise=st.binary(max_size=40).map(lambda b: b.replace(b"<", b"")))
@settings(max_examples=examples(200))
def test_noise_outside_the_message_id_element_leaves_the_id_alone(
    data: st.DataObject, noise: bytes
) -> None:
    # Without "<", inserted octets can neither open a MessageId element nor close one.
    body = ok_xml(f"<MessageId>{REAL_ID}</MessageId>")
    start = body.index(b"<MessageId>")
    end = body.index(b"</MessageId>") + len(b"</MessageId>")
    position = data.draw(st.integers(0, start) | st.integers(end, len(body)))
    assert parse_message_id(body[:position] + noise + body[position:]) == REAL_ID


# ---------------------------------------------------------------------------
# parse_error
# ---------------------------------------------------------------------------

header_names = st.sampled_from(
    ["content-type", "x-amzn-requestid", "x-amzn-query-error", "x-amz-id-2", "content-length"]
)
any_headers = st.dictionaries(header_names | st.text(max_size=12), st.text(max_size=40), max_size=4)
statuses = st.integers(300, 599) | st.integers(0, 999)


@given(status=statuses, headers=any_headers, body=any_answer_body)
@example(status=500, headers={}, body=b"")
@example(
    status=400, headers={}, body=b"<ErrorResponse><Error><Code><x/></Code></Error></ErrorResponse>"
)
@example(status=400, headers={"x-amzn-query-error": ";"}, body=b"<Error/>")
@settings(max_examples=examples(300))
def test_fuzz_parse_error(status: int, headers: dict[str, str], body: bytes) -> None:
    try:
        reply = parse_error(status, dict(headers), body)
    except MalformedAnswer:
        # ResponseParserError's subclass says "a success without an id": an error
        # answer is never that.
        pytest.fail("an error answer refused as a success without a MessageId")
    except ResponseParserError:
        return  # the one documented refusal: a body that is not XML
    assert isinstance(reply, SesErrorReply)
    assert reply.status == status
    assert isinstance(reply.code, str)
    assert isinstance(reply.message, str)


# Text that XML can carry as it is: no control characters (XML 1.0 forbids them),
# no CR (the parser turns it into LF), no surrogates.
xml_text = st.text(
    st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\n"), max_size=60
)


@given(
    status=st.integers(400, 599),
    code=st.sampled_from(["Throttling", "MessageRejected", "AccessDenied"]) | xml_text,
    message=xml_text,
)
@settings(max_examples=examples(200))
def test_a_well_formed_error_answer_round_trips_code_and_message(
    status: int, code: str, message: str
) -> None:
    reply = parse_error(status, {"content-type": "text/xml"}, error_xml(code, message))
    assert (reply.code, reply.message, reply.status) == (code, message, status)
