"""The pure parts of SIP MESSAGE: the body checks (RFC 3428 with RFC 3862 CPIM), the parallel
delivery to an agent's contacts, and the carrier's challenge answered with the trunk's credentials."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.signaling.messaging.content import BodyRefused, Text, read_body
from services.signaling.messaging.delivery import CarrierMessage, Delivered, Fanout, MessageDraft, Undelivered
from services.signaling.sip.auth import Algorithm, DigestClient, DigestOk, DigestServer, ha1
from services.signaling.sip.message import Request, make_response, parse_message
from shared.events import MessageFailure
from tests.support.messaging import GEORGIAN


def message(body: bytes, content_type: str | None = "text/plain") -> Request:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"),
        ("From", "<sip:100@acme.test>;tag=a"),
        ("To", "<sip:101@acme.test>"),
        ("Call-ID", "c1"),
        ("CSeq", "1 MESSAGE"),
    ]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return Request("MESSAGE", "sip:101@acme.test", headers, body)


def draft(uri: str = "sip:+995555123456@carrier.test") -> MessageDraft:
    return MessageDraft(
        uri=uri,
        from_uri="sip:trunk1@carrier.test",
        to_uri=uri,
        via_host="192.0.2.1:5060",
        transport="udp",
        content_type="text/plain;charset=UTF-8",
        body=GEORGIAN.encode(),
    )


# --- bodies ------------------------------------------------------------------------------------


def test_georgian_text_is_read_exactly() -> None:
    read = read_body(message(GEORGIAN.encode(), "text/plain; charset=utf-8"), 4096)
    assert read == Text(GEORGIAN, "text/plain", GEORGIAN.encode())
    assert read.size_bytes == len(GEORGIAN.encode())


def test_a_body_without_charset_is_utf8_and_ascii_is_its_subset() -> None:
    assert isinstance(read_body(message("ტესტი".encode()), 100), Text)
    assert isinstance(read_body(message(b"plain", "text/plain;charset=US-ASCII"), 100), Text)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"x" * 101, "text/plain", 413, "Message body too large: 101 bytes, at most 100"),
        (b"", "text/plain", 400, "Empty message body"),
        (b"\xc3\x28", "text/plain", 400, "Invalid UTF-8 in the body at byte 0: invalid continuation byte"),
        ("ა".encode()[:2], "text/plain", 400, "Invalid UTF-8 in the body at byte 0: unexpected end of data"),
        (b"a\x00b", "text/plain", 400, "NUL character in the body at byte 1"),
        (b"hi", "text/html", 415, "Unsupported Media Type"),
        (b"hi", "text/plain;charset=windows-1251", 415, "Unsupported charset windows-1251"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(
    body: bytes, content_type: str, status: int, reason: str
) -> None:
    refused = read_body(message(body, content_type), 100)
    assert isinstance(refused, BodyRefused)
    assert (refused.status, refused.reason) == (status, reason)
    if status == 415:
        assert dict(refused.headers)["Accept"] == "text/plain;charset=UTF-8, message/cpim"


def test_cpim_text_is_unwrapped_and_the_body_kept_whole() -> None:
    cpim = (
        "From: <sip:+995555123456@carrier.test>\r\nTo: <sip:+99532200200@carrier.test>\r\n"
        "DateTime: 2026-11-25T10:00:00Z\r\n\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + GEORGIAN
    ).encode()
    read = read_body(message(cpim, "message/cpim"), 4096)
    assert read == Text(GEORGIAN, "message/cpim", cpim)


@pytest.mark.parametrize(
    ("cpim", "reason"),
    [
        ("From: x\r\n", "Bad message/cpim body: no blank line after the message headers"),
        (
            "From: x\r\n\r\nContent-Type: text/plain\r\n",
            "Bad message/cpim body: no blank line after the content headers",
        ),
        (
            "From: x\r\n\r\nContent-Type: image/png\r\n\r\nPNG",
            "message/cpim content must be text/plain, not image/png",
        ),
    ],
)
def test_bad_cpim_is_refused(cpim: str, reason: str) -> None:
    refused = read_body(message(cpim.encode(), "message/cpim"), 4096)
    assert isinstance(refused, BodyRefused)
    assert refused.reason == reason


@given(st.binary(min_size=1, max_size=200))
def test_any_bytes_are_either_text_that_round_trips_or_refused(body: bytes) -> None:
    read = read_body(message(body), 150)
    if isinstance(read, Text):
        assert read.text.encode() == body
    else:
        assert read.status in (400, 413)
        assert len(read.reason) < 120


# --- fan-out to an agent's contacts ------------------------------------------------------------


def test_first_2xx_delivers_and_later_answers_change_nothing() -> None:
    fanout = Fanout(3)
    assert fanout.answered(0, 480) is None
    assert fanout.answered(2, 200) == Delivered(200, 2)
    assert fanout.answered(1, 200) is None
    assert fanout.outcome == Delivered(200, 2)


def test_only_timeouts_and_not_now_answers_leave_it_for_the_next_registration() -> None:
    fanout = Fanout(3)
    assert fanout.answered(0, None) is None
    assert fanout.answered(1, 480) is None
    outcome = fanout.answered(2, 408)
    assert isinstance(outcome, Undelivered)
    assert outcome.unreachable


def test_a_refusal_fails_it_a_decline_first() -> None:
    fanout = Fanout(3)
    fanout.answered(0, 488)
    fanout.answered(1, None)
    outcome = fanout.answered(2, 603)
    assert outcome == Undelivered(603, "Refused by the recipient (603)", unreachable=False)
    assert Fanout(0).outcome == Undelivered(480, "Not registered", unreachable=True)


def test_a_branch_answers_once() -> None:
    fanout = Fanout(2)
    assert fanout.answered(0, 486) is None
    assert fanout.answered(0, 486) is None  # a retransmitted final answer
    assert isinstance(fanout.answered(1, 486), Undelivered)


def test_message_requests_have_no_contact_and_a_transaction_each() -> None:
    first = draft("sip:abc@x.invalid;transport=ws")
    again = first.to("sip:def@y.invalid;transport=ws")
    one, two = first.request(), again.request()
    for request in (one, two):
        parsed = parse_message(request.encode())
        assert isinstance(parsed, Request)
        assert parsed.method == "MESSAGE"
        assert parsed.headers.get("Contact") is None  # RFC 3428 4
        assert parsed.body == GEORGIAN.encode()
    assert one.call_id != two.call_id
    assert one.from_.tag != two.from_.tag


# --- through a carrier --------------------------------------------------------------------------


def test_carrier_challenge_is_answered_once_with_the_trunks_credentials() -> None:
    carrier = DigestServer("carrier.test", b"k" * 32, proxy=True)
    sending = CarrierMessage(draft(), DigestClient("trunk1", password="s3cret"))
    first = sending.current
    challenge = make_response(first, 407, headers=[("Proxy-Authenticate", carrier.challenges(0.0)[0])])
    retry = sending.answered(challenge)
    assert isinstance(retry, Request)
    assert (retry.call_id, retry.from_.tag, retry.cseq.seq, retry.cseq.method) == (
        first.call_id,
        first.from_.tag,
        2,
        "MESSAGE",
    )
    assert retry.via.branch != first.via.branch
    credentials = retry.headers.get("Proxy-Authorization")
    assert credentials is not None

    def lookup(user: str, algorithm: Algorithm) -> str | None:
        return ha1(user, "carrier.test", "s3cret", algorithm) if user == "trunk1" else None

    assert isinstance(carrier.verify(credentials, "MESSAGE", 0.1, lookup), DigestOk)
    assert sending.answered(make_response(retry, 202)) == Delivered(202)


def test_carrier_refusing_the_credentials_fails_as_auth() -> None:
    carrier = DigestServer("carrier.test", b"k" * 32)
    sending = CarrierMessage(draft(), DigestClient("trunk1", password="wrong"))
    retry = sending.answered(
        make_response(sending.current, 401, headers=[("WWW-Authenticate", carrier.challenges(0.0)[0])])
    )
    assert isinstance(retry, Request)
    assert retry.headers.get("Authorization") is not None
    again = make_response(retry, 401, headers=[("WWW-Authenticate", carrier.challenges(0.1)[0])])
    outcome = sending.answered(again)
    assert isinstance(outcome, Undelivered)
    assert (outcome.cause, outcome.sip_status, outcome.unreachable) == (
        MessageFailure.CARRIER_AUTH_FAILED,
        401,
        False,
    )


def test_carrier_challenge_without_credentials_and_other_answers() -> None:
    no_secret = CarrierMessage(draft(), None)
    outcome = no_secret.answered(make_response(no_secret.current, 407))
    assert isinstance(outcome, Undelivered)
    assert outcome.cause is MessageFailure.CARRIER_AUTH_FAILED
    busy = CarrierMessage(draft(), None)
    outcome = busy.answered(make_response(busy.current, 404))
    assert isinstance(outcome, Undelivered)
    assert (outcome.cause, outcome.sip_status) == (MessageFailure.REJECTED, 404)
    down = CarrierMessage(draft(), None)
    outcome = down.answered(None)
    assert isinstance(outcome, Undelivered)
    assert (outcome.cause, outcome.sip_status) == (MessageFailure.CARRIER_ERROR, 408)
