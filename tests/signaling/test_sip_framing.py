"""Cutting messages out of a TCP/TLS byte stream (RFC 3261 18.3) with keep-alives (RFC 5626 3.5.1)."""

from __future__ import annotations

from services.signaling.sip import (
    FramingError,
    KeepAlivePing,
    MessageFrame,
    ParseLimits,
    Request,
    StreamFramer,
    error_response,
    parse_message,
)
from services.signaling.sip.framing import StreamEvent

OPTIONS = (
    b"OPTIONS sip:carrier.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 203.0.113.5:5060;branch=z9hG4bK74bf9\r\n"
    b"From: <sip:gw@203.0.113.5>;tag=9fxced76sl\r\n"
    b"To: <sip:carrier.example.net>\r\n"
    b"Call-ID: 3848276298220188511@203.0.113.5\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
# A body that itself contains an empty line, so only Content-Length can tell where it ends.
BODY = b"v=0\r\n\r\nSIP/2.0 200 OK\r\n\r\n"
MESSAGE = (
    b"MESSAGE sip:agent100@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 203.0.113.5:5061;branch=z9hG4bK74bfa\r\n"
    b"From: <sip:gw@203.0.113.5>;tag=9fxced76sm\r\n"
    b"To: <sip:agent100@pbx.example.com>\r\n"
    b"Call-ID: 3848276298220188512@203.0.113.5\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain\r\n"
    b"l:\r\n " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)


def frames(events: list[StreamEvent]) -> list[bytes]:
    return [event.data for event in events if isinstance(event, MessageFrame)]


def test_whole_messages_in_one_read() -> None:
    framer = StreamFramer()
    events = framer.feed(OPTIONS + MESSAGE)
    assert frames(events) == [OPTIONS, MESSAGE]
    assert framer.buffered == 0
    message = parse_message(frames(events)[1])
    assert isinstance(message, Request)
    assert message.body == BODY


def test_one_byte_at_a_time() -> None:
    framer = StreamFramer()
    events: list[StreamEvent] = []
    stream = OPTIONS + MESSAGE + OPTIONS
    for i in range(len(stream)):
        events += framer.feed(stream[i : i + 1])
    assert frames(events) == [OPTIONS, MESSAGE, OPTIONS]
    assert not framer.closed


def test_double_crlf_is_a_ping_and_a_lone_crlf_is_skipped() -> None:
    framer = StreamFramer()
    events = framer.feed(b"\r\n\r\n" + OPTIONS + b"\r\n" + OPTIONS + b"\r\n\r\n\r\n\r\n")
    assert events == [
        KeepAlivePing(),
        MessageFrame(OPTIONS),
        MessageFrame(OPTIONS),
        KeepAlivePing(),
        KeepAlivePing(),
    ]


def test_a_crlf_waits_until_it_is_known_to_be_a_ping_or_not() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [KeepAlivePing()]
    assert framer.feed(b"\r\n") == []
    assert framer.feed(OPTIONS) == [MessageFrame(OPTIONS)]


def test_missing_content_length_closes_the_connection_after_a_400() -> None:
    framer = StreamFramer()
    broken = OPTIONS.replace(b"Content-Length: 0\r\n", b"")
    events = framer.feed(broken + OPTIONS)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, FramingError)
    assert event.error.reason == "Missing Content-Length header"
    assert framer.closed
    response = error_response(event.error)
    assert response is not None
    assert response.status_code == 400
    assert response.headers.get("Call-ID") == "3848276298220188511@203.0.113.5"
    assert framer.feed(OPTIONS) == []


def test_bad_and_conflicting_content_lengths_close_the_connection() -> None:
    for bad in (b"Content-Length: -999", b"Content-Length: 13\r\nContent-Length: 5", b"Content-Length: x"):
        events = StreamFramer().feed(OPTIONS.replace(b"Content-Length: 0", bad))
        assert len(events) == 1
        assert isinstance(events[0], FramingError)


def test_a_complete_message_before_the_error_is_still_returned() -> None:
    events = StreamFramer().feed(OPTIONS + OPTIONS.replace(b"Content-Length: 0", b"Content-Length: -1"))
    assert isinstance(events[0], MessageFrame)
    assert isinstance(events[1], FramingError)


def test_limits() -> None:
    small = ParseLimits(max_message_bytes=400, max_header_bytes=200)
    events = StreamFramer(small).feed(OPTIONS)
    assert isinstance(events[0], FramingError)
    assert events[0].error.reason == "Header section too large"
    assert events[0].error.status_code == 513
    # Without the end of the header section in sight the framer stops once the limit is passed.
    framer = StreamFramer(small)
    assert framer.feed(b"OPTIONS sip:x SIP/2.0\r\nX-Pad: " + b"a" * 100) == []
    events = framer.feed(b"a" * 200)
    assert isinstance(events[0], FramingError)
    big_body = MESSAGE.replace(b"l:\r\n " + str(len(BODY)).encode(), b"l: 100000")
    events = StreamFramer(ParseLimits(max_message_bytes=1000)).feed(big_body)
    assert isinstance(events[0], FramingError)
    assert events[0].error.reason == "Message too large"


def test_garbage_before_a_message_is_framed_and_left_to_the_parser() -> None:
    # Framing only needs the header section and Content-Length; the parser judges the rest.
    junk = b"HELLO\r\nContent-Length: 0\r\n\r\n"
    events = StreamFramer().feed(junk + OPTIONS)
    assert frames(events) == [junk, OPTIONS]
