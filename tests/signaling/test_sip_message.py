"""Requests and responses: parse_message, encode, make_response and the answers to broken requests."""

from __future__ import annotations

import pytest

from services.signaling.sip import (
    STAR,
    Headers,
    ParseLimits,
    Request,
    Response,
    SipParseError,
    SipUri,
    error_response,
    make_response,
    parse_message,
)


def crlf(text: str) -> bytes:
    """A message written with \\n line ends, sent with CRLF."""
    return text.replace("\n", "\r\n").encode()


REGISTER = crlf(
    "REGISTER sip:pbx.example.com SIP/2.0\n"
    "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport\n"
    "Max-Forwards: 70\n"
    "To: <sip:agent100@pbx.example.com>\n"
    'From: "Agent 100" <sip:agent100@pbx.example.com>;tag=k1s3n5q7vd\n'
    "Call-ID: 5nqc8i0f6ojbrp4cs0e6fu\n"
    "CSeq: 2 REGISTER\n"
    "Contact: <sip:qv8m3l2k@df7jal23ls0d.invalid;transport=ws>;+sip.ice;reg-id=1;"
    '+sip.instance="<urn:uuid:5ab5ba43-ff6c-4e5d-9c4b-0a8a4a1c1f3e>";expires=600\n'
    "Expires: 600\n"
    "Supported: path, gruu, outbound\n"
    "Content-Length: 0\n"
    "\n"
)

RESPONSE = crlf(
    "SIP/2.0 180 Ringing\n"
    "v: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8;received=192.0.2.3\n"
    "t: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\n"
    "f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n"
    "i: a84b4c76e66710\n"
    "CSeq: 314159 INVITE\n"
    "m: <sip:bob@192.0.2.4>\n"
    "l: 0\n"
    "\n"
)


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def parse_response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def parse_error(data: bytes, limits: ParseLimits | None = None) -> SipParseError:
    with pytest.raises(SipParseError) as caught:
        parse_message(data) if limits is None else parse_message(data, limits)
    return caught.value


def test_register_from_a_browser() -> None:
    request = parse_request(REGISTER)
    assert request.method == "REGISTER"
    assert isinstance(request.uri, SipUri)
    assert request.uri.host == "pbx.example.com"
    assert request.version == "SIP/2.0"
    assert request.via.transport == "WSS"
    assert request.via.rport_requested
    assert request.max_forwards == 70
    assert request.from_.display_name == "Agent 100"
    assert request.from_.tag == "k1s3n5q7vd"
    assert request.to.tag is None
    assert request.call_id == "5nqc8i0f6ojbrp4cs0e6fu"
    assert (request.cseq.seq, request.cseq.method) == (2, "REGISTER")
    assert request.expires == 600
    assert request.supported == ("path", "gruu", "outbound")
    assert request.body == b""
    contacts = request.contacts
    assert contacts != STAR
    assert (
        contacts[0].params.get_unquoted("+sip.instance") == "<urn:uuid:5ab5ba43-ff6c-4e5d-9c4b-0a8a4a1c1f3e>"
    )
    assert contacts[0].expires == 600


def test_response_with_compact_headers() -> None:
    response = parse_response(RESPONSE)
    assert (response.status_code, response.reason) == (180, "Ringing")
    assert response.to.tag == "a6c85cf"
    assert response.from_.display_name == "Alice"
    assert response.call_id == "a84b4c76e66710"
    assert response.via.received == "192.0.2.3"
    assert response.max_forwards is None
    encoded = response.encode()
    assert encoded.startswith(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.4;")
    assert b"\r\nContent-Length: 0\r\n\r\n" in encoded


def test_empty_and_unusual_reason_phrases() -> None:
    assert parse_response(RESPONSE.replace(b"180 Ringing", b"100 ")).reason == ""
    assert parse_response(RESPONSE.replace(b"180 Ringing", b"100")).reason == ""
    reason = "= 2**3 * 5**2 но сто девяносто девять"
    response = parse_response(RESPONSE.replace(b"180 Ringing", f"200 {reason}".encode()))
    assert response.reason == reason
    assert response.encode().startswith(f"SIP/2.0 200 {reason}\r\n".encode())


def test_encode_round_trips_and_fixes_content_length() -> None:
    request = parse_request(REGISTER)
    assert request.encode() == REGISTER
    request.body = b"hello"
    encoded = request.encode()
    assert b"\r\nContent-Length: 5\r\n" in encoded
    assert encoded.endswith(b"\r\n\r\nhello")
    assert encoded.count(b"Content-Length") == 1
    assert parse_request(encoded).body == b"hello"


def test_encode_adds_a_missing_content_length_at_the_end() -> None:
    request = Request(
        "OPTIONS",
        "sip:carrier.example.net",
        [
            ("Via", "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK74bf9"),
            ("From", "<sip:gw@203.0.113.5>;tag=9fxced76sl"),
            ("To", "<sip:carrier.example.net>"),
            ("Call-ID", "3848276298220188511@203.0.113.5"),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ],
    )
    encoded = request.encode()
    assert encoded.endswith(b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    assert parse_request(encoded).cseq.method == "OPTIONS"


def test_line_folding_is_undone() -> None:
    data = crlf(
        "OPTIONS sip:user@example.com SIP/2.0\n"
        "Via: SIP  /   2.0\n /UDP\n    192.0.2.2;branch=390skdjuw\n"
        "To:\n sip:user@example.com\n"
        "From: <sip:caller@example.com>\n  ;\n  tag = 98asjd8\n"
        "Call-ID: fold\n"
        "CSeq: 0009\n\tOPTIONS\n"
        "Subject:\n"
        "X-Long: first\n  second  \n\t third\n"
        "\n"
    )
    request = parse_request(data)
    assert request.via.host == "192.0.2.2"
    assert str(request.to.uri) == "sip:user@example.com"
    assert request.from_.tag == "98asjd8"
    assert request.cseq.seq == 9
    assert request.headers.get("Subject") == ""
    assert request.headers.get("X-Long") == "first second third"


def test_datagram_rules_for_the_body() -> None:
    head = REGISTER[: REGISTER.index(b"Content-Length")]
    # Bytes past Content-Length are discarded (RFC 3261 18.3).
    assert parse_request(head + b"Content-Length: 3\r\n\r\nabcdef").body == b"abc"
    # No Content-Length: the body runs to the end of the datagram.
    assert parse_request(head + b"\r\nabcdef").body == b"abcdef"
    error = parse_error(head + b"Content-Length: 10\r\n\r\nabc")
    assert error.reason == "Content-Length larger than body"


def test_leading_crlfs_are_skipped() -> None:
    assert parse_request(b"\r\n\r\n" + REGISTER).method == "REGISTER"
    assert parse_request(b"\r\n" * 20000 + REGISTER).method == "REGISTER"
    # Only whole CRLFs: a stray LF is the start of a (bad) start line.
    assert parse_error(b"\r\n" * 5 + b"\n" + REGISTER).reason == "Bad method"


def test_typed_views_follow_header_changes() -> None:
    def to_tag(message: Request) -> str | None:
        return message.to.tag

    request = parse_request(REGISTER)
    assert to_tag(request) is None
    request.headers.set("To", "<sip:agent100@pbx.example.com>;tag=xyz")
    assert to_tag(request) == "xyz"
    request.headers.remove("Max-Forwards")
    assert request.max_forwards is None


def test_bad_typed_views_raise_sip_parse_error_when_read() -> None:
    request = parse_request(REGISTER.replace(b"Expires: 600", b"Expires: soon"))
    with pytest.raises(SipParseError, match="Bad Expires header"):
        request.expires  # noqa: B018
    request = parse_request(REGISTER.replace(b"Contact: <sip:qv8m3l2k", b"Contact: <sip :qv8m3l2k"))
    with pytest.raises(SipParseError, match="Bad Contact header"):
        request.contacts  # noqa: B018


def swap(old: bytes, new: bytes) -> bytes:
    assert old in REGISTER
    return REGISTER.replace(old, new)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "Missing end of headers"),
        (b"\r\n\r\n", "Missing end of headers"),
        (REGISTER[:-2], "Missing end of headers"),
        (
            swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REGISTER  sip:pbx.example.com SIP/2.0"),
            "Bad request line",
        ),
        (
            swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REGISTER sip:pbx.example.com SIP/2.0 "),
            "Bad request line",
        ),
        (swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REGISTER sip:pbx.example.com"), "Bad request line"),
        (
            swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REG(STER sip:pbx.example.com SIP/2.0"),
            "Bad method",
        ),
        (
            swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REGISTER sip:pbx.example.com HTTP/1.1"),
            "Bad SIP version",
        ),
        (
            swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REGISTER sip:pbx.example.com SIP/2"),
            "Bad SIP version",
        ),
        (
            swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REGISTER <sip:pbx.example.com> SIP/2.0"),
            "Bad Request-URI",
        ),
        (swap(b"sip:pbx.example.com SIP", b"sip:pbx.example.com?Route=x SIP"), "Headers in Request-URI"),
        (swap(b"Max-Forwards: 70", b"Max-Forwards 70"), "Bad header line"),
        (swap(b"Max-Forwards: 70", b"Max Forwards: 70"), "Bad header name"),
        (swap(b"Max-Forwards: 70", b"Max-Forwards: 7\n0"), "Bad line ending"),
        (swap(b"Max-Forwards: 70", b"Max-Forwards: 7\r0"), "Bad line ending"),
        (
            swap(
                b"REGISTER sip:pbx.example.com SIP/2.0\r\n", b"REGISTER sip:pbx.example.com SIP/2.0\r\n x\r\n"
            ),
            "Bad header line",
        ),
        (
            swap(b"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport\r\n", b""),
            "Missing Via header",
        ),
        (swap(b";rport", b";rport;;"), "Bad Via header"),
        (swap(b"Call-ID: 5nqc8i0f6ojbrp4cs0e6fu\r\n", b""), "Missing Call-ID header"),
        (swap(b"Call-ID: 5nqc8i0f6ojbrp4cs0e6fu", b"Call-ID: two words"), "Bad Call-ID header"),
        (swap(b"CSeq: 2 REGISTER", b"CSeq: 2 REGISTER\r\nCSeq: 3 REGISTER"), "Multiple CSeq headers"),
        (swap(b"CSeq: 2 REGISTER", b"CSeq: REGISTER"), "Bad CSeq header"),
        (swap(b"To: <sip:agent100@pbx.example.com>\r\n", b""), "Missing To header"),
        (swap(b"To: <sip:agent100@pbx.example.com>", b"To: <sip:agent100@pbx.example.com"), "Bad To header"),
        (swap(b"From: ", b"From: Agent, 100 "), "Bad From header"),
        (swap(b"Max-Forwards: 70", b"Max-Forwards: 300"), "Bad Max-Forwards header"),
        (swap(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nMax-Forwards: 69"), "Multiple Max-Forwards headers"),
        (swap(b"Content-Length: 0", b"Content-Length: -1"), "Bad Content-Length header"),
        (swap(b"Content-Length: 0", b"Content-Length: 0\r\nl: 0"), "Multiple Content-Length headers"),
        (RESPONSE.replace(b"180 Ringing", b"1800 Ringing"), "Bad status code"),
        (RESPONSE.replace(b"180 Ringing", b"099 Early"), "Bad status code"),
        (RESPONSE.replace(b"180 Ringing", b"700 Late"), "Bad status code"),
        (RESPONSE.replace(b"180 Ringing", b"180 Ring\x07ing"), "Bad reason phrase"),
    ],
)
def test_errors_name_the_fault(data: bytes, reason: str) -> None:
    error = parse_error(data)
    assert error.reason == reason
    assert error.status_code == 400


def test_size_limits_answer_513() -> None:
    limits = ParseLimits(max_message_bytes=2000, max_header_bytes=600, max_headers=8, max_line_length=200)
    assert parse_error(REGISTER + b"x" * 2000, limits).reason == "Message too large"
    assert parse_error(REGISTER, ParseLimits(max_header_bytes=300)).reason == "Header section too large"
    assert parse_error(REGISTER, ParseLimits(max_headers=8)).reason == "Too many headers"
    long_value = swap(b"Expires: 600", b"Expires: " + b"6" * 300)
    assert parse_error(long_value, ParseLimits(max_line_length=200)).reason == "Header line too long"
    folded = swap(b"Expires: 600", b"Expires: 600" + b"\r\n 6" * 200)
    assert parse_error(folded, ParseLimits(max_line_length=200)).reason == "Header line too long"
    for data, lim in ((REGISTER + b"x" * 2000, limits), (REGISTER, ParseLimits(max_headers=8))):
        error = parse_error(data, lim)
        assert error.status_code == 513
        response = error_response(error)
        assert response is not None
        assert response.status_code == 513


def test_parse_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_headers"):
        ParseLimits(max_headers=0)


# --- answering what could not be parsed ----------------------------------------------------------


def test_error_response_echoes_what_could_be_read() -> None:
    error = parse_error(swap(b"Max-Forwards: 70", b"Max-Forwards: 300"))
    assert error.is_request is True
    assert error.partial_headers is not None
    assert error.partial_headers.get("Call-ID") == "5nqc8i0f6ojbrp4cs0e6fu"
    response = error_response(error, to_tag="t1")
    assert response is not None
    assert (response.status_code, response.reason) == (400, "Bad Max-Forwards header")
    assert response.headers.get_all("Via") == ["SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport"]
    assert response.headers.get("To") == "<sip:agent100@pbx.example.com>;tag=t1"
    assert response.headers.get("From") == '"Agent 100" <sip:agent100@pbx.example.com>;tag=k1s3n5q7vd'
    assert response.headers.get("CSeq") == "2 REGISTER"
    reparsed = parse_response(response.encode())
    assert reparsed.reason == "Bad Max-Forwards header"


def test_error_response_with_a_broken_start_line_and_folded_headers() -> None:
    data = swap(b"REGISTER sip:pbx.example.com SIP/2.0", b"REGISTER <sip:pbx.example.com> SIP/2.0")
    data = data.replace(b"Call-ID: 5nqc8i0f6ojbrp4cs0e6fu", b"i:\r\n 5nqc8i0f6ojbrp4cs0e6fu")
    response = error_response(parse_error(data))
    assert response is not None
    assert response.headers.get("Call-ID") == "5nqc8i0f6ojbrp4cs0e6fu"
    assert response.reason == "Bad Request-URI"


def test_error_response_keeps_a_malformed_to_as_it_was() -> None:
    data = swap(b"To: <sip:agent100@pbx.example.com>", b'To: "Mr. J. User <sip:j.user@example.com>')
    response = error_response(parse_error(data))
    assert response is not None
    assert response.headers.get("To") == '"Mr. J. User <sip:j.user@example.com>'


def test_without_a_via_or_for_a_response_there_is_no_answer() -> None:
    no_via = swap(b"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport\r\n", b"")
    error = parse_error(no_via)
    assert error.is_request is True
    assert error_response(error) is None
    bad_response = parse_error(RESPONSE.replace(b"180 Ringing", b"1800 Ringing"))
    assert bad_response.is_request is False
    assert error_response(bad_response) is None
    garbage = parse_error(b"\x00\x01 nonsense\r\n\r\n")
    assert garbage.is_request is None
    assert error_response(garbage) is None


# --- building responses --------------------------------------------------------------------------

INVITE = crlf(
    "INVITE sip:bob@biloxi.example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\n"
    "Via: SIP/2.0/UDP proxy.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\n"
    "Record-Route: <sip:proxy.atlanta.example.com;lr>\n"
    "Max-Forwards: 69\n"
    "To: Bob <sip:bob@biloxi.example.com>\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\n"
    "CSeq: 314159 INVITE\n"
    "Timestamp: 54\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\n"
    "Content-Length: 0\n"
    "\n"
)


def test_make_response_copies_what_rfc_3261_8_2_6_2_asks() -> None:
    request = parse_request(INVITE)
    response = make_response(request, 180, to_tag="a6c85cf", headers=[("Contact", "<sip:bob@192.0.2.4>")])
    assert response.reason == "Ringing"
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"
    assert response.headers.get("From") == request.headers.get("From")
    assert response.headers.get("Call-ID") == request.call_id
    assert response.headers.get("CSeq") == "314159 INVITE"
    assert response.headers.get_all("Record-Route") == ["<sip:proxy.atlanta.example.com;lr>"]
    assert "Timestamp" not in response.headers
    assert response.headers.get("Contact") == "<sip:bob@192.0.2.4>"
    parsed = parse_response(response.encode())
    assert parsed.to.tag == "a6c85cf"


def test_a_100_gets_no_tag_and_keeps_timestamp() -> None:
    response = make_response(parse_request(INVITE), 100)
    assert response.reason == "Trying"
    assert response.headers.get("To") == "Bob <sip:bob@biloxi.example.com>"
    assert response.headers.get("Timestamp") == "54"
    assert "Record-Route" not in response.headers


def test_an_error_response_does_not_copy_record_route_and_keeps_an_existing_tag() -> None:
    request = parse_request(
        INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:bob@b.example>;tag=x")
    )
    response = make_response(request, 486)
    assert response.reason == "Busy Here"
    assert response.headers.get("To") == "<sip:bob@b.example>;tag=x"
    assert "Record-Route" not in response.headers


def test_random_to_tags_differ() -> None:
    request = parse_request(INVITE)
    first = parse_response(make_response(request, 200).encode()).to.tag
    second = parse_response(make_response(request, 200).encode()).to.tag
    assert first
    assert second
    assert first != second


def test_make_response_refuses_impossible_codes() -> None:
    with pytest.raises(ValueError, match="status code"):
        make_response(parse_request(INVITE), 99)


def test_messages_built_from_parts() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP h.example.com;branch=z9hG4bKx")])
    response = Response(603, headers=headers, body=b"{}")
    assert response.reason == "Decline"
    assert (
        response.encode() == b"SIP/2.0 603 Decline\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bKx\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    assert Response(299).reason == ""
    request = Request("MESSAGE", "tel:+995555123456")
    assert request.uri.scheme == "tel"


def test_built_messages_refuse_line_injection() -> None:
    with pytest.raises(ValueError, match="method"):
        Request("IN VITE", "sip:bob@example.com")
    with pytest.raises(ValueError, match="reason"):
        Response(200, "OK\r\nVia: SIP/2.0/UDP evil.example.com")
